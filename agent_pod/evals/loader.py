"""Reading suite files: YAML in, a validated Suite out, or a SuiteError naming the file and line.

The YAML is composed into its node tree once; the data is constructed from that tree, and every
validation error's location (a pydantic ``loc`` path) is walked down the same tree to the line
of the offending key or value."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .scenario import Suite

PACKS_DIR = Path(__file__).parent / "packs"
SUITE_SUFFIXES = (".yaml", ".yml")


class SuiteError(Exception):
    """A suite that cannot be read or is invalid; the message names the file and line."""


def builtin_packs() -> list[str]:
    """Names of the suites packs shipped with voicefleet (agent_pod/evals/packs/<name>/)."""
    if not PACKS_DIR.is_dir():
        return []
    return sorted(p.name for p in PACKS_DIR.iterdir() if p.is_dir() and any(_suite_files(p)))


def _suite_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in SUITE_SUFFIXES)


def resolve_suite_paths(refs: Iterable[str | Path]) -> list[Path]:
    """Suite files named by ``refs``: files, directories of *.yaml, or built-in pack names."""
    files: list[Path] = []
    for ref in refs:
        path = Path(ref)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = _suite_files(path)
            if not found:
                raise SuiteError(f"{path}: no *.yaml suite files in this directory")
            files.extend(found)
        elif (PACKS_DIR / str(ref)).is_dir() and "/" not in str(ref):
            files.extend(_suite_files(PACKS_DIR / str(ref)))
        else:
            packs = ", ".join(builtin_packs()) or "none"
            raise SuiteError(f"{ref}: no such suite file, directory or built-in pack (packs: {packs})")
    return files


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read suite: {exc}") from None
    return load_suite_text(text, str(path))


def load_suites(refs: Iterable[str | Path]) -> list[Suite]:
    """Every suite named by ``refs`` (see resolve_suite_paths); suite names must be unique."""
    suites: list[Suite] = []
    by_name: dict[str, str] = {}
    for path in resolve_suite_paths(refs):
        suite = load_suite(path)
        if suite.suite in by_name:
            raise SuiteError(f"{path}: suite name {suite.suite!r} is already used by {by_name[suite.suite]}")
        by_name[suite.suite] = str(path)
        suites.append(suite)
    return suites


def load_suite_text(text: str, source_name: str) -> Suite:
    """Parse and validate one suite; ``source_name`` names it in errors (a file, a ConfigMap key)."""
    root, data = _compose(text, source_name)
    if not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        raise SuiteError(f"{source_name}:{line}: a suite file holds one mapping (suite:, scenarios:, ...)")
    assert root is not None
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(
            "\n".join(_describe(error, root, data, source_name) for error in _distinct(exc.errors()))
        ) from None
    return suite.with_source(source_name)


def _compose(text: str, source_name: str) -> tuple[yaml.Node | None, Any]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            _refuse_duplicate_keys(root, source_name)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source_name}:{mark.line + 1}" if mark is not None else source_name
        raise SuiteError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"{source_name}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return root, data


def _refuse_duplicate_keys(node: yaml.Node, source_name: str) -> None:
    # PyYAML keeps the last of two equal keys silently; a suite with a doubled key is a mistake.
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise SuiteError(f"{source_name}:{key.start_mark.line + 1}: duplicate key {key.value!r}")
                seen.add(key.value)
            _refuse_duplicate_keys(value, source_name)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, source_name)


def _distinct(errors: Sequence[ErrorDetails]) -> list[ErrorDetails]:
    # A value that fits no member of a union (str | list[str]) reports one error per member;
    # keep the first per location so the message says it once.
    kept: dict[tuple[Any, ...], ErrorDetails] = {}
    for error in errors:
        kept.setdefault(_data_path(error["loc"]), error)
    return list(kept.values())


def _data_path(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # Union members show up in locs as type names ("str", "list[str]"); only keys and indexes
    # lead through the document.
    return tuple(
        part for part in loc if isinstance(part, int) or ("[" not in part and part not in _TYPE_TAGS)
    )


_TYPE_TAGS = {"str", "int", "bool", "float", "dict", "list", "literal[True]", "function-after"}


def _describe(error: ErrorDetails, root: yaml.Node, data: Any, source_name: str) -> str:
    loc = error["loc"]
    node, data_at, context, list_key = root, data, [], ""
    line = root.start_mark.line + 1
    for part in loc:
        child = _child(node, part)
        if child is None:
            continue  # a union tag or a key that is absent from the document
        key_node, node = child
        line = (key_node or node).start_mark.line + 1
        data_at = data_at[part]  # the node exists, so the constructed data has it too
        if isinstance(part, int):
            context.append(_context(list_key, part, data_at))
        else:
            list_key = part
    if error["type"] == "extra_forbidden":
        problem = f"unknown key {loc[-1]!r}"
    elif error["type"] == "missing":
        problem = f"missing key {loc[-1]!r}"
    else:
        message = error["msg"].removeprefix("Value error, ")
        field = next((p for p in reversed(loc) if isinstance(p, str) and p not in _TYPE_TAGS), None)
        # Model-level messages (exactly one key, ...) already say what is wrong.
        problem = message if field is None or error["type"] == "value_error" else f"{field!r}: {message}"
    where = f" in {' '.join(context)}" if context else ""
    return f"{source_name}:{line}: {problem}{where}"


def _child(node: yaml.Node, part: int | str) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def _context(list_key: str, index: int, item: Any) -> str:
    """Words naming where an error sits: scenario 'books' turn 2 expectation 1."""
    if list_key == "scenarios":
        name = item.get("name") if isinstance(item, dict) else None
        return f"scenario {name!r}" if isinstance(name, str) else f"scenario #{index + 1}"
    if list_key == "turns":
        return f"turn {index + 1}"
    if list_key in ("expect", "any_of"):
        return f"{'expectation' if list_key == 'expect' else 'any_of'} {index + 1}"
    return f"{list_key} item {index + 1}"
