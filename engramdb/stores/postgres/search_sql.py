"""The search statements of the PostgreSQL store, built without I/O.

Each builder returns SQL with bound parameters only (``%s``) and its arguments; the values
of a filter come from :func:`engramdb.stores.postgres.filters.compile_postgres`, and a query's
words reach ``to_tsquery`` quoted (:func:`tsquery_text`). :mod:`engramdb.stores.postgres.search`
decides which statement a search runs.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np

from engramdb.query.filters import Node, is_live_only, live_now
from engramdb.stores.postgres.filters import compile_postgres
from engramdb.stores.postgres.record_sql import COLS
from engramdb.stores.postgres.vectors import _Vector, hnsw_key
from engramdb.stores.prepared import ChunkHit
from engramdb.stores.rows import row_to_record

_FTS_TERM = re.compile(r'"((?:[^"]|"")*)"')


def ann_statement(
    q: _Vector,
    namespace: str,
    user_id: str | None,
    node: Node | None,
    limit: int,
    with_records: bool,
) -> tuple[str, list[Any]]:
    """The HNSW search statement of a large scope, and its arguments.

    The ``ORDER BY`` is the index's own half-precision key (:func:`hnsw_key`), so the
    planner walks the graph; the returned score is the float32 cosine similarity. The
    user condition is written ``user_id || '' = %s`` on purpose: it keeps the planner off
    the ``(namespace, user_id)`` btree, which would read and sort the whole scope (see
    :data:`engramdb.stores.postgres.search.EXACT_USER_MAX_ROWS` for the measured costs of
    both plans).
    """
    dim = int(np.asarray(q.values).shape[-1])
    user_sql = "" if user_id is None else " AND c.user_id || '' = %s"
    user_args: list[Any] = [] if user_id is None else [user_id]
    check, check_args = record_check("c", namespace, node)
    sql = located(
        "SELECT c.id, c.rid, 1 - (c.embedding <=> %s::vector) AS score, c.start_pos, "
        f"c.end_pos FROM chunks c WHERE c.namespace = %s{user_sql} AND {check} "
        f"ORDER BY {hnsw_key(dim, 'c.')} <=> %s::vector::halfvec({dim}) LIMIT {int(limit)}",
        with_records,
    )
    return sql, [q, namespace, *user_args, *check_args, q]


def bits_statement(
    q: _Vector,
    namespace: str,
    user_id: str | None,
    node: Node | None,
    limit: int,
    rescore: int,
    with_records: bool,
) -> tuple[str, list[Any]]:
    """The sign-bits search statement of a user's scope (or the namespace's, ``user_id``
    None), and its arguments.

    Two steps: the scope's entries of the bits btree (read index-only) nearest the query's
    own bits by Hamming distance (``<~>``), ``rescore`` of them, after the record check;
    then those chunks' vectors, read by primary key and scored exactly, the best ``limit``
    kept. ``ARRAY(...)`` hands the ids over as one array, so the second step is one probe
    per id instead of a join the planner might turn into a scan of the user's whole range.
    """
    check, check_args = record_check("b", namespace, node)
    user_sql = "" if user_id is None else "AND b.user_id = %s "
    user_args: list[Any] = [] if user_id is None else [user_id]
    sql = located(
        "WITH n AS MATERIALIZED (SELECT b.id FROM chunks b WHERE b.namespace = %s "
        f"{user_sql}AND {check} "
        f"ORDER BY b.bits <~> binary_quantize(%s::vector) LIMIT {int(rescore)}) "
        "SELECT s.id, s.rid, 1 - s.d AS score, s.start_pos, s.end_pos FROM "
        "(SELECT c.id, c.rid, c.start_pos, c.end_pos, c.embedding <=> %s::vector AS d "
        "FROM chunks c WHERE c.id = ANY(ARRAY(SELECT id FROM n))) s "
        f"ORDER BY s.d, s.id LIMIT {int(limit)}",
        with_records,
    )
    return sql, [namespace, *user_args, *check_args, q, q]


def keyword_matches(
    tsq: str, namespace: str, users: list[str], match_tsq: str | None = None
) -> tuple[str, list[Any]]:
    """The chunks of a namespace (of ``users``, when the filter requires them) that match a
    tsquery, with their ``ts_rank``, and the statement's arguments.

    ``namespace``, ``user_id`` and ``fts`` are the keys of one GIN index (migration 0011),
    so a user's matches are intersected in the index instead of read from the namespace's.
    ``match_tsq`` (some of the query's words) narrows the matches while the rank is still
    the whole query's (:mod:`engramdb.stores.postgres.keyword_prune`).
    """
    sql = (
        "SELECT id, rid, start_pos, end_pos, ts_rank(fts, to_tsquery('engram', %s)) AS s "
        "FROM chunks WHERE namespace = %s AND fts @@ to_tsquery('engram', %s)"
        + " AND user_id = %s"
        * len(users)
    )
    return sql, [tsq, namespace, tsq if match_tsq is None else match_tsq, *users]


def fts_words(match: str) -> list[str]:
    """The words of the engine's FTS5 expression (``"w1" OR "w2"``), unquoted."""
    return [t.replace('""', '"') for t in _FTS_TERM.findall(match)]


def tsquery_text(match: str) -> str:
    """Turn the engine's FTS5 expression (``"w1" OR "w2"``) into ``to_tsquery`` input.

    Each quoted term becomes a quoted tsquery operand (the configuration still normalises
    it), joined with ``|``; quotes and backslashes are escaped, so no operator in the
    caller's text reaches the query parser.
    """
    return words_tsquery(fts_words(match))


def words_tsquery(words: list[str]) -> str:
    """``to_tsquery`` input ORing these words, each a quoted operand (see :func:`tsquery_text`)."""
    quoted = ["'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'" for t in words if t]
    return " | ".join(quoted)


def located(inner: str, with_records: bool, extra: str = "") -> str:
    """Candidate chunks with what ``locate`` would add (see :attr:`ChunkHit.located`).

    ``inner`` selects ``id, rid, score, start_pos, end_pos`` with its own LIMIT (written as
    a literal: with a ``LIMIT $n`` parameter the planner cannot plan for the page size,
    see docs/tuning.md); its rows
    meet their records only after that limit, so a large scope never joins every chunk,
    and the engine needs no second statement. ``with_records`` adds the whole record, and
    ``extra`` (space-separated names) more columns of ``inner`` after everything else.
    """
    cols = f", {COLS}" if with_records else ""
    cols += "".join(f", t.{name}" for name in extra.split())
    return (
        "SELECT t.id, t.rid, t.score, r.id, r.version, t.start_pos, t.end_pos"
        f"{cols} FROM ({inner}) t JOIN records r ON r.rid = t.rid"
    )


def located_hit(row: tuple[Any, ...], with_records: bool) -> ChunkHit:
    """A :class:`ChunkHit` from a row of :func:`located` (or of a query shaped like it)."""
    return ChunkHit(
        int(row[0]),
        int(row[1]),
        float(row[2]),
        (row[3], int(row[4]), row[5], row[6]),
        functools.partial(row_to_record, row, 7) if with_records else None,
    )


def record_check(alias: str, namespace: str, node: Node | None) -> tuple[str, list[Any]]:
    """SQL that keeps a chunk (``alias``) whose record passes ``node``, with its arguments.

    The default live-only filter first asks, once per statement, whether anything in the
    namespace has expired at all: the namespace's earliest ``expires_at``, an InitPlan that
    reads one entry of the ``(namespace, expires_at)`` index (written as ``min()`` because
    the planner always answers that from the index; a ``NOT EXISTS (... expires_at <= $n)``
    probe became a 100k-row sequential scan in the generic plan of the prepared statement).
    While nothing has expired, the per-chunk record lookup is never evaluated (for a user
    with 13k chunks the join cost more than the distances), and folding the probe into the
    search statement saves the round trip a separate query cost. ``OFFSET 0`` keeps the
    record check a per-chunk primary-key lookup: without it PostgreSQL 18 may turn the
    ``EXISTS`` into a hashed subplan, which reads every record of the namespace once
    anything has expired.
    """
    if node is None:
        return "TRUE", []
    where, params = compile_postgres(node)
    exists = (
        f"EXISTS (SELECT 1 FROM records r WHERE r.rid = {alias}.rid AND r.namespace = %s "
        f"AND {where} OFFSET 0)"
    )
    if not is_live_only(node):
        return exists, [namespace, *params]
    return (
        "(COALESCE((SELECT min(x.expires_at) FROM records x WHERE x.namespace = %s) > %s, "
        f"TRUE) OR {exists})",
        [namespace, live_now(node), namespace, *params],
    )
