"""The value indexes: ``record_tags`` (every tag of a record) and ``record_meta`` (its
top-level metadata strings and numbers), so that a filter on a rare value starts from it.

Inserts write their rows here (:func:`index_values`); updates and deletes are followed by the
triggers of migrations 0008 and 0010. ``doctor`` checks both tables against what the records
say they must hold (:data:`VALUE_INDEXES`) and rebuilds them.
"""

from __future__ import annotations

import sqlite3

# The metadata values record_meta indexes (migration 0010): top-level numbers, and strings
# of at most META_INDEX_MAX_CHARS characters (the same test in SQL and in Python).
META_INDEX_MAX_CHARS = 200
_META_INDEXED = (
    "({j}type IN ('integer', 'real') OR "
    f"({{j}}type = 'text' AND length({{j}}value) <= {META_INDEX_MAX_CHARS}))"
)
# What record_tags must hold (migration 0008's triggers keep it so).
_TAG_ROWS = (
    "SELECT DISTINCT r.namespace, j.value, r.rid FROM records r, json_each(r.tags) j "
    "WHERE r.tags <> '[]'"
)
_META_ROWS = (
    "SELECT r.namespace, j.key, j.value, r.rid FROM records r, json_each(r.metadata) j "
    f"WHERE r.metadata <> '{{}}' AND {_META_INDEXED.format(j='j.')}"
)
# The derived value indexes doctor checks and rebuilds: (what, table, its columns, the
# rows the records say it must hold).
VALUE_INDEXES = (
    ("tag", "record_tags", "namespace, tag, rid", _TAG_ROWS),
    ("metadata", "record_meta", "namespace, key, value, rid", _META_ROWS),
)


def indexable_meta(value: object) -> bool:
    """True for a metadata value ``record_meta`` holds (the Python side of the SQL test)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number or (isinstance(value, str) and len(value) <= META_INDEX_MAX_CHARS)


def stale_rows_sql(table: str, cols: str, rows: str) -> str:
    """How many rows of ``table`` are missing or extra against ``rows``."""
    return (
        f"SELECT (SELECT count(*) FROM ({rows} EXCEPT SELECT {cols} FROM {table})) + "
        f"(SELECT count(*) FROM (SELECT {cols} FROM {table} EXCEPT {rows}))"
    )


def index_values(c: sqlite3.Connection, ns: str, records: list[tuple[int, str, str]]) -> None:
    """Add new records' tags to ``record_tags`` and their top-level metadata strings and
    numbers to ``record_meta`` (``records``: rowid, JSON tags, JSON metadata).

    Inserts write these rows here; updates and deletes are followed by the triggers of
    migrations 0008 and 0010. An AFTER INSERT trigger would do it too, but a table with one
    makes SQLite keep a statement journal for every row inserted, even when no record has
    a tag (docs/tuning.md).
    """
    tagged = [(ns, rid, tags) for rid, tags, _ in records if tags != "[]"]
    if tagged:
        c.executemany(
            "INSERT INTO record_tags(namespace, tag, rid) SELECT DISTINCT ?1, value, ?2 "
            "FROM json_each(?3)",
            tagged,
        )
    described = [(ns, rid, meta) for rid, _, meta in records if meta != "{}"]
    if described:
        c.executemany(
            "INSERT OR IGNORE INTO record_meta(namespace, key, value, rid) "
            f"SELECT ?1, key, value, ?2 FROM json_each(?3) WHERE {_META_INDEXED.format(j='')}",
            described,
        )
