"""What every benchmark prints and writes: percentiles, a Markdown table, JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` of the observations made between two scrapes
    of a Prometheus histogram (cumulative counts by upper bound)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if total and count >= q * total:
            return bound
    return float("nan")


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [list(headers)] + [[_cell(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def print_records(records: list[dict[str, Any]]) -> None:
    """A table of dicts that share their keys (the first one's keys are the columns)."""
    if records:
        headers = list(records[0])
        print_table(headers, [[r[h] for h in headers] for r in records])


def write_json(path: str | Path | None, data: Any) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if 0 < abs(value) < 1 else f"{value:.1f}"
    return str(value)
