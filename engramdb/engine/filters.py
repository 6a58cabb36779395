"""The filter language shared by list, search, count and delete_all.

A filter is a JSON object. Top-level keys are ANDed. Keys name a field; values are either a
literal (equality) or an object of operators::

    {"user_id": "alice",
     "type": {"$in": ["fact", "preference"]},
     "importance": {"$gte": 0.5},
     "tags": {"$contains": "profile"},
     "metadata.project.stage": {"$ne": "done"},
     "$or": [{"thread_id": "t1"}, {"occurred_at": {"$gt": "2024-01-01T00:00:00Z"}}]}

Fields: ``id user_id agent_id thread_id type source`` (strings), ``importance version``
(numbers), ``occurred_at created_at updated_at valid_from valid_to expires_at`` (datetimes
with a time zone), ``tags`` (a set of strings), and ``metadata.<dotted.path>``.

Operators: ``$eq $ne $in $nin $gt $gte $lt $lte $contains $exists`` and the combinators
``$and $or $not``. Semantics:

* a missing key (or a missing scope such as no user_id) matches ``$ne`` and ``$nin``, and
  matches equality with ``None``;
* booleans are not numbers: ``{"metadata.flag": 1}`` does not match ``true``, and ranges
  reject booleans;
* datetimes must carry a time zone; naive ones are rejected;
* ``tags: "x"`` means the record has tag x; ``tags: {"$contains": [a, b]}`` means all of them;
  ``tags: {"$in": [a, b]}`` any of them, ``$nin`` none of them;
* an unknown field or operator is a :class:`ValidationError`, never ignored.

Parsing is pure; :func:`compile_sqlite` turns the tree into SQL with bound parameters only.
A caller's key never reaches SQL text: field names come from a fixed table and metadata path
segments must match a strict pattern before they are placed in a bound JSON-path parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engramdb.engine.timeutil import to_us
from engramdb.errors import LimitExceededError, ValidationError

STRING_FIELDS = {"id", "user_id", "agent_id", "thread_id", "type", "source"}
NUMBER_FIELDS = {"importance", "version"}
TIME_FIELDS = {"occurred_at", "created_at", "updated_at", "valid_from", "valid_to", "expires_at"}
# Scope columns are stored as '' when absent so that the dedup unique index can see them.
EMPTY_AS_NONE = {"user_id", "agent_id", "thread_id", "source"}
# Columns NOT NULL in both stores' schemas: a comparison on them is already two-valued, so the
# compilers emit it bare. Wrapped in COALESCE it would hide the column from the planner, and
# a list or count scoped to one user would walk the whole namespace instead of its index.
NOT_NULL_FIELDS = {
    "id",
    "user_id",
    "agent_id",
    "thread_id",
    "type",
    "source",
    "version",
    "occurred_at",
    "created_at",
    "updated_at",
}
SEGMENT = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_DEPTH = 16
COMPARE = ("$gt", "$gte", "$lt", "$lte")
OPS = {"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$contains", "$exists"}


@dataclass(frozen=True, slots=True)
class Cmp:
    """One comparison: ``kind`` is str|num|time|tags|meta, ``field`` the column or path."""

    kind: str
    field: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class Bool:
    """A combination of nodes: ``op`` is and|or|not."""

    op: str
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ValidAt:
    """Facts valid at a time: valid_from <= t (or open) and t < valid_to (or open)."""

    at_us: int


@dataclass(frozen=True, slots=True)
class Live:
    """Hides records whose expires_at is at or before now."""

    now_us: int


Node = Cmp | Bool | ValidAt | Live


def parse(filters: Any, max_clauses: int = 256) -> Node | None:
    """Parse a filter object into a tree; ``None`` or ``{}`` means no filter.

    Raises:
        ValidationError: unknown field or operator, wrong-typed value, naive datetime.
        LimitExceededError: more clauses than ``max_clauses`` or nesting deeper than 16.
    """
    if filters is None:
        return None
    counter = [0]
    node = _parse_obj(filters, counter, max_clauses, 0)
    return node


def _parse_obj(obj: Any, counter: list[int], max_clauses: int, depth: int) -> Node | None:
    if depth > MAX_DEPTH:
        raise LimitExceededError(f"filter nests deeper than {MAX_DEPTH} levels", limit="depth")
    if not isinstance(obj, dict):
        raise ValidationError(
            f"a filter must be a JSON object, got {type(obj).__name__}", field="filters"
        )
    items: list[Node] = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ValidationError(f"filter key {key!r} is not a string", field="filters")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise ValidationError(f"{key} takes a non-empty list of filters", field=key)
            subs = [_parse_obj(v, counter, max_clauses, depth + 1) for v in value]
            kept = tuple(s for s in subs if s is not None)
            if kept:
                items.append(Bool(key[1:], kept))
        elif key == "$not":
            sub = _parse_obj(value, counter, max_clauses, depth + 1)
            if sub is not None:
                items.append(Bool("not", (sub,)))
        elif key.startswith("$"):
            raise ValidationError(f"unknown filter operator {key!r}", field=key)
        else:
            items.extend(_parse_field(key, value, counter, max_clauses))
    if not items:
        return None
    return items[0] if len(items) == 1 else Bool("and", tuple(items))


def _parse_field(key: str, value: Any, counter: list[int], max_clauses: int) -> list[Node]:
    kind = _field_kind(key)
    if isinstance(value, dict) and any(isinstance(k, str) and k.startswith("$") for k in value):
        pairs = list(value.items())
    else:
        pairs = [("$contains" if kind == "tags" and not isinstance(value, list) else "$eq", value)]
    out: list[Node] = []
    for op, operand in pairs:
        if op not in OPS:
            raise ValidationError(f"unknown filter operator {op!r} on {key!r}", field=key)
        counter[0] += 1
        if counter[0] > max_clauses:
            raise LimitExceededError(
                f"filter has more than max_filter_clauses={max_clauses} clauses",
                limit="max_filter_clauses",
            )
        out.append(Cmp(kind, _column(key, kind), op, _check_operand(kind, key, op, operand)))
    return out


def _field_kind(key: str) -> str:
    if key in STRING_FIELDS:
        return "str"
    if key in NUMBER_FIELDS:
        return "num"
    if key in TIME_FIELDS:
        return "time"
    if key == "tags":
        return "tags"
    if key.startswith("metadata."):
        segments = key.split(".")[1:]
        if len(segments) > 8 or not all(SEGMENT.match(s) for s in segments):
            raise ValidationError(
                f"metadata path {key!r} is invalid: up to 8 dot-separated segments of "
                "letters, digits, '_' or '-'",
                field=key,
            )
        return "meta"
    raise ValidationError(
        f"unknown filter field {key!r}; use one of "
        f"{sorted(STRING_FIELDS | NUMBER_FIELDS | TIME_FIELDS | {'tags'})} or metadata.<path>",
        field=key,
    )


def _column(key: str, kind: str) -> str:
    if kind == "meta":
        return "$" + "".join(f'."{s}"' for s in key.split(".")[1:])
    return key


def top_level_key(path: str) -> str | None:
    """The metadata key of a compiled path (see :func:`_column`) naming a top-level key,
    ``$."key"`` -> ``key``; None for a nested path. Keys never hold dots or quotes."""
    segments = path[1:].split(".")[1:]
    return segments[0][1:-1] if len(segments) == 1 else None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_scalar(kind: str, key: str, op: str, v: Any) -> Any:
    if kind == "str":
        if v is None or isinstance(v, str):
            return v
        raise ValidationError(f"{key} {op}: expected a string, got {v!r}", field=key)
    if kind == "num":
        if v is None and op in ("$eq", "$ne", "$in", "$nin"):
            return None
        if not _is_number(v) or not math.isfinite(float(v)):
            raise ValidationError(
                f"{key} {op}: expected a finite number (booleans are not numbers), got {v!r}",
                field=key,
            )
        return v
    if kind == "time":
        if v is None and op in ("$eq", "$ne", "$in", "$nin"):
            return None
        if not isinstance(v, datetime | str):
            raise ValidationError(f"{key} {op}: expected a datetime, got {v!r}", field=key)
        return to_us(v, key)
    if kind == "tags":
        if isinstance(v, str):
            return v
        raise ValidationError(f"tags {op}: expected a string tag, got {v!r}", field=key)
    # metadata
    if op in COMPARE:
        if not _is_number(v) or not math.isfinite(float(v)):
            raise ValidationError(
                f"{key} {op}: ranges on metadata need a finite number (not a boolean), got {v!r}",
                field=key,
            )
        return v
    if v is None or isinstance(v, str | bool) or (_is_number(v) and math.isfinite(float(v))):
        if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
            raise ValidationError(f"{key} {op}: {v} does not fit in 64 bits", field=key)
        return v
    raise ValidationError(
        f"{key} {op}: expected a string, number, boolean or null, got {v!r}", field=key
    )


def _check_operand(kind: str, key: str, op: str, v: Any) -> Any:
    if op == "$exists":
        if not isinstance(v, bool):
            raise ValidationError(f"{key} $exists: expected true or false, got {v!r}", field=key)
        return v
    if op in ("$in", "$nin"):
        if not isinstance(v, list | tuple):
            raise ValidationError(f"{key} {op}: expected a list, got {v!r}", field=key)
        if len(v) > 1000:
            raise LimitExceededError(f"{key} {op}: more than 1000 values", field=key)
        return tuple(_check_scalar(kind, key, op, x) for x in v)
    if op == "$contains":
        if kind == "tags":
            values = v if isinstance(v, list | tuple) else [v]
            if not values:
                raise ValidationError("tags $contains: empty list", field=key)
            return tuple(_check_scalar(kind, key, op, x) for x in values)
        if kind == "meta":
            return _check_scalar(kind, key, "$eq", v)
        raise ValidationError(
            f"$contains applies to tags and metadata lists, not {key!r}", field=key
        )
    if op in COMPARE and kind in ("str", "tags"):
        raise ValidationError(f"{op} does not apply to {key!r}", field=key)
    if kind == "tags" and op in ("$eq", "$ne"):
        return _check_scalar(kind, key, op, v)
    return _check_scalar(kind, key, op, v)


# ---------------------------------------------------------------- SQLite compilation

_SQL_OP = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def compile_sqlite(node: Node | None, alias: str = "r") -> tuple[str, list[Any]]:
    """Compile a filter tree to a SQLite boolean expression over the records table.

    Every sub-expression is made two-valued (never NULL) so that ``NOT`` and ``$ne`` treat
    missing values as documented.
    """
    if node is None:
        return "1", []
    params: list[Any] = []
    sql = compile_tree(node, alias, params, _cmp_sqlite, "?")
    return sql, params


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


def compile_set_ops(c: Cmp, a: str, p: list[Any], leaf: Leaf, false_sql: str) -> str | None:
    """Rewrite ``$ne``/``$nin``/``$in`` into ``$eq`` comparisons; None for other operators.

    Shared by both dialects so that the documented missing-value semantics (a missing key
    matches ``$ne``/``$nin``) come from one place.
    """
    op, v = c.op, c.value
    if op == "$ne":
        return f"(NOT {leaf(Cmp(c.kind, c.field, '$eq', v), a, p)})"
    if op == "$nin":
        return f"(NOT {leaf(Cmp(c.kind, c.field, '$in', v), a, p)})"
    if op == "$in":
        if not v:
            return false_sql
        return "(" + " OR ".join(leaf(Cmp(c.kind, c.field, "$eq", x), a, p) for x in v) + ")"
    return None


# One point lookup in SQLite's tag index (migration 0008) instead of opening the record's
# JSON array: 30-46 ms instead of 36-58 ms to test every record of a 100k namespace.
_HAS_TAG = (
    "EXISTS (SELECT 1 FROM record_tags t WHERE t.namespace = {a}.namespace AND t.tag = ? "
    "AND t.rid = {a}.rid)"
)


def _cmp_sqlite(c: Cmp, a: str, p: list[Any]) -> str:
    done = compile_set_ops(c, a, p, _cmp_sqlite, "0")
    if done is not None:
        return done
    op, v = c.op, c.value
    if c.kind == "tags":
        if op in ("$contains", "$eq"):
            tags = v if op == "$contains" else [v]
            p.extend(tags)
            return "(" + " AND ".join([_HAS_TAG.format(a=a)] * len(tags)) + ")"
        if op == "$exists":
            return f"(json_array_length({a}.tags) {'>' if v else '='} 0)"
        raise ValidationError(f"{op} does not apply to tags", field="tags")
    if c.kind == "meta":
        return _meta_sqlite(c, a, p)
    col = f"{a}.{c.field}"
    if op == "$exists":
        if c.field in EMPTY_AS_NONE:
            return f"({col} {'!=' if v else '='} '')"
        return f"({col} IS {'NOT ' if v else ''}NULL)"
    if v is None:
        if c.field in EMPTY_AS_NONE:
            return f"({col} = '')"
        return f"({col} IS NULL)"
    p.append(v)
    if c.field in NOT_NULL_FIELDS:
        return f"({col} {_SQL_OP[op]} ?)"
    return f"COALESCE({col} {_SQL_OP[op]} ?, 0)"


def _meta_sqlite(c: Cmp, a: str, p: list[Any]) -> str:
    op, v, path = c.op, c.value, c.field
    m = f"{a}.metadata"
    if op == "$exists":
        p.append(path)
        return f"(json_type({m}, ?) IS {'NOT ' if v else ''}NULL)"
    if op == "$contains":
        p.extend([path, path])
        inner = _json_equals("j.type", "j.value", v, p)
        return (
            f"COALESCE(json_type({m}, ?) = 'array' AND EXISTS "
            f"(SELECT 1 FROM json_each({m}, ?) AS j WHERE {inner}), 0)"
        )
    if op in COMPARE:
        p.extend([path, path, v])
        return (
            f"COALESCE(json_type({m}, ?) IN ('integer', 'real') AND "
            f"json_extract({m}, ?) {_SQL_OP[op]} ?, 0)"
        )
    if v is None:  # equality with None: an explicit null or a missing key
        p.append(path)
        return f"COALESCE(json_type({m}, ?) = 'null', 1)"
    p.append(path)
    if isinstance(v, bool):
        return f"COALESCE({_json_equals(f'json_type({m}, ?)', '', v, p)}, 0)"
    p.append(path)
    return f"COALESCE({_json_equals(f'json_type({m}, ?)', f'json_extract({m}, ?)', v, p)}, 0)"


def _json_equals(type_sql: str, value_sql: str, v: Any, p: list[Any]) -> str:
    """SQL testing that a JSON value (its type and value expressions) equals ``v`` exactly."""
    if v is None:
        return f"({type_sql} = 'null')"
    if isinstance(v, bool):
        return f"({type_sql} = '{'true' if v else 'false'}')"
    p.append(v)
    if isinstance(v, str):
        return f"({type_sql} = 'text' AND {value_sql} = ?)"
    return f"({type_sql} IN ('integer', 'real') AND {value_sql} = ?)"


def required_leaves(node: Node | None) -> list[Cmp]:
    """The comparisons every match of the filter must meet (the top-level ANDs).

    A store can start a read from them (an index on a scope, a tag, a metadata value)
    before evaluating the rest of the filter.
    """
    found: list[Cmp] = []
    stack = [] if node is None else [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Bool) and n.op == "and":
            stack.extend(n.items)
        elif isinstance(n, Cmp):
            found.append(n)
    return found


def required_equalities(node: Node | None, fields: frozenset[str]) -> set[tuple[str, str]]:
    """The ``(field, value)`` conditions every match of the filter must meet (top-level ANDs).

    SQLite intersects a keyword query with a user's or thread's scope token. Empty values
    are left out (they mean "no user", which no token names).
    """
    return {
        (c.field, str(c.value))
        for c in required_leaves(node)
        if c.op == "$eq" and c.field in fields and c.value
    }


def required_tags(node: Node | None) -> list[str]:
    """The tags every match of the filter must carry (top-level ANDs), sorted.

    SQLite starts a tag-filtered read from its tag index when the filter requires one.
    """
    found: set[str] = set()
    for c in required_leaves(node):
        if c.kind == "tags" and c.op in ("$eq", "$contains"):
            found.update([c.value] if c.op == "$eq" else c.value)
    return sorted(found)


def live_now(node: Node) -> int:
    """The ``now`` of a live-only filter (see :func:`is_live_only`)."""
    if isinstance(node, Live):
        return node.now_us
    assert isinstance(node, Bool)
    return max(n.now_us for n in node.items if isinstance(n, Live))


def is_live_only(node: Node | None) -> bool:
    """True when the filter is nothing but the default expiry check.

    Stores use it to skip the per-candidate expiry check when nothing in the namespace has
    expired yet (one probe of the ``(namespace, expires_at)`` index).
    """
    return isinstance(node, Live) or (
        isinstance(node, Bool) and node.op == "and" and all(isinstance(n, Live) for n in node.items)
    )
