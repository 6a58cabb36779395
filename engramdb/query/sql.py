"""The dialect-neutral part of compiling a filter tree to SQL, shared by both stores.

Each store's compiler (``stores/sqlite/filters.py``, ``stores/postgres/filters.py``) supplies
the comparison of one leaf in its dialect; combinators, ``valid_at`` and the expiry check
are written here once, so the documented missing-value semantics come from one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engramdb.query.filters import Bool, Cmp, Live, Node, ValidAt

SQL_OP = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}

Leaf = Callable[[Cmp, str, list[Any]], str]


def compile_tree(node: Node, a: str, p: list[Any], leaf: Leaf, ph: str) -> str:
    """Compile the dialect-neutral part of a tree (and/or/not, valid_at, expiry).

    Both stores' compilers share it; ``leaf`` compiles one comparison in the dialect and
    ``ph`` is its parameter placeholder (``?`` or ``%s``).
    """
    if isinstance(node, Bool):
        if node.op == "not":
            return f"(NOT {compile_tree(node.items[0], a, p, leaf, ph)})"
        joiner = " AND " if node.op == "and" else " OR "
        return "(" + joiner.join(compile_tree(n, a, p, leaf, ph) for n in node.items) + ")"
    if isinstance(node, ValidAt):
        p.extend([node.at_us, node.at_us])
        return (
            f"(({a}.valid_from IS NULL OR {a}.valid_from <= {ph}) AND "
            f"({a}.valid_to IS NULL OR {a}.valid_to > {ph}))"
        )
    if isinstance(node, Live):
        p.append(node.now_us)
        return f"({a}.expires_at IS NULL OR {a}.expires_at > {ph})"
    return leaf(node, a, p)


# Lists up to this size are written as ORed equalities (the planner sees each value); longer
# ones are bound as one JSON array (``InList``), so an allowed ``$in`` of any size costs one
# parameter and one expression node: 1,000 ORed terms passed SQLite's expression depth limit
# (1,000) and, over 256 clauses, PostgreSQL's 65,535 bound parameters.
INLINE_IN = 16
InList = Callable[[Cmp, str, list[Any]], str]


def compile_set_ops(
    c: Cmp, a: str, p: list[Any], leaf: Leaf, false_sql: str, in_list: InList
) -> str | None:
    """Rewrite ``$ne``/``$nin``/``$in`` into ``$eq`` comparisons; None for other operators.

    Shared by both dialects so that the documented missing-value semantics (a missing key
    matches ``$ne``/``$nin``) come from one place. ``in_list`` compiles an ``$in`` longer than
    :data:`INLINE_IN` in the dialect, with the values bound as one array; a ``None`` among
    them is compiled here as its own equality, ORed.
    """
    op, v = c.op, c.value
    if op == "$ne":
        return f"(NOT {leaf(Cmp(c.kind, c.field, '$eq', v), a, p)})"
    if op == "$nin":
        return f"(NOT {leaf(Cmp(c.kind, c.field, '$in', v), a, p)})"
    if op == "$in":
        if not v:
            return false_sql
        if len(v) <= INLINE_IN:
            return "(" + " OR ".join(leaf(Cmp(c.kind, c.field, "$eq", x), a, p) for x in v) + ")"
        # Deduplicated by type and value: True and 1 are different metadata values.
        values = tuple({(type(x), x): x for x in v if x is not None}.values())
        parts = [in_list(Cmp(c.kind, c.field, "$in", values), a, p)] if values else []
        if len(values) < len(v):
            parts.append(leaf(Cmp(c.kind, c.field, "$eq", None), a, p))
        return "(" + " OR ".join(parts) + ")"
    return None
