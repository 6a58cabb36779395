"""How new records and their chunks go into PostgreSQL, deduplicated by the database.

Deduplication is the same unique index as in SQLite with ``INSERT … ON CONFLICT DO NOTHING
RETURNING``, so concurrent adds from several processes or machines dedupe in the database:
an item missing from a statement's RETURNING hit an index, and its outcome is read after
(:func:`conflict_outcome`). A batch with distinct ids is one statement
(:func:`insert_batch`); a batch that repeats an id goes item by item (:func:`insert_one`),
so each repeat sees the earlier ones. Every function runs in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

import psycopg

from engramdb.errors import ConflictError
from engramdb.models import AddResult
from engramdb.stores.postgres.record_sql import COLS, select_one
from engramdb.stores.postgres.vectors import _Vector, vector_text
from engramdb.stores.prepared import OnError, PreparedChunk, PreparedRecord
from engramdb.stores.rows import (
    DEDUP_LOOKUP_SQL,
    dedup_key,
    existing_id_outcome,
    inserted_record,
    record_params,
    row_to_record,
)
from engramdb.timeutil import from_us_req

# The batch insert of records and their chunks in one statement: each
# column arrives as an array (binary: no text escaping of every element, and vectors in
# pgvector's own binary form: no formatting of 384 floats per chunk on our side, no parsing
# on the server's); chunks name their record by id and meet the rid it got.
_BATCH_INSERT_SQL = """
WITH new AS (
    SELECT * FROM unnest(
        %(id)b::text[], %(user)b::text[], %(agent)b::text[], %(thread)b::text[],
        %(type)b::text[], %(text)b::text[], %(hash)b::text[], %(meta)b::text[],
        %(tags)b::text[], %(source)b::text[], %(imp)b::float8[], %(occ)b::int8[],
        %(vf)b::int8[], %(vt)b::int8[], %(exp)b::int8[], %(ev)b::text[]
    ) WITH ORDINALITY AS t(id, user_id, agent_id, thread_id, type, text, content_hash,
        metadata, tags, source, importance, occurred_at, valid_from, valid_to, expires_at,
        event_id, n)
), ins AS (
    INSERT INTO records(id, namespace, user_id, agent_id, thread_id, type, text, content_hash,
        metadata, metadata_raw, tags, source, importance, occurred_at, created_at, updated_at,
        valid_from, valid_to, expires_at, version, event_id)
    SELECT id, %(ns)s, user_id, agent_id, thread_id, type, text, content_hash,
        metadata::jsonb, metadata, tags::jsonb, source, importance, occurred_at, %(now)s,
        %(now)s, valid_from, valid_to, expires_at, 1, event_id
    FROM new ORDER BY n
    ON CONFLICT DO NOTHING
    RETURNING id, rid, user_id
), chunk_rows AS (
    INSERT INTO chunks(rid, namespace, user_id, ord, start_pos, end_pos, body, fts, embedding)
    SELECT ins.rid, %(ns)s, ins.user_id, u.ord, u.start_pos, u.end_pos, u.body,
        to_tsvector('engram', u.body), u.vec::vector
    FROM unnest(
        %(c_id)b::text[], %(c_ord)b::int4[], %(c_start)b::int4[], %(c_end)b::int4[],
        %(c_body)b::text[], %(c_vec)b::vector[]
    ) WITH ORDINALITY AS u(id, ord, start_pos, end_pos, body, vec, n)
    JOIN ins ON ins.id = u.id
    ORDER BY u.n
)
SELECT id, rid FROM ins
"""


def insert_batch(
    c: psycopg.Connection[Any],
    ns: str,
    items: list[PreparedRecord],
    now: int,
    on_error: OnError,
) -> list[AddResult]:
    """Insert a batch with distinct ids in one statement (the online-ingest path).

    ``c`` must send vectors in binary (``Database.send_vectors_binary``). Records and chunks
    go in through one data-modifying CTE over arrays (one round trip for the whole batch
    instead of three per record). Dedup stays with the unique indexes: an item missing from
    the statement's RETURNING hit one, and gets the same outcome as on the one-by-one path;
    a rejected item (an id clash with a different text) inserted nothing, so skipping it
    needs no savepoint. An item whose conflicting row was deleted by another transaction
    meanwhile is retried alone.

    Raises:
        ConflictError: with ``on_error="abort"``, an item's id exists with another text
            (``details["index"]`` is its position).
    """
    chunk_cols: tuple[list[Any], ...] = ([], [], [], [], [], [])
    for it in items:
        for ordinal, ch in enumerate(it.chunks):
            for col, value in zip(
                chunk_cols,
                (it.id, ordinal, ch.start, ch.end, ch.index_text, _Vector(ch.vector)),
                strict=True,
            ):
                col.append(value)
    params = {
        "ns": ns,
        "now": now,
        "id": [it.id for it in items],
        "user": [it.user_id for it in items],
        "agent": [it.agent_id for it in items],
        "thread": [it.thread_id for it in items],
        "type": [it.type for it in items],
        "text": [it.text for it in items],
        "hash": [it.content_hash for it in items],
        "meta": [it.metadata_json for it in items],
        "tags": [it.tags_json for it in items],
        "source": [it.source for it in items],
        "imp": [it.importance for it in items],
        "occ": [it.occurred_at for it in items],
        "vf": [it.valid_from for it in items],
        "vt": [it.valid_to for it in items],
        "exp": [it.expires_at for it in items],
        "ev": [it.event_id for it in items],
        "c_id": chunk_cols[0],
        "c_ord": chunk_cols[1],
        "c_start": chunk_cols[2],
        "c_end": chunk_cols[3],
        "c_body": chunk_cols[4],
        "c_vec": chunk_cols[5],
    }
    rids = {str(r[0]): int(r[1]) for r in c.execute(_BATCH_INSERT_SQL, params).fetchall()}
    results: list[AddResult] = []
    now_dt = from_us_req(now)
    for i, it in enumerate(items):
        if it.id in rids:
            results.append(AddResult(i, "written", inserted_record(ns, it, now_dt)))
            continue
        try:
            results.append(conflict_outcome(c, ns, it, i) or insert_one(c, ns, it, now, i))
        except ConflictError as exc:
            if on_error == "abort":
                exc.details["index"] = i
                raise
            results.append(AddResult(i, "rejected", None, exc.message))
    return results


def conflict_outcome(
    c: psycopg.Connection[Any], ns: str, it: PreparedRecord, index: int
) -> AddResult | None:
    """The outcome of an item whose INSERT hit a unique index (same id or same text).

    None when the conflicting row is gone (deleted by another transaction meanwhile).

    Raises:
        ConflictError: the caller's id exists with a different text.
    """
    if it.caller_id:
        existing = select_one(c, ns, it.id)
        if existing is not None:
            return existing_id_outcome(existing, it, index)
    dup = c.execute(DEDUP_LOOKUP_SQL.format(cols=COLS, p="%s"), dedup_key(ns, it)).fetchone()
    return None if dup is None else AddResult(index, "deduplicated", row_to_record(dup))


def insert_one(
    c: psycopg.Connection[Any], ns: str, it: PreparedRecord, now: int, index: int
) -> AddResult:
    """Insert one record and its chunks, or report the record it duplicates.

    Raises:
        ConflictError: the caller's id exists with a different text.
    """
    params = record_params(ns, it, now)
    for _ in range(3):
        row = c.execute(
            "INSERT INTO records(id, namespace, user_id, agent_id, thread_id, type, text, "
            "content_hash, metadata, metadata_raw, tags, source, importance, occurred_at, "
            "created_at, updated_at, valid_from, valid_to, expires_at, version, event_id) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb,%s,%s::jsonb,%s,%s,%s,%s,%s,%s,%s,%s,"
            "1,%s) "
            "ON CONFLICT DO NOTHING RETURNING rid",
            # metadata goes in twice: as JSONB and as the exact text given
            (*params[:9], it.metadata_json, *params[9:]),
        ).fetchone()
        if row is not None:
            break
        outcome = conflict_outcome(c, ns, it, index)
        if outcome is not None:
            return outcome
        # The conflicting row was deleted by another transaction meanwhile: try again.
    else:  # pragma: no cover - three lost races in a row
        raise ConflictError(f"record {it.id!r} conflicts with an existing record", id=it.id)
    rid = row[0]
    insert_chunks(c, rid, ns, it.user_id, it.chunks)
    # No history row, as in the batch path: Engine.history derives the add.
    return AddResult(index, "written", inserted_record(ns, it, from_us_req(now)))


def insert_chunks(
    c: psycopg.Connection[Any],
    rid: int,
    ns: str,
    user_id: str,
    chunks: list[PreparedChunk],
) -> None:
    """Insert the chunks of record ``rid`` (vectors in text form)."""
    insert_chunk_rows(c, chunk_values(rid, ns, user_id, chunks))


def chunk_values(
    rid: int, ns: str, user_id: str, chunks: list[PreparedChunk]
) -> list[tuple[Any, ...]]:
    """The rows :func:`insert_chunk_rows` takes for the chunks of record ``rid``."""
    return [
        (rid, ns, user_id, ordinal, ch.start, ch.end, ch.index_text, vector_text(ch.vector))
        for ordinal, ch in enumerate(chunks)
    ]


def insert_chunk_rows(c: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    """Insert chunk rows ``(rid, namespace, user_id, ord, start, end, body, vector text)``.

    The keyword row is computed from the body in the same statement.
    """
    sql = (
        "INSERT INTO chunks(rid, namespace, user_id, ord, start_pos, end_pos, body, fts, "
        "embedding) VALUES (%s,%s,%s,%s,%s,%s,%s,to_tsvector('engram', %s),%s::vector)"
    )
    args = [(*r[:7], r[6], r[7]) for r in rows]
    if len(args) == 1:
        c.execute(sql, args[0])
    elif args:
        with c.cursor() as cur:
            cur.executemany(sql, args)
