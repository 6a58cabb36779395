"""A record's chunks: their rows in ``chunks`` (span), ``chunk_vectors`` (vector) and
``chunks_fts`` (keyword text, scope tokens), the ``chunk_deletes`` log the vector index
catches up from, and reads of given chunks under a filter.

Vectors live in a table of their own because searches never read them from SQL (the vector
index's sidecar holds them) but do look up many chunk rows by id: with a vector inline a
chunk row filled a third of a page, so locating a search's candidates read a page per
chunk; without it the whole ``chunks`` table stays in SQLite's page cache.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from typing import Any

import numpy as np

from engramdb.query.filters import Node
from engramdb.stores.prepared import PreparedChunk, WholeHit
from engramdb.stores.rows import ID_COL, RECORD_SELECT, VERSION_COL, row_to_record
from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.filters import compile_sqlite

# A record's row as ``row_to_record`` reads it (``metadata`` is SQLite's JSON text column).
RECORD_COLS = RECORD_SELECT.format(meta="metadata")


@functools.lru_cache(maxsize=64)
def _record_cols(n: int) -> str:
    """A located chunk's record columns (``metadata`` is SQLite's JSON text column), each
    read only for the first ``n`` chunks asked for (``j.key``: the position in the id
    array); one string per page size, built once."""
    return ", ".join(
        f"CASE WHEN j.key < {int(n)} THEN {col} END" for col in RECORD_COLS.split(", ")
    )


INSERT_CHUNK = "INSERT INTO chunks(rid, ord, start, end) VALUES (?,?,?,?)"
INSERT_VECTOR = "INSERT INTO chunk_vectors(chunk_id, vector) VALUES (?, ?)"
INSERT_FTS = "INSERT INTO chunks_fts(rowid, body, scope) VALUES (?, ?, ?)"


def insert_chunk_batch(
    c: sqlite3.Connection, chunk_rows: list[tuple[Any, ...]], bodies: list[tuple[str, str]]
) -> None:
    """Insert chunk rows with one ``executemany``, then their vectors and keyword rows.

    ``chunk_rows[i]`` is (record rowid, ordinal, start, end, vector bytes) and ``bodies[i]``
    its (keyword text, scope). The new chunk ids are read back in one query (ids only grow
    inside the writer's transaction), so a batch costs two statements per table instead of
    one per chunk.
    """
    if not chunk_rows:
        return
    base_cid = c.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0]
    c.executemany(INSERT_CHUNK, [row[:4] for row in chunk_rows])
    cids = [r[0] for r in c.execute("SELECT id FROM chunks WHERE id > ? ORDER BY id", (base_cid,))]
    c.executemany(INSERT_VECTOR, [(cid, row[4]) for cid, row in zip(cids, chunk_rows, strict=True)])
    c.executemany(
        INSERT_FTS,
        [(cid, body, scope) for cid, (body, scope) in zip(cids, bodies, strict=True)],
    )


def vector_bytes(vec: np.ndarray) -> bytes:
    """A vector as stored: contiguous float32 bytes."""
    return np.ascontiguousarray(vec, np.float32).tobytes()


def insert_chunks(c: sqlite3.Connection, rid: int, chunks: list[PreparedChunk], scope: str) -> None:
    """Write a record's chunks, each with its keyword row (``scope``: see keys.scope_text)."""
    for ordinal, ch in enumerate(chunks):
        cur = c.execute(INSERT_CHUNK, (rid, ordinal, ch.start, ch.end))
        c.execute(INSERT_VECTOR, (cur.lastrowid, vector_bytes(ch.vector)))
        c.execute(INSERT_FTS, (cur.lastrowid, ch.index_text, scope))


def delete_chunks_of(c: sqlite3.Connection, rids: list[int]) -> None:
    """Delete the chunks of these records from every table, logging them for the vector
    index (``chunk_vectors`` rows go by their foreign key's cascade)."""
    if not rids:
        return
    arr = json.dumps(rids)
    c.execute(
        "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE rid IN "
        "(SELECT value FROM json_each(?)))",
        (arr,),
    )
    c.execute(
        "INSERT INTO chunk_deletes(chunk_id) SELECT id FROM chunks WHERE rid IN "
        "(SELECT value FROM json_each(?)) ORDER BY id",
        (arr,),
    )
    c.execute("DELETE FROM chunks WHERE rid IN (SELECT value FROM json_each(?))", (arr,))


def passing_rids(
    c: sqlite3.Connection, namespace: str, chunk_ids: list[int], node: Node | None
) -> dict[int, int]:
    """Map each given chunk whose record passes the filter to its record's rowid.

    CROSS JOIN pins the join order, the given chunks first (by rowid): with a plain JOIN
    the planner may walk every record of the namespace (seconds at 100k rows).
    """
    where, params = compile_sqlite(node)
    rows = c.execute(
        "SELECT c.id, c.rid FROM chunks c CROSS JOIN records r "
        "ON r.rid = c.rid WHERE c.id IN "
        f"(SELECT value FROM json_each(?)) AND r.namespace = ? AND {where}",
        (json.dumps(chunk_ids), namespace, *params),
    ).fetchall()
    return dict(rows)


def passing_located(
    c: sqlite3.Connection, namespace: str, chunk_ids: list[int], node: Node | None
) -> dict[int, tuple[int, tuple[str, int, int, int]]]:
    """As :func:`passing_rids`, with where each chunk is (record id, version, start, end):
    a keyword hit that carries it spares the search a second lookup of its record."""
    where, params = compile_sqlite(node)
    rows = c.execute(
        "SELECT c.id, c.rid, r.id, r.version, c.start, c.end FROM chunks c "
        "CROSS JOIN records r ON r.rid = c.rid WHERE c.id IN "
        f"(SELECT value FROM json_each(?)) AND r.namespace = ? AND {where}",
        (json.dumps(chunk_ids), namespace, *params),
    ).fetchall()
    return {r[0]: (r[1], (r[2], r[3], r[4], r[5])) for r in rows}


def chunk_rids(db: Connections, chunk_ids: list[int]) -> dict[int, int]:
    """Map chunk id -> its record's rowid, for the chunks that exist (the narrow ``chunks``
    table alone: no record row is read)."""
    if not chunk_ids:
        return {}
    rows = db.query(
        "locating search hits",
        "SELECT id, rid FROM chunks WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(chunk_ids),),
    )
    return dict(rows)


def locate(
    db: Connections, namespace: str, chunk_ids: list[int], node: Node | None
) -> dict[int, tuple[str, int, int, int]]:
    """Map chunk id -> (record id, version, start, end) for chunks passing the filter."""
    if not chunk_ids:
        return {}
    where, params = compile_sqlite(node)
    rows = db.query(
        "locating search hits",
        "SELECT c.id, r.id, r.version, c.start, c.end FROM chunks c "
        "CROSS JOIN records r ON r.rid = c.rid WHERE c.id IN (SELECT value FROM json_each(?)) "
        f"AND r.namespace = ? AND {where}",
        (json.dumps(chunk_ids), namespace, *params),
    )
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def locate_whole(
    db: Connections, namespace: str, chunk_ids: list[int], node: Node | None
) -> dict[int, WholeHit]:
    """:func:`locate`, with each located chunk's record row and answer kinds, in one
    statement (``Store.locate_whole``).

    The rows come from the records' own pages, which locating reads anyway, so the page's
    records and the candidates' answer kinds cost no statement of their own; a record is
    built only when the engine asks for it (the page's).
    """
    if not chunk_ids:
        return {}
    where, params = compile_sqlite(node)
    rows = db.query(
        "reading search hits",
        f"SELECT c.id, c.start, c.end, coalesce(k.kinds, 0), {RECORD_COLS} FROM chunks c "
        "CROSS JOIN records r ON r.rid = c.rid LEFT JOIN record_answer_kinds k "
        "ON k.namespace = r.namespace AND k.record_id = r.id "
        "WHERE c.id IN (SELECT value FROM json_each(?)) "
        f"AND r.namespace = ? AND {where}",
        (json.dumps(chunk_ids), namespace, *params),
    )
    return {
        row[0]: WholeHit(
            (row[4 + ID_COL], row[4 + VERSION_COL], row[1], row[2]),
            row[3],
            functools.partial(row_to_record, row, 4),
        )
        for row in rows
    }


def locate_with_records(
    db: Connections,
    namespace: str,
    chunk_ids: list[int],
    node: Node | None,
    user_id: str | None,
    records: int,
) -> dict[int, tuple[Any, ...]]:
    """:func:`locate` and, for the first ``records`` chunk ids, the records' whole rows, in
    one statement, by chunk id.

    A row is ``(chunk id, chunk rid, record id, version, start, end, *RECORD_SELECT)``
    (the record columns NULL past the first ``records`` ids), for the chunks whose record
    passes ``node`` and belongs to ``user_id`` (when given): what ``locate`` with the
    search's whole filter keeps, so the engine needs neither it nor, mostly, a second read
    for the records of the page.
    """
    if not chunk_ids:
        return {}
    where, params = compile_sqlite(node)
    scope = ""
    if user_id is not None:
        scope = " AND r.user_id = ?"
        params.append(user_id)
    cols = _record_cols(int(records))
    rows = db.query(
        "locating search hits",
        f"SELECT c.id, c.rid, r.id, r.version, c.start, c.end, {cols} FROM json_each(?) j "
        "CROSS JOIN chunks c ON c.id = j.value "
        "CROSS JOIN records r ON r.rid = c.rid "
        f"WHERE r.namespace = ? AND {where}{scope}",
        (json.dumps(chunk_ids), namespace, *params),
    )
    return {r[0]: r for r in rows}
