"""Where a filtered read starts: the namespace's (or a scope's) index, or a rare value's.

A filter that requires a tag or an indexed metadata value (:mod:`.value_index`) held by few
records is read from that value's index; a commoner one is left to SQLite's own plan, which
walks the namespace (or the user's or thread's index) and meets it soon enough. The gates
are module constants read at call time, so tests can close them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from engramdb.query.filters import (
    Node,
    required_equalities,
    required_leaves,
    required_tags,
    top_level_key,
)
from engramdb.stores.sqlite.filters import compile_sqlite
from engramdb.stores.sqlite.keys import SCOPE_FIELDS
from engramdb.stores.sqlite.value_index import indexable_meta

# A list page filtered to a tag sorts the tag's records when there are at most this many;
# a commoner tag turns up soon enough walking the namespace in id order.
LIST_TAG_GATE = 2000
# Other filtered reads (count, delete, a search's candidates) start from the tag index
# when at most this many records carry the tag: its rowid lookups beat testing every record
# of the namespace until the tag covers a good share of it (docs/tuning.md).
TAG_GATE = 20000
_TAG_ROWS_UPTO = (
    "SELECT count(*) FROM (SELECT 1 FROM record_tags WHERE namespace = ? AND tag = ? LIMIT ?)"
)
_META_ROWS_UPTO = (
    "SELECT count(*) FROM (SELECT 1 FROM record_meta WHERE namespace = ? AND key = ? "
    "AND value = ? LIMIT ?)"
)


@dataclass(frozen=True, slots=True)
class Members:
    """The records of one indexed value a filter requires: a tag (``record_tags``) or a
    top-level metadata string or number (``record_meta``)."""

    key: tuple[Any, ...]  # (tag,) or (metadata key, value)

    def rids(self, namespace: str) -> tuple[str, list[Any]]:
        """A subquery of the members' rowids, and its arguments."""
        if len(self.key) == 1:
            return "SELECT rid FROM record_tags WHERE namespace = ? AND tag = ?", [
                namespace,
                self.key[0],
            ]
        return "SELECT rid FROM record_meta WHERE namespace = ? AND key = ? AND value = ?", [
            namespace,
            *self.key,
        ]

    def size_upto(self, c: sqlite3.Connection, namespace: str, most: int) -> int:
        """How many records are members, counting no further than ``most``."""
        sql = _TAG_ROWS_UPTO if len(self.key) == 1 else _META_ROWS_UPTO
        return int(c.execute(sql, (namespace, *self.key, most)).fetchone()[0])


def indexed_values(node: Node | None) -> list[Members]:
    """The tags and indexed metadata values every match of the filter must have."""
    found = [Members((tag,)) for tag in sorted(required_tags(node))]
    for leaf in required_leaves(node):
        if leaf.kind != "meta" or leaf.op != "$eq":
            continue
        key = top_level_key(leaf.field)
        if key is not None and indexable_meta(leaf.value):
            found.append(Members((key, leaf.value)))
    return found


def rare_values(
    c: sqlite3.Connection, namespace: str, node: Node | None, most: int | None = None
) -> Members | None:
    """The rarest tag or metadata value the filter requires, when at most ``most``
    (default ``TAG_GATE``) records have it and the filter names no user or thread; None
    otherwise.

    Reads that find one start from its index (``r.rid IN`` its records, with ``NOT
    INDEXED`` on ``r`` so that the planner can only look those rowids up): left to itself
    the planner reads the namespace's index and tests each record, however few carry the
    value. A commoner value is left
    to that walk, which meets it soon enough (and ranks or counts no worse), and a user's or
    thread's index, already a narrow range, leads when the filter names one. Counting stops
    at ``most + 1`` rows of the index.
    """
    candidates = indexed_values(node)
    if not candidates or required_equalities(node, SCOPE_FIELDS):
        return None
    most = TAG_GATE if most is None else most
    sizes = [(m.size_upto(c, namespace, most + 1), i) for i, m in enumerate(candidates)]
    size, i = min(sizes)
    return candidates[i] if size <= most else None


def gated_select(
    c: sqlite3.Connection,
    cols: str,
    namespace: str,
    node: Node | None,
    join: str = "",
    most: int | None = None,
    hint: str = "",
) -> tuple[str, list[Any]]:
    """``SELECT cols FROM records r {join}`` over the namespace's matching records, started
    from the tag or metadata index when the filter requires a value at most ``most``
    records have (see rare_values); otherwise ``hint`` (an ``INDEXED BY``) goes after
    ``r``."""
    return select_over(cols, namespace, node, rare_values(c, namespace, node, most), join, hint)


def select_over(
    cols: str,
    namespace: str,
    node: Node | None,
    members: Members | None,
    join: str = "",
    hint: str = "",
) -> tuple[str, list[Any]]:
    """The SQL of :func:`gated_select` for members already chosen (or None)."""
    where, params = compile_sqlite(node)
    if members is None:
        sql = f"SELECT {cols} FROM records r{hint} {join} WHERE r.namespace = ? AND {where}"
        return sql, [namespace, *params]
    rids, rid_args = members.rids(namespace)
    sql = (
        f"SELECT {cols} FROM records r NOT INDEXED {join} WHERE r.namespace = ? "
        f"AND r.rid IN ({rids}) AND {where}"
    )
    return sql, [namespace, *rid_args, *params]
