"""The pgvector store's keyword index: RUM where the extension is installed, GIN otherwise.

GIN only finds the matching chunks: ``ORDER BY ts_rank_cd(tsv, q)`` then reads and ranks every match's
tsvector from the table, which at 100,000 chunks of random words (each query word in ~2% of them) is most
of a search. A RUM index keeps each lexeme's positions, so ``ORDER BY tsv <=> q LIMIT n`` ranks from the
index alone (its score is cover density, as ts_rank_cd's). RUM is not in core PostgreSQL nor on every
managed service, so GIN stays the fallback, and either serves the same queries.
"""

from __future__ import annotations

from typing import Literal

from psycopg import sql

KeywordIndex = Literal["rum", "gin"]
KeywordIndexSetting = Literal["auto", "gin"]  # auto: RUM when the database can have it

INDEX_DDL: dict[KeywordIndex, str] = {
    "rum": "CREATE INDEX IF NOT EXISTS {chunks_rum} ON {chunks} USING rum (tsv rum_tsvector_ops)",
    "gin": "CREATE INDEX IF NOT EXISTS {chunks_tsv} ON {chunks} USING gin (tsv)",
}
# the other kind's index, dropped: one keyword index to keep up on every write
OTHER_INDEX: dict[KeywordIndex, str] = {"rum": "chunks_tsv", "gin": "chunks_rum"}

# the ranking: RUM's distance (1 / score) read from the index; GIN's matches ranked row by row. No
# tie-break on RUM: the planner reads an index in order only when the index gives every sort key
RANKING: dict[KeywordIndex, str] = {
    "rum": "c.tsv <=> to_tsquery({config}, %s)",
    "gin": "ts_rank_cd(c.tsv, to_tsquery({config}, %s)) DESC, c.id",
}


def choose(setting: KeywordIndexSetting, rum_available: bool) -> KeywordIndex:
    return "rum" if setting == "auto" and rum_available else "gin"


def ranking_query(index: KeywordIndex) -> sql.SQL:
    """Chunk ids matching a to_tsquery expression and passing ``{where}``, best first. Parameters: the
    expression, the filters', the expression again, the limit. The filters go into the scan, so the limit
    counts only rows that pass them."""
    return sql.SQL(
        "SELECT c.id FROM {chunks} c WHERE c.tsv @@ to_tsquery({config}, %s) AND {where} "
        f"ORDER BY {RANKING[index]} LIMIT %s"
    )
