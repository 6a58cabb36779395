"""The filter language compiled to SQLite: bound parameters only, every predicate two-valued."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from engramdb.errors import ValidationError
from engramdb.query.filters import COMPARE, EMPTY_AS_NONE, NOT_NULL_FIELDS, Cmp, Node
from engramdb.query.sql import INLINE_IN, compile_set_ops, compile_tree
from engramdb.query.sql import SQL_OP as _SQL_OP


def first_expiry(c: sqlite3.Connection, namespace: str) -> int | None:
    """The earliest ``expires_at`` of the namespace's records (None: none expires).

    One probe of the ``(namespace, expires_at)`` index. Searches use it to skip checking
    their candidates against the default expiry filter while nothing has expired yet.
    """
    (first,) = c.execute(
        "SELECT MIN(expires_at) FROM records WHERE namespace = ? AND expires_at IS NOT NULL",
        (namespace,),
    ).fetchone()
    return None if first is None else int(first)


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


# One point lookup in SQLite's tag index (migration 0008) instead of opening the record's
# JSON array, which is the cheaper test when every record of a namespace is tested.
_HAS_TAG = (
    "EXISTS (SELECT 1 FROM record_tags t WHERE t.namespace = {a}.namespace AND t.tag = ? "
    "AND t.rid = {a}.rid)"
)


def _cmp_sqlite(c: Cmp, a: str, p: list[Any]) -> str:
    done = compile_set_ops(c, a, p, _cmp_sqlite, "0", _in_list)
    if done is not None:
        return done
    op, v = c.op, c.value
    if c.kind == "tags":
        if op in ("$contains", "$eq"):
            tags = v if op == "$contains" else [v]
            if len(tags) > INLINE_IN:
                wanted = sorted(set(tags))
                p.extend([_json_array(wanted), len(wanted)])
                return f"({_TAGS_IN.format(a=a, what='COUNT(DISTINCT t.tag)')} = ?)"
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


_IN_ARRAY = "IN (SELECT value FROM json_each(?))"
_TAGS_IN = (
    "(SELECT {what} FROM record_tags t WHERE t.namespace = {a}.namespace AND t.rid = {a}.rid "
    f"AND t.tag {_IN_ARRAY})"
)


def _json_array(values: Any) -> str:
    return json.dumps(list(values), ensure_ascii=False)


def _in_list(c: Cmp, a: str, p: list[Any]) -> str:
    """A long ``$in`` (no None in it): its values bound as one JSON array."""
    v = c.value
    if c.kind == "tags":
        p.append(_json_array(v))
        return f"EXISTS {_TAGS_IN.format(a=a, what='1')}"
    if c.kind == "meta":
        m, path = f"{a}.metadata", c.field
        parts = []
        texts = [x for x in v if isinstance(x, str)]
        numbers = [x for x in v if not isinstance(x, str | bool)]
        if texts:
            p.extend([path, path, _json_array(texts)])
            parts.append(f"(json_type({m}, ?) = 'text' AND json_extract({m}, ?) {_IN_ARRAY})")
        if numbers:
            p.extend([path, path, _json_array(numbers)])
            parts.append(
                f"(json_type({m}, ?) IN ('integer', 'real') AND json_extract({m}, ?) {_IN_ARRAY})"
            )
        parts.extend(
            _meta_sqlite(Cmp("meta", path, "$eq", x), a, p)
            for x in v
            if x in (True, False) and isinstance(x, bool)
        )
        return "COALESCE(" + " OR ".join(parts) + ", 0)"
    p.append(_json_array(v))
    col = f"{a}.{c.field}"
    if c.field in NOT_NULL_FIELDS:
        return f"({col} {_IN_ARRAY})"
    return f"COALESCE({col} {_IN_ARRAY}, 0)"


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
