"""Compiling the filter tree (:mod:`engramdb.query.filters`) to PostgreSQL.

Same semantics as :func:`engramdb.stores.sqlite.filters.compile_sqlite`, over the PostgreSQL schema
(JSONB ``metadata`` and ``tags``, epoch-microsecond times):

* every predicate is two-valued (``COALESCE(…, false)``, or bare on the NOT NULL columns of
  ``NOT_NULL_FIELDS`` so that their indexes stay usable), so ``NOT``, ``$ne`` and ``$nin``
  match records where the key is missing;
* JSON equality compares JSONB values, which are typed: ``true`` never equals ``1`` and
  ``"1"`` never equals ``1``, while ``1`` equals ``1.0`` (as in SQLite);
* ranges on metadata apply to JSON numbers only (booleans are not numbers);
* a metadata path walks objects only (``->`` with a text key), never array positions,
  exactly like SQLite's quoted ``$."a"."b"`` paths.

Only bound parameters (``%s``) carry values; the SQL text holds nothing but fixed column
names from the filter module's field table. Metadata equality also adds a JSONB containment
test (implied by the equality, so it changes no result) that the GIN index on
``(namespace, metadata)`` can answer; tag tests are containment tests the tag index answers.
"""

from __future__ import annotations

import json
import re
from typing import Any

from engramdb.errors import ValidationError
from engramdb.query.filters import COMPARE, EMPTY_AS_NONE, NOT_NULL_FIELDS, Cmp, Node
from engramdb.query.sql import SQL_OP as _SQL_OP
from engramdb.query.sql import compile_set_ops, compile_tree

_SEGMENT = re.compile(r'\."([A-Za-z0-9_\-]{1,64})"')


def compile_postgres(node: Node | None, alias: str = "r") -> tuple[str, list[Any]]:
    """Compile a filter tree to a PostgreSQL boolean expression over the records table.

    Returns the SQL text (with ``%s`` placeholders) and its parameters, in order.
    """
    if node is None:
        return "TRUE", []
    params: list[Any] = []
    return compile_tree(node, alias, params, _cmp, "%s"), params


def meta_segments(path: str) -> list[str]:
    """The segments of a compiled metadata path (``$."a"."b"`` -> ``["a", "b"]``)."""
    segments = _SEGMENT.findall(path)
    if "$" + "".join(f'."{s}"' for s in segments) != path or not segments:
        raise ValidationError(f"invalid metadata path {path!r}", field="metadata")
    return list(segments)


def _cmp(c: Cmp, a: str, p: list[Any]) -> str:
    done = compile_set_ops(c, a, p, _cmp, "FALSE", _in_list)
    if done is not None:
        return done
    op, v = c.op, c.value
    if c.kind == "tags":
        if op in ("$contains", "$eq"):
            tags = list(v) if isinstance(v, tuple | list) else [v]
            p.append(json.dumps(tags, ensure_ascii=False))
            return f"({a}.tags @> %s::jsonb)"
        if op == "$exists":
            return f"(jsonb_array_length({a}.tags) {'>' if v else '='} 0)"
        raise ValidationError(f"{op} does not apply to tags", field="tags")
    if c.kind == "meta":
        return _meta(c, a, p)
    col = f"{a}.{c.field}"
    if op == "$exists":
        if c.field in EMPTY_AS_NONE:
            return f"({col} {'<>' if v else '='} '')"
        return f"({col} IS {'NOT ' if v else ''}NULL)"
    if v is None:
        if c.field in EMPTY_AS_NONE:
            return f"({col} = '')"
        return f"({col} IS NULL)"
    p.append(v)
    cast = "::text" if c.kind == "str" else ""
    if c.field in NOT_NULL_FIELDS:
        return f"({col} {_SQL_OP[op]} %s{cast})"
    return f"COALESCE({col} {_SQL_OP[op]} %s{cast}, FALSE)"


# The element type a long ``$in`` list is cast to, per column kind: what an equality with
# one value binds (a float for importance, integers for versions and microsecond times).
_IN_CAST = {"importance": "float8", "version": "numeric"}


def _in_list(c: Cmp, a: str, p: list[Any]) -> str:
    """A long ``$in`` (no None in it): its values bound as one JSON array."""
    v = list(c.value)
    if c.kind == "tags":
        p.append(v)
        return f"({a}.tags ?| %s::text[])"
    if c.kind == "meta":
        x = _path_expr(a, meta_segments(c.field), p)
        p.append(json.dumps(v, ensure_ascii=False))
        # jsonb equality is typed as the ``$eq`` test is: "1" is not 1, true is not 1.
        return f"COALESCE(({x}) IN (SELECT jsonb_array_elements(%s::jsonb)), FALSE)"
    col = f"{a}.{c.field}"
    p.append(json.dumps(v, ensure_ascii=False))
    if c.kind == "str":
        test = f"{col} IN (SELECT jsonb_array_elements_text(%s::jsonb))"
    else:
        cast = _IN_CAST.get(c.field, "bigint")
        test = f"{col} IN (SELECT (jsonb_array_elements_text(%s::jsonb))::{cast})"
    if c.field in NOT_NULL_FIELDS:
        return f"({test})"
    return f"COALESCE({test}, FALSE)"


def _path_expr(a: str, segments: list[str], p: list[Any]) -> str:
    p.extend(segments)
    return f"{a}.metadata" + " -> %s::text" * len(segments)


def _nested(segments: list[str], value: Any) -> str:
    obj: Any = value
    for seg in reversed(segments):
        obj = {seg: obj}
    return json.dumps(obj, ensure_ascii=False)


def _meta(c: Cmp, a: str, p: list[Any]) -> str:
    op, v = c.op, c.value
    segs = meta_segments(c.field)
    if op == "$exists":
        return f"(({_path_expr(a, segs, p)}) IS {'NOT ' if v else ''}NULL)"
    if op == "$contains":
        x = _path_expr(a, segs, p)
        x2 = _path_expr(a, segs, p)
        if v is None:
            inner = "jsonb_typeof(j.value) = 'null'"
        else:
            p.append(json.dumps(v, ensure_ascii=False))
            inner = "j.value = %s::jsonb"
        return (
            f"COALESCE(jsonb_typeof({x}) = 'array' AND EXISTS "
            f"(SELECT 1 FROM jsonb_array_elements({x2}) AS j WHERE {inner}), FALSE)"
        )
    if op in COMPARE:
        x = _path_expr(a, segs, p)
        x2 = _path_expr(a, segs, p)
        p.append(v)
        return (
            f"COALESCE(CASE WHEN jsonb_typeof({x}) = 'number' "
            f"THEN ({x2})::numeric {_SQL_OP[op]} %s ELSE FALSE END, FALSE)"
        )
    if v is None:  # equality with None: an explicit null or a missing key
        x = _path_expr(a, segs, p)
        return f"COALESCE(jsonb_typeof({x}) = 'null', TRUE)"
    p.append(_nested(segs, v))
    x = _path_expr(a, segs, p)
    p.append(json.dumps(v, ensure_ascii=False))
    # The containment test stays bare (``metadata`` is NOT NULL, so it is two-valued), which
    # lets the planner answer it from the (namespace, metadata) GIN index; inside COALESCE
    # it was evaluated on every record of the namespace.
    return f"({a}.metadata @> %s::jsonb AND COALESCE(({x}) = %s::jsonb, FALSE))"
