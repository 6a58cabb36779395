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

Parsing is pure; each store compiles the tree to its dialect (``stores/sqlite/filters.py``,
``stores/postgres/filters.py``) with bound parameters only, sharing :mod:`engramdb.query.sql`.
A caller's key never reaches SQL text: field names come from a fixed table and metadata path
segments must match a strict pattern before they are placed in a bound JSON-path parameter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engramdb.errors import LimitExceededError, ValidationError
from engramdb.timeutil import to_us

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
SEGMENT = re.compile(r"[A-Za-z0-9_\-]{1,64}")  # applied with fullmatch
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


def parse(filters: Any, max_clauses: int = 256, max_in: int = 1000) -> Node | None:
    """Parse a filter object into a tree; ``None`` or ``{}`` means no filter.

    Raises:
        ValidationError: unknown field or operator, wrong-typed value, naive datetime.
        LimitExceededError: more clauses than ``max_clauses``, more than ``max_in`` values
            in one ``$in``/``$nin``/``$contains`` list, or nesting deeper than 16.
    """
    if filters is None:
        return None
    # counter[0]: clauses seen so far; counter[1]: the largest list a clause may hold.
    counter = [0, max_in]
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
        out.append(
            Cmp(kind, _column(key, kind), op, _check_operand(kind, key, op, operand, counter[1]))
        )
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
        if len(segments) > 8 or not all(SEGMENT.fullmatch(s) for s in segments):
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
        if v is None:
            return v
        if isinstance(v, str):
            return _check_str(key, op, v)
        raise ValidationError(f"{key} {op}: expected a string, got {v!r}", field=key)
    if kind == "num":
        if v is None and op in ("$eq", "$ne", "$in", "$nin"):
            return None
        if not _is_number(v) or not math.isfinite(float(v)):
            raise ValidationError(
                f"{key} {op}: expected a finite number (booleans are not numbers), got {v!r}",
                field=key,
            )
        _check_int(key, op, v)
        return v
    if kind == "time":
        if v is None and op in ("$eq", "$ne", "$in", "$nin"):
            return None
        if not isinstance(v, datetime | str):
            raise ValidationError(f"{key} {op}: expected a datetime, got {v!r}", field=key)
        return to_us(v, key)
    if kind == "tags":
        if isinstance(v, str):
            return _check_str(key, op, v)
        raise ValidationError(f"tags {op}: expected a string tag, got {v!r}", field=key)
    # metadata
    if op in COMPARE:
        if not _is_number(v) or not math.isfinite(float(v)):
            raise ValidationError(
                f"{key} {op}: ranges on metadata need a finite number (not a boolean), got {v!r}",
                field=key,
            )
        _check_int(key, op, v)
        return v
    if isinstance(v, str):
        return _check_str(key, op, v)
    if v is None or isinstance(v, bool) or (_is_number(v) and math.isfinite(float(v))):
        _check_int(key, op, v)
        return v
    raise ValidationError(
        f"{key} {op}: expected a string, number, boolean or null, got {v!r}", field=key
    )


def _check_list_size(key: str, op: str, values: Any, max_in: int) -> None:
    if len(values) > max_in:
        raise LimitExceededError(
            f"{key} {op}: {len(values)} values; the limit max_in_values is {max_in}",
            field=key,
            limit="max_in_values",
            value=len(values),
        )


def _check_int(key: str, op: str, v: Any) -> None:
    # Both stores hold integers in 64 bits: a larger one cannot be bound as a parameter.
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
        raise ValidationError(f"{key} {op}: {v} does not fit in 64 bits", field=key)


def _check_str(key: str, op: str, v: str) -> str:
    if "\x00" in v:
        raise ValidationError(f"{key} {op}: the value contains a NUL character", field=key)
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{key} {op}: the value is not valid Unicode (lone surrogate)", field=key
        ) from exc
    return v


def _check_operand(kind: str, key: str, op: str, v: Any, max_in: int) -> Any:
    if op == "$exists":
        if not isinstance(v, bool):
            raise ValidationError(f"{key} $exists: expected true or false, got {v!r}", field=key)
        return v
    if op in ("$in", "$nin"):
        if not isinstance(v, list | tuple):
            raise ValidationError(f"{key} {op}: expected a list, got {v!r}", field=key)
        _check_list_size(key, op, v, max_in)
        return tuple(_check_scalar(kind, key, op, x) for x in v)
    if op == "$contains":
        if kind == "tags":
            values = v if isinstance(v, list | tuple) else [v]
            if not values:
                raise ValidationError("tags $contains: empty list", field=key)
            _check_list_size(key, op, values, max_in)
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


def conjuncts(node: Node | None) -> list[Node]:
    """The conditions the filter ANDs together at its top level (nested ANDs flattened):
    every match meets each of them, whatever its kind."""
    found: list[Node] = []
    stack = [] if node is None else [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Bool) and n.op == "and":
            stack.extend(n.items)
        else:
            found.append(n)
    return found


def required_leaves(node: Node | None) -> list[Cmp]:
    """The comparisons every match of the filter must meet (the top-level ANDs).

    A store can start a read from them (an index on a scope, a tag, a metadata value)
    before evaluating the rest of the filter.
    """
    return [n for n in conjuncts(node) if isinstance(n, Cmp)]


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
