"""The PostgreSQL store: the same protocol as the SQLite store, on PostgreSQL + pgvector.

Everything a write touches (record, chunks with their vector and tsvector, history, events)
is one transaction on one pooled connection (psycopg 3 + psycopg_pool), rolled back on any
exception. Deduplication is the same unique index as in SQLite with ``INSERT … ON CONFLICT
DO NOTHING RETURNING``, so concurrent adds from several processes or machines dedupe in the
database. Every statement is scoped by ``namespace``, and every index but the HNSW one leads
with it.

Retrieval:

* vectors: pgvector ``vector(dim)`` column. A user-scoped search, or any search in a
  namespace with at most ``ann_min_rows`` chunks, is an exact scan through the
  ``(namespace, user_id)`` index (perfect recall, and faster than HNSW post-filtering for
  small scopes); larger scopes use the HNSW index (cosine ops, over half-precision copies
  of the vectors: :data:`HNSW_MAX_DIM`) with pgvector's iterative scan, so filters never
  starve the result.
* keywords: a ``tsvector`` per chunk (GIN on ``(namespace, user_id, fts)``) with an accent-folding,
  English-stemming configuration without stop words (close to SQLite's FTS5 tokenizer),
  ranked with ``ts_rank`` (term frequency; LoCoMo keyword Recall@10 0.719 against 0.651
  with the cover-density ``ts_rank_cd``, at a quarter of its CPU per match).
* filters: :func:`engramdb.stores.postgres.filters.compile_postgres`, pushed into the SQL.

Faults (:mod:`engramdb.stores.postgres.faults`): calls that surely did not commit are retried
within ``retry_s`` when the server goes away, then fail with ``StoreUnavailableError``; a
connection lost while COMMIT was in flight raises ``CommitUnknownError``; a hung server is
cut off by a watchdog after ``io_timeout_s``.

After ``fork`` the child abandons the inherited pool (never using or closing it: closing
would end the parent's sessions) and opens its own.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
import tarfile
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import errors as pgerr
from psycopg.adapt import Dumper, PyFormat
from psycopg.pq import Format
from psycopg.types import TypeInfo
from psycopg_pool import ConnectionPool, PoolTimeout

from engramdb.errors import (
    BusyError,
    CommitUnknownError,
    ConflictError,
    EmbedderMismatchError,
    EngramError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    ValidationError,
)
from engramdb.migrations import SCHEMA_HEAD
from engramdb.models import AddResult, Event, HistoryEntry, MemoryRecord, Slots
from engramdb.query.filters import (
    Node,
    is_live_only,
    live_now,
    required_equalities,
    required_leaves,
)
from engramdb.stores.postgres.faults import (
    WATCHDOG,
    Breaker,
    RetryableBusy,
    RetryableUnavailable,
    RetryPolicy,
    in_retry,
    is_connection_failure,
    is_serialization_failure,
    remaining,
    retried,
)
from engramdb.stores.postgres.filters import compile_postgres
from engramdb.stores.postgres.replica import (
    CHECKOUT_S,
    INSERT_LSN_SQL,
    PROBE_SQL,
    ReplicaRouter,
    format_lsn,
    parse_lsn,
)
from engramdb.stores.postgres.schema import current_revision, ensure_schema
from engramdb.stores.prepared import (
    ChunkHit,
    OnError,
    PreparedChunk,
    PreparedEvent,
    PreparedRecord,
    RecordChanges,
    ThreadTurn,
)
from engramdb.stores.rows import (
    BUMP_GENERATION_SQL,
    DEDUP_LOOKUP_SQL,
    GENERATION_SQL,
    HISTORY_SQL,
    MAX_GENERATION_SQL,
    NEXT_EXPIRY_SQL,
    RECORD_SELECT,
    RESTORE_GENERATION_SQL,
    change_row,
    check_quota,
    check_slot_version,
    checked_for_update,
    dedup_key,
    existing_id_outcome,
    history_entry,
    inserted_record,
    record_params,
    row_to_record,
    scalar_set_clauses,
    write_slot_values,
)
from engramdb.stores.transfer_rows import (
    HISTORY_COLUMNS,
    RECORD_COLUMNS,
    exported_events_and_slots,
    history_rows,
    import_events_and_slots,
    insert_sql,
    present_outcome,
    record_values,
)
from engramdb.timeutil import from_us, from_us_req, now_us

COLS = RECORD_SELECT.format(meta="metadata_raw")
FRESH_S = 0.25  # a connection used this recently is handed out unchecked (see _checkout)
RECONNECT_S = 0.5  # pool reconnect attempts give up after this; callers' waits renew them
# The HNSW graph is built over half-precision copies of the vectors (an expression index on
# ``embedding::halfvec(dim)``); the column and every returned score stay float32. Measured
# on raw tables of 30k of the benchmark's MiniLM vectors, m=16, ef_construction=100, then
# 6k more inserted alternately: inserts 18% faster (8.2 vs 10.0 s), the build 18% faster
# (5.8 vs 7.1 s), the graph 43% smaller (40 vs 70 MB), recall@10 at ef_search=64 0.9955
# vs 0.9960. It also lifts pgvector's HNSW limit from 2,000 dimensions
# (vector) to 4,000 (halfvec). Needs pgvector 0.7 or later.
HNSW_MAX_DIM = 4000
# The chunk vectors are also kept in a btree on (namespace, user_id), so the exact search of
# one user's scope is an index-only scan over contiguous leaf pages instead of one heap
# visit per chunk (measured on the 100k benchmark table, a 4.4k-chunk user: 10.9 -> 5.7 ms;
# 2k chunks: 6.5 -> 3.5 ms; the index is ~200 MB per 100k 384-d chunks and built in ~1.3 s).
# A btree entry holds at most ~2.7 kB, so vectors above COVER_MAX_DIM go without it.
COVER_MAX_DIM = 640
COVER_INDEX = "chunks_user_vectors"
# The plain (namespace, user_id, id) btree on chunks: a user's scope where the covering index
# cannot be built (wide vectors, or no embedder recorded yet). Where the covering index
# exists it answers everything this one did, so the two are never kept together: one btree
# less to maintain per chunk written (migration 0005 drops it from existing stores).
USER_INDEX = "chunks_ns_user"
EMBEDDER_LOCK = 0x656E6772616D6465  # advisory-lock key: first recording of the embedder
BACKUP_FORMAT = "engramdb-postgres-backup"
BACKUP_TABLES = {
    "meta": "key, value",
    "records": (
        "rid, id, namespace, user_id, agent_id, thread_id, type, text, content_hash, metadata, "
        "metadata_raw, tags, source, importance, occurred_at, created_at, updated_at, "
        "valid_from, valid_to, expires_at, version, event_id"
    ),
    "chunks": "id, rid, namespace, user_id, ord, start_pos, end_pos, body, fts, embedding",
    "history": "seq, namespace, record_id, user_id, thread_id, op, version, before, after, at",
    "events": "seq, id, namespace, thread_id, user_id, actor, action, payload, ts",
    "slots": "namespace, thread_id, name, value",
    "slot_versions": "namespace, thread_id, user_id, version, updated_at",
    "reembed_vectors": "chunk_id, vector",
}
IDENTITIES = {"records": "rid", "chunks": "id", "history": "seq", "events": "seq"}
# An imported record keeps its id, times and version; ``metadata_raw`` keeps the JSON text.
_IMPORT_RECORD = insert_sql(
    "records",
    (*RECORD_COLUMNS, "metadata_raw"),
    "%s",
    "ON CONFLICT DO NOTHING",
    casts={"metadata": "jsonb", "tags": "jsonb"},
)
_INSERT_HISTORY = insert_sql("history", HISTORY_COLUMNS, "%s")
_HISTORY_SQL = HISTORY_SQL.format(p="%s")
_COPY_RECORDS = f"COPY records({', '.join(RECORD_COLUMNS)}, metadata_raw) FROM STDIN"
_FTS_TERM = re.compile(r'"((?:[^"]|"")*)"')
_abandoned: list[ConnectionPool[Any]] = []  # pools inherited across fork: never touched


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


class _Vector:
    """A float32 vector to send in pgvector's binary form (see :class:`_VectorDumper`)."""

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = values


class _VectorDumper(Dumper):
    """pgvector's binary input (``vector_recv``): dimension, a zero, big-endian float4s."""

    format = Format.BINARY

    def dump(self, obj: _Vector) -> bytes:
        values = np.asarray(obj.values, dtype=">f4").ravel()
        return struct.pack(">HH", values.shape[0], 0) + values.tobytes()


# A user's scope up to this many chunks is searched exactly (through the (namespace,
# user_id) index); a larger one through HNSW with a user filter. Measured on the 100k
# benchmark table, warm, top-20 p50: exact grows with the scope (1k chunks 2.8 ms, 3.3k
# 7.6 ms, 6.7k 14.3 ms, 13k 26 ms: each chunk is a heap visit) while the filtered HNSW scan
# falls as the user's share grows (1k 32 ms, 3.3k 13 ms, 6.7k 8.9 ms, 13k 7.5 ms; recall@10
# 0.99); they cross near 5k.
EXACT_USER_MAX_ROWS = 5_000
# The tables ``forget`` deletes from, vacuumed (or, with ``compact``, rewritten) after it.
_FORGET_TABLES = ("records", "chunks", "history", "events", "slots", "slot_versions")
KEYWORD_PROBE = 400  # keyword matches ranked before their records are read (see below)
# A search of a large scope whose filter requires a tag or a metadata value (which the GIN
# indexes on records answer) scores the passing records' chunks exactly when at most this
# many records pass, instead of the HNSW scan: its iterative scan walks the graph until the
# page is full, 125-140 ms at 100k records for a tag of 100 records or of none, ~23 ms for
# one of 1,100 (the exact way: ~19 ms with its count; the count stops at this many + 1).
PREFILTER_MAX_RECORDS = 2_000
USER_SCOPE = frozenset({"user_id"})  # the scope chunks carry (they have no thread_id)


def hnsw_key(dim: int, alias: str = "") -> str:
    """The expression the HNSW index is built on (see :data:`HNSW_MAX_DIM`); an ``ORDER BY``
    must spell it exactly so for the planner to use the index."""
    return f"(({alias}embedding)::halfvec({int(dim)}))"


def vector_index_ddl(dim: int | None, m: int, ef_construction: int) -> list[str]:
    """The statements creating the derived vector indexes for vectors of ``dim``.

    The HNSW graph (unfiltered and large-scope search) and the user-scope btree: the
    covering one for vectors small enough (exact search of a user's scope, see
    :data:`COVER_MAX_DIM`), else the plain :data:`USER_INDEX` (also while no embedder is
    recorded, ``dim`` None); the same set in every place that (re)builds them.
    """
    ddl = []
    if dim is not None and dim <= HNSW_MAX_DIM:
        ddl.append(
            f"CREATE INDEX chunks_hnsw ON chunks USING hnsw ({hnsw_key(dim)} "
            f"halfvec_cosine_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
        )
    if dim is not None and dim <= COVER_MAX_DIM:
        ddl.append(
            f"CREATE INDEX {COVER_INDEX} ON chunks (namespace, user_id) "
            "INCLUDE (id, rid, start_pos, end_pos, embedding)"
        )
    else:
        ddl.append(f"CREATE INDEX {USER_INDEX} ON chunks (namespace, user_id, id)")
    return ddl


# A write that commits a resume checkpoint (``meta`` of load_records / load_history) holds
# this lock shared for its transaction; settle_checkpoints takes it exclusively, so it
# returns only once every such transaction has ended, including one whose client died
# after sending COMMIT (the server still commits it; see settle_checkpoints).
CHECKPOINT_FENCE_SQL = (
    "SELECT pg_advisory_xact_lock{mode}(hashtext('engramdb:checkpoints:' || current_schema()))"
)


DROP_VECTOR_INDEXES = [
    "DROP INDEX IF EXISTS chunks_hnsw",
    f"DROP INDEX IF EXISTS {COVER_INDEX}",
    f"DROP INDEX IF EXISTS {USER_INDEX}",
]


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
    :data:`EXACT_USER_MAX_ROWS` for the measured costs of both plans).
    """
    dim = int(np.asarray(q.values).shape[-1])
    user_sql = "" if user_id is None else " AND c.user_id || '' = %s"
    user_args: list[Any] = [] if user_id is None else [user_id]
    check, check_args = _record_check("c", namespace, node)
    sql = _located(
        "SELECT c.id, c.rid, 1 - (c.embedding <=> %s::vector) AS score, c.start_pos, "
        f"c.end_pos FROM chunks c WHERE c.namespace = %s{user_sql} AND {check} "
        f"ORDER BY {hnsw_key(dim, 'c.')} <=> %s::vector::halfvec({dim}) LIMIT {int(limit)}",
        with_records,
    )
    return sql, [q, namespace, *user_args, *check_args, q]


def keyword_matches(tsq: str, namespace: str, users: list[str]) -> tuple[str, list[Any]]:
    """The chunks of a namespace (of ``users``, when the filter requires them) that match a
    tsquery, with their ``ts_rank``, and the statement's arguments.

    ``namespace``, ``user_id`` and ``fts`` are the keys of one GIN index (migration 0011),
    so a user's matches are intersected in the index instead of read from the namespace's.
    """
    sql = (
        "SELECT id, rid, start_pos, end_pos, ts_rank(fts, to_tsquery('engram', %s)) AS s "
        "FROM chunks WHERE namespace = %s AND fts @@ to_tsquery('engram', %s)"
        + " AND user_id = %s"
        * len(users)
    )
    return sql, [tsq, namespace, tsq, *users]


def _located(inner: str, with_records: bool) -> str:
    """Candidate chunks with what ``locate`` would add (see :attr:`ChunkHit.located`).

    ``inner`` selects ``id, rid, score, start_pos, end_pos`` with its own LIMIT (written as
    a literal: a ``LIMIT $n`` parameter cost the prepared search ~0.35 ms per query in a
    100k-chunk table, measured against the same statement with the literal); its rows
    meet their records only after that limit, so a large scope never joins every chunk,
    and the engine needs no second statement. ``with_records`` adds the whole record.
    """
    cols = f", {COLS}" if with_records else ""
    return (
        "SELECT t.id, t.rid, t.score, r.id, r.version, t.start_pos, t.end_pos"
        f"{cols} FROM ({inner}) t JOIN records r ON r.rid = t.rid"
    )


def _located_hit(row: tuple[Any, ...], with_records: bool) -> ChunkHit:
    """A :class:`ChunkHit` from a row of :func:`_located` (or of a query shaped like it)."""
    return ChunkHit(
        int(row[0]),
        int(row[1]),
        float(row[2]),
        (row[3], int(row[4]), row[5], row[6]),
        functools.partial(row_to_record, row, 7) if with_records else None,
    )


def _record_check(alias: str, namespace: str, node: Node | None) -> tuple[str, list[Any]]:
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


@functools.lru_cache(maxsize=8)
def _vector_format(dim: int) -> str:
    return "[" + ",".join(["%.9g"] * dim) + "]"


def vector_text(vec: np.ndarray) -> str:
    """pgvector's text form of a float32 vector.

    Exact: nine significant digits always read back as the same float32. One ``%``
    format per vector is about 3x faster than ``json.dumps`` (it shows in bulk loads).
    """
    values = np.asarray(vec, np.float32).ravel().tolist()
    return _vector_format(len(values)) % tuple(values)


def parse_vector(text: str) -> np.ndarray:
    """A float32 array from pgvector's text form."""
    return np.asarray(json.loads(text), dtype=np.float32)


def tsquery_text(match: str) -> str:
    """Turn the engine's FTS5 expression (``"w1" OR "w2"``) into ``to_tsquery`` input.

    Each quoted term becomes a quoted tsquery operand (the configuration still normalises
    it), joined with ``|``; quotes and backslashes are escaped, so no operator in the
    caller's text reaches the query parser.
    """
    terms = [t.replace('""', '"') for t in _FTS_TERM.findall(match)]
    quoted = ["'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'" for t in terms if t]
    return " | ".join(quoted)


def sqlalchemy_free_conninfo(url: str) -> str:
    """The libpq connection string of a store URL (``postgresql+psycopg://`` accepted)."""
    for prefix in ("postgresql+psycopg://", "postgres+psycopg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class PostgresStore:
    """The PostgreSQL store (see module docstring)."""

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        auto_migrate: bool = True,
        pool_min: int = 1,
        pool_max: int = 10,
        pool_timeout_s: float = 30.0,
        ann_min_rows: int = 20_000,
        ann_min_user_rows: int = EXACT_USER_MAX_ROWS,
        namespace_max_records: int = 0,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 100,
        hnsw_ef_search: int = 96,
        retry_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        io_timeout_s: float = 30.0,
        read_url: str | None = None,
        read_max_lag_s: float = 30.0,
    ) -> None:
        self.url = url
        self.breaker = Breaker()
        self._vector_type: TypeInfo | None = None  # pgvector's type, for binary vectors
        self.retry_policy = RetryPolicy(
            float(retry_s), float(io_timeout_s), float(connect_timeout_s)
        )
        self.conninfo = sqlalchemy_free_conninfo(url)
        self.ann_min_rows = int(ann_min_rows)
        self.hnsw_m = int(hnsw_m)
        self.hnsw_ef_construction = int(hnsw_ef_construction)
        self.hnsw_ef_search = int(hnsw_ef_search)
        self._pool_args = (int(pool_min), int(pool_max), float(pool_timeout_s))
        self._pid = os.getpid()
        self._closed = False
        self._scope_cache: dict[tuple[str, str | None], tuple[float, int]] = {}
        self.exact_max_user_rows = int(ann_min_user_rows)
        self.namespace_max_records = int(namespace_max_records)
        self._scope_lock = threading.Lock()
        # Connections that just finished a statement, and when (see _checkout).
        self._fresh: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._fresh_lock = threading.Lock()
        self._pool = self._open_pool()
        # Optional streaming replica for routed reads (engramdb.stores.postgres.replica).
        self.read_conninfo = sqlalchemy_free_conninfo(read_url) if read_url else None
        self._router = ReplicaRouter(read_max_lag_s) if read_url else None
        self._rpool: ConnectionPool[Any] | None = None
        try:
            with self._connection() as conn:
                ensure_schema(self.conninfo, conn, auto_migrate, self._where())
            self._init_meta()
            if self.read_conninfo is not None:
                self._rpool = self._open_pool(self.read_conninfo, "engramdb-replica")
        except psycopg.Error as exc:
            self._pool.close()
            raise self._translate(exc, "opening the store") from exc
        except BaseException:
            self._pool.close()
            raise

    # ------------------------------------------------------------------ connections

    def _where(self) -> str:
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.conninfo)
        except psycopg.Error:
            return "the PostgreSQL database"
        return f"PostgreSQL database {info.get('dbname', '?')!r} on {info.get('host', 'local')}"

    def _server(self) -> str:
        """``host:port`` of the server, for error messages (never the password)."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.conninfo)
        except psycopg.Error:
            return "the PostgreSQL server"
        host = str(info.get("hostaddr") or info.get("host") or "localhost")
        return f"{host}:{info.get('port') or 5432}"

    def _check_connection(self, conn: psycopg.Connection[Any]) -> None:
        """Checkout check: one empty round trip, cut off after the connect timeout.

        Connections broken by a server restart are discarded here instead of failing the
        caller's first statement; a hung (blackholed) one cannot stall the checkout.
        """
        limit = self.retry_policy.connect_timeout_s
        token = WATCHDOG.arm(conn, limit)
        try:
            conn.execute("")
        except psycopg.OperationalError as exc:
            if WATCHDOG.disarm(token):
                raise psycopg.OperationalError(
                    f"no reply to a connection check within store_connect_timeout_s={limit:g} s"
                ) from exc
            raise
        finally:
            WATCHDOG.disarm(token)

    def _open_pool(
        self, conninfo: str | None = None, name: str = "engramdb"
    ) -> ConnectionPool[Any]:
        lo, hi, timeout = self._pool_args
        conninfo = self.conninfo if conninfo is None else conninfo
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in conninfo:
            # libpq's bound on one connection attempt (whole seconds, at least 2).
            kwargs["connect_timeout"] = max(2, round(self.retry_policy.connect_timeout_s))
        if "application_name" not in conninfo:
            kwargs["application_name"] = name
        return ConnectionPool(
            conninfo,
            min_size=lo,
            max_size=max(hi, lo),
            timeout=timeout,
            kwargs=kwargs,
            configure=self._configure_session,
            reconnect_timeout=RECONNECT_S,
            name=name,
            open=True,
        )

    def _configure_session(self, conn: psycopg.Connection[Any]) -> None:
        """Set the HNSW search settings once per connection, not per query.

        A per-query ``SET LOCAL`` needs its own transaction: three more round trips per
        search. ``relaxed_order`` lets the iterative scan return a filtered page without
        strict distance order (every hit's score is exact and the engine sorts them).
        Set before pgvector is loaded in the session, the names are placeholders that the
        extension adopts when it loads.
        """
        conn.execute(f"SET hnsw.ef_search = {int(self.hnsw_ef_search)}")
        conn.execute("SET hnsw.iterative_scan = relaxed_order")

    def _pool_now(self) -> ConnectionPool[Any]:
        if os.getpid() != self._pid:
            # The inherited pool's sockets belong to the parent's sessions: never touch them.
            _abandoned.append(self._pool)
            self._pool = self._open_pool()
            if self._rpool is not None and self.read_conninfo is not None:
                _abandoned.append(self._rpool)
                self._rpool = self._open_pool(self.read_conninfo, "engramdb-replica")
            self._pid = os.getpid()
        if self._closed:
            raise StoreError("the store is closed")
        return self._pool

    def _translate(self, exc: Exception, doing: str, committing: bool = False) -> EngramError:
        """The engramdb error for a driver error raised while ``doing``.

        Inside a retried call, failures that surely did not commit come back as the
        retryable private classes of :mod:`engramdb.stores.postgres.faults`; a connection lost
        while COMMIT was in flight is :class:`CommitUnknownError`, never retried.
        """
        msg = str(exc).strip() or type(exc).__name__
        server = self._server()
        if is_connection_failure(exc):
            if committing:
                return CommitUnknownError(
                    f"the connection to PostgreSQL at {server} was lost after COMMIT was sent "
                    f"while {doing}: the outcome is unknown (it may or may not be applied); "
                    f"retrying an add with the same record ids is safe: {msg}",
                    outcome="unknown",
                    server=server,
                    doing=doing,
                )
            cls = RetryableUnavailable if in_retry() else StoreUnavailableError
            return cls(
                f"PostgreSQL at {server} is unavailable while {doing}: {msg}",
                server=server,
                doing=doing,
            )
        if is_serialization_failure(exc) and in_retry():
            return RetryableBusy(f"database is busy while {doing}: {msg}", doing=doing)
        if isinstance(
            exc, pgerr.SerializationFailure | pgerr.DeadlockDetected | pgerr.LockNotAvailable
        ):
            return BusyError(f"database is busy while {doing}: {msg}")
        if isinstance(exc, pgerr.DataError | pgerr.UntranslatableCharacter):
            return ValidationError(f"the database rejected a value while {doing}: {msg}")
        return StoreError(f"storage failed while {doing}: {msg}")

    @contextmanager
    def _write(self, doing: str, bump: Iterable[str] = ()) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction: COMMIT on success, ROLLBACK on any exception.

        ``bump``: namespaces whose write generation rises in the same transaction (``''`` is
        the store-wide one). The rows are bumped last, in sorted order, so their row locks
        are held only until COMMIT and concurrent writers cannot deadlock on them.
        """
        committing = False  # a connection lost once COMMIT is in flight: outcome unknown
        try:
            with self._connection() as conn:
                with conn.transaction():
                    yield conn
                    if bump:
                        with conn.cursor() as cur:
                            cur.executemany(
                                BUMP_GENERATION_SQL.format(p="%s"),
                                [(ns,) for ns in sorted(set(bump))],
                            )
                    committing = True
                committing = False
                if self._router is not None:
                    self._note_commit(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._translate(exc, doing, committing) from exc

    def _note_commit(self, conn: psycopg.Connection[Any]) -> None:
        """Remember the WAL position just after a commit (read-your-writes, see pg_replica).

        ``pg_current_wal_insert_lsn()`` read after COMMIT returned is at or past the end of
        the commit record even with ``synchronous_commit=off``. A failure here cannot undo
        the commit: the router then reads the primary for ``read_max_lag_s`` instead.
        """
        assert self._router is not None
        try:
            row = conn.execute(INSERT_LSN_SQL).fetchone()
            self._router.note_write(parse_lsn(str(row[0])) if row else 0)
        except (psycopg.Error, ValidationError):
            self._router.note_unknown_write()

    def health(self) -> dict[str, Any]:
        """Check that the server answers; report the circuit breaker's state either way."""
        try:
            self.count_records("default", None)
            out: dict[str, Any] = {"status": "ok", "backend": self.backend}
        except EngramError as exc:
            out = {"status": "error", "backend": self.backend, "message": exc.message}
        out["breaker"] = self.breaker.state()
        return out

    def last_write_lsn(self) -> str | None:
        """The WAL position of this store's last committed write (None without a replica)."""
        last = self._router.last_write() if self._router is not None else None
        return format_lsn(last) if last is not None else None

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, waited for at most the rest of the retry window.

        Inside a retried call the watchdog cuts the connection if the server has not
        answered within ``io_timeout_s`` (a hung server must not hang the caller).
        """
        pool = self._pool_now()
        with self._using(pool, self._checkout(pool)) as conn:
            yield conn

    @contextmanager
    def _using(
        self, pool: ConnectionPool[Any], conn: psycopg.Connection[Any]
    ) -> Iterator[psycopg.Connection[Any]]:
        """Use ``conn`` (watched inside a retried call), then give it back to ``pool``."""
        ok = False
        try:
            with conn:
                if not in_retry():
                    yield conn
                    ok = True
                    return
                limit = self.retry_policy.io_timeout_s
                token = WATCHDOG.arm(conn, limit)
                try:
                    yield conn
                    ok = True
                except psycopg.OperationalError as exc:
                    if WATCHDOG.disarm(token):
                        raise psycopg.OperationalError(
                            f"no reply within store_io_timeout_s={limit:g} s; "
                            "the connection was dropped"
                        ) from exc
                    raise
                finally:
                    WATCHDOG.disarm(token)
        finally:
            with self._fresh_lock:
                if ok and not conn.closed:
                    self._fresh[conn] = time.monotonic()
                else:
                    self._fresh.pop(conn, None)
            pool.putconn(conn)

    def _checkout(self, pool: ConnectionPool[Any]) -> psycopg.Connection[Any]:
        """A checked connection from ``pool``; broken ones are discarded, the next tried at once.

        (The pool's own ``check`` would sleep a second of backoff after each broken
        connection, so after a restart each of them would cost the caller a second.) Inside
        a retried call, a connection that finished a statement less than
        :data:`FRESH_S` ago skips the check (an empty round trip, ~0.15 ms of a 3 ms
        search): should the server have gone in that instant, the call's own statement
        fails under the watchdog and the call is retried like any other failure. The
        wait is cut in slices of :data:`RECONNECT_S`: the pool gives up reconnecting on its
        own after that long, and each new wait makes it try again, so the first connection
        after an outage is made within about that time of the server coming back (the
        pool's own backoff would double its delay up to minutes).
        """
        total = remaining(self._pool_args[2])
        deadline = time.monotonic() + total
        failures = 0
        while True:
            try:
                conn: psycopg.Connection[Any] = pool.getconn(
                    timeout=max(0.05, min(RECONNECT_S, deadline - time.monotonic()))
                )
            except PoolTimeout as exc:
                if time.monotonic() < deadline:
                    continue
                raise PoolTimeout(f"no usable connection within {total:.1f} s") from exc
            if in_retry() and not conn.closed:
                with self._fresh_lock:
                    used = self._fresh.get(conn)
                if used is not None and time.monotonic() - used < FRESH_S:
                    return conn
            try:
                self._check_connection(conn)
            except psycopg.Error:
                pool.putconn(conn)  # broken: the pool discards it and opens a replacement
                failures += 1
                if time.monotonic() >= deadline:
                    raise
                if failures > 2:
                    time.sleep(min(0.2, 0.01 * failures))
                continue
            return conn

    @contextmanager
    def _read(
        self, doing: str, snapshot: bool = False, route: bool = False
    ) -> Iterator[psycopg.Connection[Any]]:
        """A connection for reads; ``snapshot`` makes several statements see one snapshot.

        ``route``: the read may be served by the replica (``read_url``) when the router
        finds it fresh enough (:mod:`engramdb.stores.postgres.replica`); a replica connection
        failing mid-read marks the replica down and the retried call re-runs on the primary.
        """
        replica = self._replica_conn() if route and self._router is not None else None
        if route and self._router is not None:
            self._router.served(replica is not None)
        try:
            if replica is None:
                with self._connection() as conn:
                    if snapshot:
                        with conn.transaction():
                            conn.execute(
                                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                            )
                            yield conn
                    else:
                        yield conn
            else:
                try:
                    with self._using(*replica) as conn:
                        if snapshot:
                            with conn.transaction():
                                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                                yield conn
                        else:
                            yield conn
                except psycopg.Error as exc:
                    if is_connection_failure(exc) and self._router is not None:
                        self._router.mark_down(str(exc).strip() or type(exc).__name__)
                    raise
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._translate(exc, doing) from exc

    def _replica_conn(self) -> tuple[ConnectionPool[Any], psycopg.Connection[Any]] | None:
        """A replica connection for one routed read, or None to read the primary."""
        self._pool_now()  # after fork: reopen both pools
        router, pool = self._router, self._rpool
        if router is None or pool is None:
            return None
        plan = router.plan()
        if plan == "primary":
            return None
        try:
            conn: psycopg.Connection[Any] = pool.getconn(timeout=min(CHECKOUT_S, remaining(30.0)))
        except PoolTimeout as exc:
            router.mark_down(f"no connection within {CHECKOUT_S:g} s: {exc}")
            return None
        try:
            if plan == "probe":
                token = WATCHDOG.arm(conn, self.retry_policy.connect_timeout_s)
                try:
                    row = conn.execute(PROBE_SQL).fetchone()
                finally:
                    WATCHDOG.disarm(token)
                usable = bool(row and row[0]) and router.after_probe(
                    parse_lsn(str(row[0])) if row else 0, float(row[1]) if row else 0.0
                )
            else:
                self._check_connection(conn)
                usable = True
        except psycopg.Error as exc:
            pool.putconn(conn)
            router.mark_down(str(exc).strip() or type(exc).__name__)
            return None
        if not usable:
            pool.putconn(conn)
            return None
        return pool, conn

    # ------------------------------------------------------------------ meta

    def _init_meta(self) -> None:
        with self._write("initialising metadata") as c:
            c.execute(
                "INSERT INTO meta(key, value) VALUES ('index_epoch', %s), ('store_id', %s) "
                "ON CONFLICT DO NOTHING",
                (uuid.uuid4().hex, uuid.uuid4().hex),
            )

    @staticmethod
    def _meta(conn: psycopg.Connection[Any], key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return None if row is None else str(row[0])

    @retried
    def embedder_info(self) -> tuple[str, int] | None:
        """Return the (name, dim) recorded in the store, if any."""
        with self._read("reading the embedder", snapshot=True) as c:
            name, dim = self._meta(c, "embedder_name"), self._meta(c, "embedder_dim")
        return None if name is None or dim is None else (name, int(dim))

    @retried
    def check_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first use; refuse a different one (invariant 7).

        The first recording also gives the vector column its dimension and builds the HNSW
        index (the dimension is unknown when the schema is created).
        """
        info = self.embedder_info()
        if info is None:
            with self._write("recording the embedder") as c:
                c.execute("SELECT pg_advisory_xact_lock(%s)", (EMBEDDER_LOCK,))
                cur = c.execute(
                    "INSERT INTO meta(key, value) VALUES ('embedder_name', %s), "
                    "('embedder_dim', %s) ON CONFLICT DO NOTHING",
                    (name, str(dim)),
                )
                if cur.rowcount == 2:
                    self._set_vector_dim(c, int(dim))
            info = self.embedder_info()
        if info != (name, dim):
            stored = info or ("?", 0)
            raise EmbedderMismatchError(
                f"{self._where()} was built with embedder {stored[0]!r} (dim {stored[1]}), "
                f"not {name!r} (dim {dim}); open it with that embedder or run `engramdb reembed`",
                stored_name=info[0] if info else None,
                stored_dim=info[1] if info else None,
                name=name,
                dim=dim,
            )

    def _set_vector_dim(self, c: psycopg.Connection[Any], dim: int) -> None:
        """Give ``chunks.embedding`` the dimension ``dim`` and (re)build its vector indexes."""
        if not 1 <= dim <= 16_000:
            raise ValidationError(f"vector dimension {dim} is out of range", field="dim")
        for statement in DROP_VECTOR_INDEXES:
            c.execute(statement)
        c.execute(f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dim})")
        for statement in vector_index_ddl(dim, self.hnsw_m, self.hnsw_ef_construction):
            c.execute(statement)

    # ------------------------------------------------------------------ writes

    @retried
    def add_records(
        self,
        namespace: str,
        items: list[PreparedRecord],
        on_error: OnError,
        events: list[PreparedEvent] | None = None,
    ) -> list[AddResult]:
        """Insert records (and events) in one transaction, deduplicating in the database.

        With ``on_error="abort"`` the first conflicting item rolls back everything and its
        error is raised (with ``details['index']``); with ``"skip"`` each item runs in a
        savepoint and a conflicting one is reported as rejected while the others commit.

        Raises:
            CommitUnknownError: the connection was lost after COMMIT was sent; its
                ``details["ids"]`` are the batch's ids, safe to add again (idempotent add).
        """
        try:
            return self._insert_records(namespace, items, on_error, events)
        except CommitUnknownError as exc:
            exc.details["ids"] = [it.id for it in items]
            raise

    def _insert_records(
        self,
        namespace: str,
        items: list[PreparedRecord],
        on_error: OnError,
        events: list[PreparedEvent] | None,
    ) -> list[AddResult]:
        results: list[AddResult] = []
        with self._write("adding records", [namespace]) as c:
            now = now_us()
            before = self._quota_count(c, namespace)
            if events:
                self._insert_events(c, namespace, events)
            if len({it.id for it in items}) == len(items):
                results = self._insert_batch(c, namespace, items, now, on_error)
                check_quota(namespace, self.namespace_max_records, before, results)
                return results
            # Repeated ids in one batch: item by item, so each repeat sees the earlier ones.
            for i, item in enumerate(items):
                if on_error == "skip":
                    try:
                        with c.transaction():
                            results.append(self._insert_one(c, namespace, item, now, i))
                    except ConflictError as exc:
                        results.append(AddResult(i, "rejected", None, exc.message))
                else:
                    try:
                        results.append(self._insert_one(c, namespace, item, now, i))
                    except ConflictError as exc:
                        exc.details["index"] = i
                        raise
            check_quota(namespace, self.namespace_max_records, before, results)
        return results

    def _quota_count(self, c: psycopg.Connection[Any], namespace: str) -> int:
        """Records of the namespace, when a quota is set (0 otherwise: nothing to check).

        Concurrent adds to one namespace would each count the same total and together pass
        the quota (write skew), so the count is taken under a lock on the namespace's
        generation row: the upsert below locks it until COMMIT (the write bumps that row
        at the end anyway), and adds to the namespace queue behind each other. Under READ
        COMMITTED the count, a new statement, sees what the previous holder committed.
        """
        if not self.namespace_max_records:
            return 0
        c.execute(
            "INSERT INTO namespace_generations(namespace, generation) VALUES (%s, 0) "
            "ON CONFLICT (namespace) DO UPDATE SET generation = namespace_generations.generation",
            (namespace,),
        )
        row = c.execute(
            "SELECT count(*) FROM records WHERE namespace = %s", (namespace,)
        ).fetchone()
        return int(row[0]) if row else 0

    def _insert_batch(
        self,
        c: psycopg.Connection[Any],
        ns: str,
        items: list[PreparedRecord],
        now: int,
        on_error: OnError,
    ) -> list[AddResult]:
        """Insert a batch with distinct ids in one statement (the online-ingest path).

        Records and chunks go in through one data-modifying CTE over arrays
        (one round trip for the whole batch instead of three per record). Dedup stays with
        the unique indexes: an item missing from the statement's RETURNING hit one, and gets
        the same outcome as on the one-by-one path; a rejected item (an id clash with a
        different text) inserted nothing, so skipping it needs no savepoint. An item whose
        conflicting row was deleted by another transaction meanwhile is retried alone.
        """
        self._send_vectors_binary(c)
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
                results.append(
                    self._conflict_outcome(c, ns, it, i) or self._insert_one(c, ns, it, now, i)
                )
            except ConflictError as exc:
                if on_error == "abort":
                    exc.details["index"] = i
                    raise
                results.append(AddResult(i, "rejected", None, exc.message))
        return results

    def _send_vectors_binary(self, c: psycopg.Connection[Any]) -> None:
        """Teach ``c`` to send :class:`_Vector` in pgvector's binary form.

        The type's oid is looked up once per store (one query; the schema's migrations
        created the extension), then registered on each connection locally.

        Raises:
            StoreError: the database has no ``vector`` type.
        """
        try:
            c.adapters.get_dumper(_Vector, PyFormat.BINARY)
            return
        except psycopg.ProgrammingError:
            pass
        if self._vector_type is None:
            self._vector_type = TypeInfo.fetch(c, "vector")
            if self._vector_type is None:
                raise StoreError("the database has no 'vector' type: is pgvector installed?")
        self._vector_type.register(c)
        dumper = type("VectorDumper", (_VectorDumper,), {"oid": self._vector_type.oid})
        c.adapters.register_dumper(_Vector, dumper)

    def _conflict_outcome(
        self, c: psycopg.Connection[Any], ns: str, it: PreparedRecord, index: int
    ) -> AddResult | None:
        """The outcome of an item whose INSERT hit a unique index (same id or same text).

        None when the conflicting row is gone (deleted by another transaction meanwhile).

        Raises:
            ConflictError: the caller's id exists with a different text.
        """
        if it.caller_id:
            existing = self._select_one(c, ns, it.id)
            if existing is not None:
                return existing_id_outcome(existing, it, index)
        dup = c.execute(DEDUP_LOOKUP_SQL.format(cols=COLS, p="%s"), dedup_key(ns, it)).fetchone()
        return None if dup is None else AddResult(index, "deduplicated", row_to_record(dup))

    def _insert_one(
        self, c: psycopg.Connection[Any], ns: str, it: PreparedRecord, now: int, index: int
    ) -> AddResult:
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
            outcome = self._conflict_outcome(c, ns, it, index)
            if outcome is not None:
                return outcome
            # The conflicting row was deleted by another transaction meanwhile: try again.
        else:  # pragma: no cover - three lost races in a row
            raise ConflictError(f"record {it.id!r} conflicts with an existing record", id=it.id)
        rid = row[0]
        self._insert_chunks(c, rid, ns, it.user_id, it.chunks)
        # No history row, as in the batch path: Engine.history derives the add.
        return AddResult(index, "written", inserted_record(ns, it, from_us_req(now)))

    def _insert_chunks(
        self,
        c: psycopg.Connection[Any],
        rid: int,
        ns: str,
        user_id: str,
        chunks: list[PreparedChunk],
    ) -> None:
        rows = [
            (rid, ns, user_id, ordinal, ch.start, ch.end, ch.index_text, vector_text(ch.vector))
            for ordinal, ch in enumerate(chunks)
        ]
        self._insert_chunk_rows(c, rows)

    @staticmethod
    def _insert_chunk_rows(c: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
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

    def _select_one(
        self, c: psycopg.Connection[Any], ns: str, record_id: str, lock: bool = False
    ) -> MemoryRecord | None:
        row = c.execute(
            f"SELECT {COLS} FROM records r WHERE namespace = %s AND id = %s"
            + (" FOR UPDATE" if lock else ""),
            (ns, record_id),
        ).fetchone()
        return None if row is None else row_to_record(row)

    @retried
    def update_record(
        self,
        namespace: str,
        record_id: str,
        changes: RecordChanges,
        expected_version: int | None,
    ) -> MemoryRecord:
        """Apply changes in one transaction, bump the version and write a history row."""
        with self._write("updating a record", [namespace]) as c:
            row = c.execute(
                f"SELECT {COLS} FROM records r WHERE namespace = %s AND id = %s FOR UPDATE",
                (namespace, record_id),
            ).fetchone()
            before = checked_for_update(
                None if row is None else row_to_record(row), namespace, record_id, expected_version
            )
            assert row is not None  # checked_for_update raised otherwise
            rid = row[0]
            sets, params = scalar_set_clauses(changes, "%s")
            if changes.metadata_json is not None:
                sets.append("metadata = %s::jsonb, metadata_raw = %s")
                params.extend([changes.metadata_json, changes.metadata_json])
            if changes.add_tags or changes.remove_tags:
                # One statement: the new set is computed from the row's current tags.
                sets.append(
                    "tags = (SELECT COALESCE(jsonb_agg(v ORDER BY v COLLATE \"C\"), '[]'::jsonb) "
                    "FROM (SELECT e.t AS v FROM jsonb_array_elements_text(records.tags) AS e(t) "
                    "WHERE e.t <> ALL(%s::text[]) UNION SELECT a.t FROM unnest(%s::text[]) "
                    "AS a(t) WHERE a.t <> ALL(%s::text[])) s)"
                )
                rm = list(changes.remove_tags or [])
                params.extend([rm, list(changes.add_tags or []), rm])
            now = now_us()
            sets.append("version = version + 1")
            sets.append("updated_at = %s")
            params.append(now)
            try:
                with c.transaction():
                    c.execute(
                        f"UPDATE records SET {', '.join(sets)} WHERE rid = %s", (*params, rid)
                    )
            except pgerr.UniqueViolation as exc:
                raise ConflictError(
                    f"another record in the same scope already has this text ({record_id!r})",
                    id=record_id,
                ) from exc
            if changes.chunks is not None:
                c.execute("DELETE FROM chunks WHERE rid = %s", (rid,))
                self._insert_chunks(c, rid, namespace, before.user_id or "", changes.chunks)
            after = self._select_one(c, namespace, record_id)
            assert after is not None
            c.execute(_INSERT_HISTORY, change_row(namespace, before, after, now))
            return after

    @retried
    def delete_records(self, namespace: str, ids: list[str] | None, node: Node | None) -> int:
        """Delete by ids or filter from every index in one transaction, leaving history."""
        with self._write("deleting records", [namespace]) as c:
            if ids is not None:
                rows = c.execute(
                    f"SELECT {COLS} FROM records r WHERE namespace = %s AND id = ANY(%s) "
                    "FOR UPDATE",
                    (namespace, list(ids)),
                ).fetchall()
            else:
                where, params = compile_postgres(node)
                rows = c.execute(
                    f"SELECT {COLS} FROM records r WHERE r.namespace = %s AND {where} FOR UPDATE",
                    (namespace, *params),
                ).fetchall()
            if not rows:
                return 0
            rids = [r[0] for r in rows]
            now = now_us()
            with c.cursor() as cur:
                cur.executemany(
                    _INSERT_HISTORY,
                    [change_row(namespace, row_to_record(r), None, now) for r in rows],
                )
            # Chunks (vectors and keyword rows) go with their record (ON DELETE CASCADE).
            c.execute(
                "DELETE FROM records WHERE namespace = %s AND rid = ANY(%s)", (namespace, rids)
            )
            return len(rids)

    # ------------------------------------------------------------------ reads

    @retried
    def get_records(self, namespace: str, ids: list[str]) -> list[MemoryRecord]:
        """Return the records with these ids in the order asked; missing ones omitted."""
        with self._read("reading records", route=True) as c:
            rows = c.execute(
                f"SELECT {COLS} FROM records r WHERE namespace = %s AND id = ANY(%s)",
                (namespace, list(ids)),
            ).fetchall()
        by_id = {r[1]: row_to_record(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    @retried
    def list_records(
        self, namespace: str, node: Node | None, limit: int, after: str | None, descending: bool
    ) -> list[MemoryRecord]:
        """Return one keyset page of matching records ordered by id."""
        where, params = compile_postgres(node)
        cmp, order = ("<", "DESC") if descending else (">", "ASC")
        sql = f"SELECT {COLS} FROM records r WHERE r.namespace = %s AND {where}"
        args: list[Any] = [namespace, *params]
        if after is not None:
            sql += f" AND r.id {cmp} %s"
            args.append(after)
        sql += f" ORDER BY r.id {order} LIMIT %s"
        args.append(limit)
        with self._read("listing records", route=True) as c:
            return [row_to_record(r) for r in c.execute(sql, args).fetchall()]

    @retried
    def count_records(self, namespace: str, node: Node | None) -> int:
        """Count matching records."""
        where, params = compile_postgres(node)
        with self._read("counting records", route=True) as c:
            row = c.execute(
                f"SELECT count(*) FROM records r WHERE r.namespace = %s AND {where}",
                (namespace, *params),
            ).fetchone()
        return int(row[0]) if row else 0

    @retried
    def history(self, namespace: str, record_id: str) -> list[HistoryEntry]:
        """Return every change of a record, oldest first."""
        with self._read("reading history", route=True) as c:
            rows = c.execute(_HISTORY_SQL, (namespace, record_id)).fetchall()
        return [history_entry(r) for r in rows]

    # ------------------------------------------------------------------ search

    def _scope_size(
        self, c: psycopg.Connection[Any], namespace: str, user_id: str | None, cap: int
    ) -> int:
        """Chunks in the scope, counted up to ``cap + 1`` (cached for a few seconds: it only
        picks a plan, and both plans return what is there)."""
        now = time.monotonic()
        key = (namespace, user_id)
        with self._scope_lock:
            hit = self._scope_cache.get(key)
            if hit is not None and now - hit[0] < 10.0:
                return hit[1]
        args: tuple[str, ...] = (namespace,) if user_id is None else (namespace, user_id)
        sql = "namespace = %s" if user_id is None else "namespace = %s AND user_id = %s"
        row = c.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM chunks WHERE {sql} LIMIT %s) s",
            (*args, cap + 1),
        ).fetchone()
        n = int(row[0]) if row else 0
        with self._scope_lock:
            self._scope_cache[key] = (now, n)
        return n

    @retried
    def vector_candidates(
        self,
        namespace: str,
        query: np.ndarray,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: bool = False,
    ) -> list[ChunkHit]:
        """Return the best chunks by cosine similarity that pass the filter.

        Exact for a user's scope of up to ``ann_min_user_rows`` chunks and for namespaces
        up to ``ann_min_rows`` chunks: the scope's chunks are scored once (a materialised
        step, through the ``(namespace, user_id)`` index) and only then joined to their
        records for the filter, so no plan can rescan the scope per record, even before the
        table has statistics. Larger scopes use the HNSW index with pgvector's iterative
        scan, so a selective filter still fills the page. One statement either way: the
        filter is a per-chunk check of its record (:func:`_record_check`). The returned
        chunks meet their records after the limit (:func:`_located`), which gives each hit
        its location and, ``with_records``, its whole record.
        """
        q = _Vector(query)
        scope = "namespace = %s"
        scope_args: list[Any] = [namespace]
        if user_id is not None:
            scope += " AND user_id = %s"
            scope_args.append(user_id)
        with self._read("vector search", route=True) as c:
            self._send_vectors_binary(c)  # the query as 1.5 KB of floats, not 4 KB of text
            if user_id is None:
                cap = self.ann_min_rows
                exact = self._scope_size(c, namespace, None, cap) <= cap
            else:
                cap = self.exact_max_user_rows
                exact = self._scope_size(c, namespace, user_id, cap) <= cap
            if not exact:
                rows = self._prefiltered(c, q, namespace, user_id, node, limit, with_records)
                if rows is None:
                    rows = self._ann_candidates(c, q, namespace, user_id, node, limit, with_records)
            else:
                check, check_args = _record_check("s", namespace, node)
                rows = c.execute(
                    _located(
                        "WITH s AS MATERIALIZED (SELECT id, rid, start_pos, end_pos, "
                        f"embedding <=> %s::vector AS d FROM chunks WHERE {scope}) "
                        "SELECT s.id, s.rid, 1 - s.d AS score, s.start_pos, s.end_pos FROM s "
                        f"WHERE {check} ORDER BY s.d, s.id LIMIT {int(limit)}",
                        with_records,
                    ),
                    (q, *scope_args, *check_args),
                ).fetchall()
        hits = [_located_hit(r, with_records) for r in rows]
        hits.sort(key=lambda h: (-h.score, h.chunk_id))
        return hits

    def _narrow(
        self, c: psycopg.Connection[Any], namespace: str, node: Node | None, user_id: str | None
    ) -> tuple[str, list[Any]] | None:
        """The records condition of a narrow indexed filter, and its arguments, or None.

        Narrow: the filter requires a tag or a metadata value (which the GIN indexes on
        records answer) and at most ``PREFILTER_MAX_RECORDS`` records of the scope pass it
        (counted through that index, stopping one past the cap). A search then starts from
        those records instead of ranking the scope's chunks and testing each.
        """
        if not any(
            (leaf.kind == "tags" and leaf.op in ("$eq", "$contains"))
            or (leaf.kind == "meta" and leaf.op == "$eq" and leaf.value is not None)
            for leaf in required_leaves(node)
        ):
            return None
        where, params = compile_postgres(node)
        cond = f"r.namespace = %s AND {where}"
        args = [namespace, *params]
        if user_id is not None:
            cond += " AND r.user_id = %s"
            args.append(user_id)
        row = c.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM records r WHERE {cond} LIMIT %s) s",
            (*args, PREFILTER_MAX_RECORDS + 1),
        ).fetchone()
        if row is None or int(row[0]) > PREFILTER_MAX_RECORDS:
            return None
        return cond, args

    def _prefiltered(
        self,
        c: psycopg.Connection[Any],
        q: _Vector,
        namespace: str,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: bool,
    ) -> list[tuple[Any, ...]] | None:
        """The exact search of a large scope's records that pass a narrow filter (see
        :meth:`_narrow`), or None for the HNSW scan."""
        narrow = self._narrow(c, namespace, node, user_id)
        if narrow is None:
            return None
        # Two materialised steps: the passing records through the GIN index, then their
        # chunks by rid. As one join the planner chose a parallel scan of every record
        # (30 ms for a tag of 1,100 records; 14 ms this way).
        sql = _located(
            f"WITH p AS MATERIALIZED (SELECT r.rid FROM records r WHERE {narrow[0]}), "
            "s AS MATERIALIZED (SELECT c.id, c.rid, c.start_pos, c.end_pos, "
            "c.embedding <=> %s::vector AS d FROM p JOIN chunks c ON c.rid = p.rid) "
            "SELECT s.id, s.rid, 1 - s.d AS score, s.start_pos, s.end_pos FROM s "
            f"ORDER BY s.d, s.id LIMIT {int(limit)}",
            with_records,
        )
        return c.execute(sql, (*narrow[1], q)).fetchall()

    def _ann_candidates(
        self,
        c: psycopg.Connection[Any],
        q: _Vector,
        namespace: str,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: bool,
    ) -> list[tuple[Any, ...]]:
        """The HNSW search of a large scope (:func:`ann_statement`; session settings from
        ``_configure_session``). Relaxed order is enough: every returned score is exact
        and the caller sorts."""
        sql, args = ann_statement(q, namespace, user_id, node, limit, with_records)
        if limit <= self.hnsw_ef_search:
            return c.execute(sql, args).fetchall()
        with c.transaction():  # a page larger than the search breadth: widen it for this query
            c.execute(f"SET LOCAL hnsw.ef_search = {int(limit)}")
            return c.execute(sql, args).fetchall()

    @retried
    def vector_scores(self, chunk_ids: list[int], query: np.ndarray) -> list[float]:
        """Return the cosine similarity of the query to each chunk (NaN when it is gone)."""
        if not chunk_ids:
            return []
        with self._read("scoring chunks", route=True) as c:
            self._send_vectors_binary(c)
            rows = c.execute(
                "SELECT id, 1 - (embedding <=> %s::vector) FROM chunks WHERE id = ANY(%s)",
                (_Vector(query), list(chunk_ids)),
            ).fetchall()
        got = {int(r[0]): float(r[1]) for r in rows}
        return [got.get(cid, float("nan")) for cid in chunk_ids]

    @retried
    def keyword_candidates(
        self, namespace: str, match: str, node: Node | None, limit: int
    ) -> list[ChunkHit]:
        """Return the best chunks by ``ts_rank`` (higher is better), ties by chunk id.

        Matches come from ``chunks`` alone (its GIN index, or a scan when most rows match),
        narrowed to the filter's user when it names one (chunks carry ``user_id``: a user of
        27 records then ranks its own few matches in ~0.2 ms instead of the namespace's
        27k). Only the best ``KEYWORD_PROBE`` (or 4x ``limit``) meet their records and the
        filter; joining every match first made a ten-word keyword search over 100k records
        take ~450 ms. When too few of the probed ones pass, the whole join runs. A narrow
        indexed filter (see :meth:`_narrow`) ranks just its records' chunks instead (a tag
        of 100 records: ~200 ms ranking the namespace's matches first).
        """
        tsq = tsquery_text(match)
        if not tsq:
            return []
        where, params = compile_postgres(node)
        users = sorted(v for _, v in required_equalities(node, USER_SCOPE))
        matches, args = keyword_matches(tsq, namespace, users)
        columns = "m.id, m.rid, m.s, r.id, r.version, m.start_pos, m.end_pos"
        probe = max(limit * 4, KEYWORD_PROBE)
        with self._read("keyword search", route=True) as c:
            narrow = self._narrow(c, namespace, node, None)
            if narrow is not None:  # rank only the passing records' chunks
                rows = c.execute(
                    f"WITH p AS MATERIALIZED (SELECT r.rid FROM records r WHERE {narrow[0]}), "
                    "m AS MATERIALIZED (SELECT c.id, c.rid, c.start_pos, c.end_pos, "
                    "ts_rank(c.fts, to_tsquery('engram', %s)) AS s FROM p JOIN chunks c "
                    "ON c.rid = p.rid WHERE c.fts @@ to_tsquery('engram', %s)) "
                    f"SELECT {columns} FROM m JOIN records r ON r.rid = m.rid "
                    f"ORDER BY m.s DESC, m.id LIMIT {int(limit)}",
                    (*narrow[1], tsq, tsq),
                    prepare=False,
                ).fetchall()
                return [_located_hit(r, False) for r in rows]
            # The CTEs are materialised so that the planner cannot start from records
            # (see vector_candidates). Never prepared: a query's words decide whether a
            # parallel scan or the GIN index is right, and the generic plan a prepared
            # statement falls back to after a few runs took 160-410 ms where planning for
            # the words took 70-120 (20 queries on the 100k-record benchmark table).
            ranked = c.execute(
                f"WITH m AS MATERIALIZED ({matches} ORDER BY s DESC, id LIMIT {probe}) "
                f"SELECT {columns}, r.rid IS NOT NULL FROM m LEFT JOIN records r "
                f"ON r.rid = m.rid AND r.namespace = %s AND {where} ORDER BY m.s DESC, m.id",
                (*args, namespace, *params),
                prepare=False,
            ).fetchall()
            passed = [r for r in ranked if r[7]]
            if len(passed) >= limit or len(ranked) < probe:
                return [_located_hit(r, False) for r in passed[:limit]]
            rows = c.execute(
                f"WITH m AS MATERIALIZED ({matches}) "
                f"SELECT {columns} FROM m JOIN records r ON r.rid = m.rid "
                f"WHERE r.namespace = %s AND {where} ORDER BY m.s DESC, m.id LIMIT {int(limit)}",
                (*args, namespace, *params),
                prepare=False,
            ).fetchall()
        return [_located_hit(r, False) for r in rows]

    @retried
    def locate(
        self, namespace: str, chunk_ids: list[int], node: Node | None
    ) -> dict[int, tuple[str, int, int, int]]:
        """Map chunk id -> (record id, version, start, end) for chunks passing the filter."""
        if not chunk_ids:
            return {}
        where, params = compile_postgres(node)
        with self._read("locating search hits", route=True) as c:
            rows = c.execute(
                "SELECT c.id, r.id, r.version, c.start_pos, c.end_pos FROM chunks c JOIN records r "
                "ON r.rid = c.rid WHERE c.id = ANY(%s) AND c.namespace = %s AND "
                f"r.namespace = %s AND {where}",
                (list(chunk_ids), namespace, namespace, *params),
            ).fetchall()
        return {int(r[0]): (r[1], int(r[2]), r[3], r[4]) for r in rows}

    @retried
    def thread_turns(
        self, namespace: str, thread_id: str, start: int, end: int, margin: int
    ) -> list[ThreadTurn]:
        """Return a thread's messages in ``[start, end]`` plus ``margin`` on each side."""
        scope = "namespace = %s AND thread_id = %s AND type = 'message'"
        with self._read("reading a thread", snapshot=True, route=True) as c:
            rids = [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at < %s "
                    "ORDER BY occurred_at DESC, rid DESC LIMIT %s",
                    (namespace, thread_id, start, margin),
                ).fetchall()
            ]
            rids += [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at BETWEEN %s AND %s",
                    (namespace, thread_id, start, end),
                ).fetchall()
            ]
            rids += [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at > %s "
                    "ORDER BY occurred_at, rid LIMIT %s",
                    (namespace, thread_id, end, margin),
                ).fetchall()
            ]
            rows = c.execute(
                "SELECT r.id, r.text, r.occurred_at, c.id, c.start_pos, c.end_pos FROM records r "
                "JOIN chunks c ON c.rid = r.rid WHERE r.rid = ANY(%s) "
                "ORDER BY r.occurred_at, r.rid, c.ord",
                (rids,),
            ).fetchall()
        turns: list[ThreadTurn] = []
        for record_id, text, occurred, cid, a, b in rows:
            if not turns or turns[-1].record_id != record_id:
                turns.append(ThreadTurn(record_id, text, int(occurred), []))
            turns[-1].chunks.append((int(cid), int(a), int(b)))
        return turns

    @retried
    def set_index_texts(self, namespace: str, texts: list[tuple[int, str]]) -> None:
        """Rewrite the keyword-index text of chunks (skipping chunks deleted meanwhile)."""
        if not texts:
            return
        with self._write("re-indexing a thread", [namespace]) as c, c.cursor() as cur:
            cur.executemany(
                "UPDATE chunks SET body = %s, fts = to_tsvector('engram', %s) "
                "WHERE id = %s AND namespace = %s",
                [(body, body, cid, namespace) for cid, body in texts],
            )

    # ------------------------------------------------------------------ episodic + slots

    @retried
    def generation(self, namespace: str) -> int:
        """Return the namespace's write generation (see ``Store.generation``)."""
        with self._read("reading the write generation", route=True) as c:
            row = c.execute(GENERATION_SQL.format(p="%s"), (namespace,)).fetchone()
            if self._router is not None and not self._router.on_replica():
                # Served by the primary: the data reads this generation guards (and the
                # cache entries stored under it) must not come from an older replica.
                pos = c.execute(INSERT_LSN_SQL).fetchone()
                if pos:
                    self._router.note_thread_floor(parse_lsn(str(pos[0])))
        return int(row[0]) if row else 0

    @retried
    def next_expiry(self, namespace: str, after: int) -> int | None:
        """Return the earliest ``expires_at`` after ``after`` (see ``Store.next_expiry``)."""
        with self._read("reading the next expiry", route=True) as c:
            row = c.execute(NEXT_EXPIRY_SQL.format(p="%s"), (namespace, after)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    @retried
    def store_id(self) -> str:
        """Return this store's identity (kept by ``restore``)."""
        with self._read("reading the store id") as c:
            return self._meta(c, "store_id") or ""

    def _insert_events(
        self, c: psycopg.Connection[Any], namespace: str, events: list[PreparedEvent]
    ) -> list[Event]:
        out = []
        for e in events:
            row = c.execute(
                "INSERT INTO events(id, namespace, thread_id, user_id, actor, action, payload, ts)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING seq",
                (e.id, namespace, e.thread_id, e.user_id, e.actor, e.action, e.payload_json, e.ts),
            ).fetchone()
            out.append(
                Event(
                    e.id,
                    namespace,
                    e.thread_id,
                    e.action,
                    json.loads(e.payload_json),
                    e.user_id or None,
                    e.actor or None,
                    from_us_req(e.ts),
                    int(row[0]) if row else 0,
                )
            )
        return out

    @retried
    def append_events(self, namespace: str, events: list[PreparedEvent]) -> list[Event]:
        """Append events in order in one transaction."""
        with self._write("appending events", [namespace]) as c:
            return self._insert_events(c, namespace, events)

    @retried
    def list_events(
        self, namespace: str, thread_id: str, since: int | None, limit: int
    ) -> list[Event]:
        """Return a thread's events in append order, optionally from a time on."""
        sql = (
            "SELECT id, namespace, thread_id, action, payload, user_id, actor, ts, seq "
            "FROM events WHERE namespace = %s AND thread_id = %s"
        )
        args: list[Any] = [namespace, thread_id]
        if since is not None:
            sql += " AND ts >= %s"
            args.append(since)
        sql += " ORDER BY seq LIMIT %s"
        args.append(limit)
        with self._read("reading events", route=True) as c:
            rows = c.execute(sql, args).fetchall()
        return [
            Event(
                r[0],
                r[1],
                r[2],
                r[3],
                json.loads(r[4]),
                r[5] or None,
                r[6] or None,
                from_us_req(r[7]),
                int(r[8]),
            )
            for r in rows
        ]

    @retried
    def get_slots(self, namespace: str, thread_id: str) -> Slots:
        """Return the thread's slots (an empty map at version 0 when never set)."""
        with self._read("reading slots", snapshot=True, route=True) as c:
            return self._slots(c, namespace, thread_id)

    def _slots(self, c: psycopg.Connection[Any], namespace: str, thread_id: str) -> Slots:
        ver = c.execute(
            "SELECT version, updated_at FROM slot_versions WHERE namespace = %s AND thread_id = %s",
            (namespace, thread_id),
        ).fetchone()
        rows = c.execute(
            "SELECT name, value FROM slots WHERE namespace = %s AND thread_id = %s ORDER BY name",
            (namespace, thread_id),
        ).fetchall()
        return Slots(
            namespace,
            thread_id,
            {n: json.loads(v) for n, v in rows},
            ver[0] if ver else 0,
            from_us(ver[1]) if ver else None,
        )

    @retried
    def set_slots(
        self,
        namespace: str,
        thread_id: str,
        values: dict[str, Any],
        expected_version: int | None,
        user_id: str,
    ) -> Slots:
        """Compare-and-set: write values (None removes a slot) and bump the thread's version.

        The thread's version row is created if missing and then locked (``FOR UPDATE``), so
        concurrent writers of one thread serialise and a stale version always conflicts.
        """
        with self._write("setting slots", [namespace]) as c:
            c.execute(
                "INSERT INTO slot_versions(namespace, thread_id, user_id, version, updated_at) "
                "VALUES (%s,%s,%s,0,%s) ON CONFLICT DO NOTHING",
                (namespace, thread_id, user_id, now_us()),
            )
            row = c.execute(
                "SELECT version FROM slot_versions WHERE namespace = %s AND thread_id = %s "
                "FOR UPDATE",
                (namespace, thread_id),
            ).fetchone()
            current = int(row[0]) if row else 0
            check_slot_version(thread_id, current, expected_version)
            write_slot_values(c.execute, "%s", namespace, thread_id, values)
            c.execute(
                "UPDATE slot_versions SET version = version + 1, updated_at = %s "
                "WHERE namespace = %s AND thread_id = %s",
                (now_us(), namespace, thread_id),
            )
            return self._slots(c, namespace, thread_id)

    # ------------------------------------------------------------------ erasure

    def forget(
        self,
        namespace: str,
        user_id: str | None,
        thread_id: str | None,
        everything: bool,
        compact: bool = False,
    ) -> dict[str, int]:
        """Erase records, history, events and slots of a user, a thread or a namespace.

        Unlike ``delete`` this keeps no before-image; afterwards the tables are vacuumed so
        the dead rows' space is reclaimed and reused. ``VACUUM`` does not zero that space:
        the erased text stays in table and index pages until it is overwritten. ``compact``
        runs ``VACUUM FULL`` instead, which writes each table and its indexes anew without
        the dead rows (they are locked against reads and writes meanwhile; the HNSW graph
        is rebuilt). Copies in WAL segments, replicas and backups are outside its reach.
        """
        conds: list[str] = []
        args: list[Any] = []
        if user_id is not None:
            conds.append("user_id = %s")
            args.append(user_id)
        if thread_id is not None:
            conds.append("thread_id = %s")
            args.append(thread_id)
        if not conds and not everything:
            raise EngramError("forget needs a user_id, a thread_id or the whole namespace")
        cond = " AND ".join(["namespace = %s", *conds])
        args = [namespace, *args]
        counts: dict[str, int] = {}
        with self._write("forgetting", [namespace]) as c:
            counts["records"] = c.execute(f"DELETE FROM records WHERE {cond}", args).rowcount
            counts["history"] = c.execute(f"DELETE FROM history WHERE {cond}", args).rowcount
            counts["events"] = c.execute(f"DELETE FROM events WHERE {cond}", args).rowcount
            if user_id is None or thread_id is not None:
                slot_cond = ["namespace = %s"]
                slot_args: list[Any] = [namespace]
                if thread_id is not None:
                    slot_cond.append("thread_id = %s")
                    slot_args.append(thread_id)
                sc = " AND ".join(slot_cond)
                counts["slot_threads"] = c.execute(
                    f"DELETE FROM slot_versions WHERE {sc}", slot_args
                ).rowcount
                c.execute(f"DELETE FROM slots WHERE {sc}", slot_args)
            else:
                threads = [
                    r[0]
                    for r in c.execute(
                        "DELETE FROM slot_versions WHERE namespace = %s AND user_id = %s "
                        "RETURNING thread_id",
                        (namespace, user_id),
                    ).fetchall()
                ]
                c.execute(
                    "DELETE FROM slots WHERE namespace = %s AND thread_id = ANY(%s)",
                    (namespace, threads),
                )
                counts["slot_threads"] = len(threads)
        with self._read("reclaiming space") as c:
            if compact:
                before = self._table_bytes(c)
                c.execute(f"VACUUM FULL {', '.join(_FORGET_TABLES)}")
                counts["bytes_freed"] = max(0, before - self._table_bytes(c))
            else:
                c.execute(f"VACUUM {', '.join(_FORGET_TABLES)}")
        return counts

    @staticmethod
    def _table_bytes(c: psycopg.Connection[Any]) -> int:
        """Bytes on disk of the tables ``forget`` erases from, with their indexes and TOAST."""
        row = c.execute(
            "SELECT sum(pg_total_relation_size(t::regclass)) FROM unnest(%s::text[]) t",
            (list(_FORGET_TABLES),),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # ------------------------------------------------------------------ admin

    @retried
    def namespaces(self) -> dict[str, int]:
        """Return record counts per namespace (namespaces with only events count 0)."""
        with self._read("listing namespaces") as c:
            rows = c.execute(
                "SELECT namespace, sum(n) FROM (SELECT namespace, count(*) AS n FROM records "
                "GROUP BY namespace UNION ALL SELECT DISTINCT namespace, 0 FROM events "
                "UNION ALL SELECT DISTINCT namespace, 0 FROM slot_versions) s "
                "GROUP BY namespace ORDER BY namespace"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    @retried
    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Return counts (for one namespace, or all) and the database size."""
        with self._read("reading stats", snapshot=True) as c:

            def one(sql: str, *a: Any) -> int:
                row = c.execute(sql, a).fetchone()
                return int(row[0]) if row else 0

            if namespace is None:
                out: dict[str, Any] = {
                    "records": one("SELECT count(*) FROM records"),
                    "chunks": one("SELECT count(*) FROM chunks"),
                    "events": one("SELECT count(*) FROM events"),
                    "history": one("SELECT count(*) FROM history"),
                    "threads_with_slots": one("SELECT count(*) FROM slot_versions"),
                }
            else:
                out = {
                    "records": one("SELECT count(*) FROM records WHERE namespace = %s", namespace),
                    "events": one("SELECT count(*) FROM events WHERE namespace = %s", namespace),
                    "history": one("SELECT count(*) FROM history WHERE namespace = %s", namespace),
                    "threads_with_slots": one(
                        "SELECT count(*) FROM slot_versions WHERE namespace = %s", namespace
                    ),
                }
            out["database_bytes"] = one("SELECT pg_database_size(current_database())")
        out["backend"] = "postgres"
        out["url"] = self._where()
        out["indexed_vectors"] = out.get("chunks")
        if namespace is None and self._router is not None:
            out["replica"] = self._router.stats()
        return out

    def doctor(self, repair: bool = False) -> dict[str, Any]:
        """Check that every derived index agrees with the tables.

        Keyword rows must equal the analysis of each chunk's text, every vector must have
        the recorded dimension, every record must have a chunk, and the HNSW index must be
        valid. With ``repair`` stale keyword rows are recomputed and the HNSW index rebuilt.
        """
        problems: list[str] = []
        repaired: list[str] = []
        with self._read("checking integrity", snapshot=True) as c:
            dim_s = self._meta(c, "embedder_dim")
            chunks = self._count(c, "SELECT count(*) FROM chunks")
            stale_fts = self._count(
                c, "SELECT count(*) FROM chunks WHERE fts <> to_tsvector('engram', body)"
            )
            bad_vec = (
                self._count(
                    c,
                    "SELECT count(*) FROM chunks WHERE vector_dims(embedding) <> %s",
                    int(dim_s),
                )
                if dim_s
                else 0
            )
            orphan_records = self._count(
                c,
                "SELECT count(*) FROM records r WHERE NOT EXISTS "
                "(SELECT 1 FROM chunks c WHERE c.rid = r.rid)",
            )
            valid = {
                str(r[0])
                for r in c.execute(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indisvalid AND i.indrelid = to_regclass('chunks')"
                ).fetchall()
            }
        hnsw_ok = "chunks_hnsw" in valid
        needs_hnsw = dim_s is not None and int(dim_s) <= HNSW_MAX_DIM
        user_index = (
            COVER_INDEX if dim_s is not None and int(dim_s) <= COVER_MAX_DIM else USER_INDEX
        )
        cover_ok = user_index in valid
        if stale_fts:
            problems.append(f"{stale_fts} keyword rows disagree with their chunk text")
        if bad_vec:
            problems.append(f"{bad_vec} vectors do not have the recorded dimension {dim_s}")
        if orphan_records:
            problems.append(f"{orphan_records} records have no indexed chunk")
        if needs_hnsw and not hnsw_ok:
            problems.append("the HNSW vector index is missing or invalid")
        if not cover_ok:
            problems.append(f"the user index {user_index} is missing or invalid")
        if repair:
            if stale_fts:
                with self._write("repairing the keyword index", [""]) as c:
                    c.execute(
                        "UPDATE chunks SET fts = to_tsvector('engram', body) "
                        "WHERE fts <> to_tsvector('engram', body)"
                    )
                repaired.append("keyword rows recomputed from the chunk text")
            if (needs_hnsw and not hnsw_ok) or not cover_ok:
                with self._write("rebuilding the vector indexes", [""]) as c:
                    for statement in DROP_VECTOR_INDEXES:
                        c.execute(statement)
                    for statement in vector_index_ddl(
                        None if dim_s is None else int(dim_s),
                        self.hnsw_m,
                        self.hnsw_ef_construction,
                    ):
                        c.execute(statement)
                repaired.append("vector indexes rebuilt")
        fixable = {"keyword", "HNSW", COVER_INDEX, USER_INDEX}
        return {
            "ok": not problems or (repair and all(any(f in p for f in fixable) for p in problems)),
            "integrity_check": "ok" if not problems else "problems",
            "chunks": chunks,
            "keyword_rows": chunks - stale_fts,
            "vector_rows": chunks - bad_vec,
            "problems": problems,
            "repaired": repaired,
        }

    @staticmethod
    def _count(c: psycopg.Connection[Any], sql: str, *args: Any) -> int:
        row = c.execute(sql, args).fetchone()
        return int(row[0]) if row else 0

    def backup(self, path: Path) -> None:
        """Write a consistent online snapshot: every table ``COPY``-ed from one snapshot.

        The file is a tar archive of a JSON header (format, schema revision, row counts) and
        one ``COPY`` text stream per table, written atomically (``.partial`` then rename).
        It does not depend on ``pg_dump`` matching the server's version.
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        tmp.unlink(missing_ok=True)
        try:
            with (
                tempfile.TemporaryDirectory(prefix="engramdb-backup-") as work,
                self._read("backing up", snapshot=True) as c,
            ):
                counts: dict[str, int] = {}
                for table, cols in BACKUP_TABLES.items():
                    counts[table] = 0
                    with (
                        open(Path(work) / f"{table}.copy", "wb") as out,
                        c.cursor().copy(f"COPY (SELECT {cols} FROM {table}) TO STDOUT") as copy,
                    ):
                        for data in copy:
                            out.write(data)
                            counts[table] += bytes(data).count(b"\n")
                header = {
                    "format": BACKUP_FORMAT,
                    "version": 1,
                    "schema_revision": current_revision(c),
                    "tables": {
                        t: {"columns": cols, "rows": counts[t]} for t, cols in BACKUP_TABLES.items()
                    },
                    "embedder_dim": self._meta(c, "embedder_dim"),
                    "taken_at_us": now_us(),
                }
                (Path(work) / "header.json").write_text(json.dumps(header))
                with tarfile.open(tmp, "w") as tar:
                    tar.add(Path(work) / "header.json", arcname="header.json")
                    for table in BACKUP_TABLES:
                        tar.add(Path(work) / f"{table}.copy", arcname=f"{table}.copy")
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def restore(self, path: Path) -> None:
        """Replace the store's whole content with a backup, in one transaction."""
        path = Path(path)
        if not path.exists():
            raise NotFoundError(f"backup file {path} does not exist")
        if not tarfile.is_tarfile(path):
            raise ValidationError(f"{path} is not an engramdb PostgreSQL backup")
        with tarfile.open(path, "r") as tar:
            header = self._backup_header(tar, path)
            with self._write("restoring") as c:
                # Same store, older content: keep its identity; namespace_generations is not
                # in the backup and its store-wide row jumps past every value seen before,
                # so no cached read of the replaced content is ever served again.
                store_id = self._meta(c, "store_id")
                top = c.execute(MAX_GENERATION_SQL).fetchone()
                c.execute("TRUNCATE " + ", ".join(BACKUP_TABLES) + " RESTART IDENTITY CASCADE")
                dim = header.get("embedder_dim")
                if dim:
                    self._set_vector_dim(c, int(dim))
                for table, spec in header["tables"].items():
                    if table not in BACKUP_TABLES or spec["columns"] != BACKUP_TABLES[table]:
                        raise ValidationError(f"backup {path}: unexpected table {table!r}")
                    member = tar.extractfile(f"{table}.copy")
                    if member is None:
                        raise ValidationError(f"backup {path} lacks table {table!r}")
                    with c.cursor().copy(
                        f"COPY {table} ({BACKUP_TABLES[table]}) FROM STDIN"
                    ) as copy:
                        while data := member.read(1 << 20):
                            copy.write(data)
                for table, col in IDENTITIES.items():
                    c.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'), "
                        f"COALESCE((SELECT max({col}) FROM {table}), 0) + 1, false)"
                    )
                c.execute(
                    "UPDATE meta SET value = %s WHERE key = 'index_epoch'", (uuid.uuid4().hex,)
                )
                c.execute("UPDATE meta SET value = %s WHERE key = 'store_id'", (store_id,))
                c.execute(RESTORE_GENERATION_SQL.format(p="%s"), (int(top[0] if top else 0) + 1,))
        with self._scope_lock:
            self._scope_cache.clear()

    @staticmethod
    def _backup_header(tar: tarfile.TarFile, path: Path) -> dict[str, Any]:
        try:
            member = tar.extractfile("header.json")
            header: dict[str, Any] = json.loads(member.read()) if member else {}
        except (KeyError, json.JSONDecodeError) as exc:
            raise ValidationError(f"{path} is not an engramdb PostgreSQL backup") from exc
        if header.get("format") != BACKUP_FORMAT or header.get("version") != 1:
            raise ValidationError(f"{path} is not an engramdb PostgreSQL backup (version 1)")
        if header.get("schema_revision") != SCHEMA_HEAD:
            raise ValidationError(
                f"backup {path} has schema revision {header.get('schema_revision')!r}, "
                f"this store is at {SCHEMA_HEAD!r}"
            )
        return header

    # ------------------------------------------------------------------ export / import

    def iter_all(
        self, namespace: str | None, node: Node | None, after: tuple[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every matching record with its chunk vectors and history, for export.

        One read-only snapshot; records stream through a server-side cursor in batches.
        ``after`` (namespace, id) starts after that record: how ``migrate`` resumes.
        """
        where, params = compile_postgres(node)
        ns_sql, ns_args = ("r.namespace = %s", [namespace]) if namespace else ("TRUE", [])
        if after is not None:
            ns_sql += " AND (r.namespace, r.id) > (%s, %s)"
            ns_args = [*ns_args, *after]
        try:
            with self._connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                with conn.cursor(name="engramdb_export") as cur:
                    cur.itersize = 500
                    cur.execute(
                        f"SELECT {COLS} FROM records r WHERE {ns_sql} AND {where} "
                        "ORDER BY r.namespace, r.id",
                        (*ns_args, *params),
                    )
                    while True:
                        batch = cur.fetchmany(500)
                        if not batch:
                            break
                        yield from self._export_batch(conn, batch)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._translate(exc, "exporting") from exc

    def _export_batch(
        self, conn: psycopg.Connection[Any], batch: list[tuple[Any, ...]]
    ) -> Iterator[dict[str, Any]]:
        rids = [r[0] for r in batch]
        chunks: dict[int, list[tuple[int, int, bytes, str]]] = {}
        for rid, start, end, emb, body in conn.execute(
            "SELECT rid, start_pos, end_pos, embedding::text, body FROM chunks "
            "WHERE rid = ANY(%s) ORDER BY rid, ord",
            (rids,),
        ).fetchall():
            chunks.setdefault(rid, []).append((start, end, parse_vector(emb).tobytes(), body))
        keys = [(r[2], r[1]) for r in batch]
        hist: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for ns, rec_id, op, ver, before, after, at in conn.execute(
            "SELECT h.namespace, h.record_id, h.op, h.version, h.before, h.after, h.at "
            "FROM history h JOIN unnest(%s::text[], %s::text[]) AS k(ns, id) "
            "ON h.namespace = k.ns AND h.record_id = k.id ORDER BY h.seq",
            ([k[0] for k in keys], [k[1] for k in keys]),
        ).fetchall():
            hist.setdefault((ns, rec_id), []).append((op, ver, before, after, at))
        for row in batch:
            rec = row_to_record(row)
            yield {
                "record": rec,
                "chunks": chunks.get(row[0], []),
                "history": hist.get((rec.namespace, rec.id), []),
            }

    def iter_orphan_history(self, after_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Return history rows of records that no longer exist, in ``seq`` order."""
        with self._read("reading history") as c:
            return [
                tuple(r)
                for r in c.execute(
                    "SELECT h.seq, h.namespace, h.record_id, h.user_id, h.thread_id, h.op, "
                    "h.version, h.before, h.after, h.at FROM history h WHERE h.seq > %s AND NOT "
                    "EXISTS (SELECT 1 FROM records r WHERE r.namespace = h.namespace AND "
                    "r.id = h.record_id) ORDER BY h.seq LIMIT %s",
                    (after_seq, limit),
                ).fetchall()
            ]

    def iter_digests(self, namespace: str) -> Iterator[tuple[str, int, str]]:
        """Yield ``(id, version, content_hash)`` of a namespace's records in id order."""
        try:
            with (
                self._connection() as conn,
                conn.transaction(),
                conn.cursor(name="engramdb_digests") as cur,
            ):
                cur.itersize = 5000
                cur.execute(
                    "SELECT id, version, content_hash FROM records WHERE namespace = %s "
                    "ORDER BY id",
                    (namespace,),
                )
                for row in cur:
                    yield str(row[0]), int(row[1]), str(row[2])
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._translate(exc, "reading record digests") from exc

    def iter_events_and_slots(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Yield events and slot maps as export lines."""
        with self._read("exporting events", snapshot=True) as c:
            lines = exported_events_and_slots(
                lambda sql, args: c.execute(sql, args).fetchall(), "%s", namespace
            )
        yield from lines

    def import_records(self, batch: list[dict[str, Any]]) -> dict[str, int]:
        """Insert exported records verbatim (ids, times, versions, history) in one transaction.

        An id that already exists with the same text and version counts as unchanged; with
        anything else it counts as a conflict and is left as it is.
        """
        counts = {"written": 0, "unchanged": 0, "conflicts": 0}
        with self._write("importing records", [""]) as c, c.cursor() as cur:
            for r in batch:
                row = c.execute(
                    _IMPORT_RECORD + " RETURNING rid", (*record_values(r), r["metadata"])
                ).fetchone()
                if row is None:
                    counts[present_outcome(self._select_one(c, r["namespace"], r["id"]), r)] += 1
                    continue
                self._insert_chunk_rows(
                    c,
                    [
                        (row[0], r["namespace"], r["user_id"], o, s, e, body, vector_text(vec))
                        for o, (s, e, body, vec) in enumerate(r["chunks"])
                    ],
                )
                if r["history"]:
                    cur.executemany(_INSERT_HISTORY, history_rows(r))
                counts["written"] += 1
        return counts

    def import_events_and_slots(self, lines: list[dict[str, Any]]) -> tuple[int, int]:
        """Insert exported events (idempotent by id) and slot maps; return their counts."""
        with self._write("importing events", [""]) as c, c.cursor() as cur:
            return import_events_and_slots(lines, c.execute, cur.executemany, "%s")

    # ------------------------------------------------------------------ bulk load (migrate)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold a session advisory lock named ``name`` (per schema) for the ``with`` body.

        A dedicated connection (outside the pool) holds it, so the lock ends with the
        process even on kill -9; a second holder waits until the first is done.
        """
        try:
            conn = psycopg.connect(self.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise self._translate(exc, f"taking the {name} lock") from exc
        try:
            conn.execute(
                "SELECT pg_advisory_lock(hashtext(%s || current_schema())::bigint)",
                (f"engramdb:{name}:",),
            )
            yield
        finally:
            conn.close()  # ends the session: the lock goes with it

    @retried
    def existing_digests(self, namespace: str, ids: list[str]) -> dict[str, tuple[int, str]]:
        """Map each of ``ids`` already stored in ``namespace`` to its (version, content hash)."""
        with self._read("comparing records") as c:
            rows = c.execute(
                "SELECT id, version, content_hash FROM records WHERE namespace = %s "
                "AND id = ANY(%s)",
                (namespace, ids),
            ).fetchall()
        return {str(r[0]): (int(r[1]), str(r[2])) for r in rows}

    @retried
    def read_meta(self, key: str) -> str | None:
        """Return one ``meta`` value (None when unset)."""
        with self._read("reading metadata") as c:
            return self._meta(c, key)

    @retried
    def write_meta(self, key: str, value: str | None) -> None:
        """Set (or, with None, remove) one ``meta`` value."""
        with self._write("writing metadata") as c:
            self._put_meta(c, key, value)

    @retried
    def settle_checkpoints(self) -> None:
        """Wait until every write carrying a resume checkpoint has committed or rolled back.

        Why: a run killed while a batch's COMMIT was on its way leaves a transaction the
        server still commits, a moment after the client is gone. A resumed run that read
        its checkpoints before that commit would copy the batch again (measured: the kill
        test failed so under load, the second loader being mid-COMMIT when the first one's
        commit became visible). Checkpointing writes hold :data:`CHECKPOINT_FENCE_SQL`
        shared; taking it exclusively here waits them out. A dead client's transaction
        that has not sent COMMIT is rolled back when its server process sees the
        connection closed.
        """
        with self._read("waiting for checkpointing writes") as c:
            c.execute(CHECKPOINT_FENCE_SQL.format(mode=""))

    @retried
    def read_meta_prefix(self, prefix: str) -> dict[str, str]:
        """Every ``meta`` value whose key starts with ``prefix`` (a migration's batch log)."""
        with self._read("reading metadata") as c:
            rows = c.execute(
                "SELECT key, value FROM meta WHERE starts_with(key, %s)", (prefix,)
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    @retried
    def delete_meta_prefix(self, prefix: str) -> int:
        """Remove every ``meta`` value whose key starts with ``prefix``; return how many."""
        with self._write("writing metadata") as c:
            cur = c.execute("DELETE FROM meta WHERE starts_with(key, %s)", (prefix,))
            return cur.rowcount

    @property
    def pool_max(self) -> int:
        """The most pooled connections this store opens (concurrent loaders stay within)."""
        return self._pool_args[1]

    @staticmethod
    def _put_meta(c: psycopg.Connection[Any], key: str, value: str | None) -> None:
        if value is None:
            c.execute("DELETE FROM meta WHERE key = %s", (key,))
        else:
            c.execute(
                "INSERT INTO meta(key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def load_records(
        self, batch: list[dict[str, Any]], meta: dict[str, str | None] | None = None
    ) -> dict[str, int]:
        """Bulk-insert exported records through COPY, and ``meta`` values, in one transaction.

        The batch has :meth:`import_records`' shape (history ``before``/``after`` may be the
        JSON text itself, kept verbatim). Records stream into ``records`` with COPY; chunks
        go through a session-local staging table (COPY) and one ``INSERT … SELECT`` that
        computes each chunk's tsvector and joins the new row ids; history rows are copied
        as they are. ``meta`` rides in the same transaction so a caller's checkpoint commits
        exactly with the rows it covers (resume never duplicates).

        Ids already present with the same version and content hash count as unchanged.

        Raises:
            ConflictError: an id is present with another version or text, or another id
                holds the same text in the same scope (nothing of the batch is written).
        """
        counts = {"written": 0, "unchanged": 0}
        by_ns: dict[str, list[dict[str, Any]]] = {}
        for r in batch:
            by_ns.setdefault(r["namespace"], []).append(r)
        # Cached searches of these namespaces must not outlive the load (cache tier).
        with self._write("bulk-loading records", bump=list(by_ns)) as c:
            if meta:
                c.execute(CHECKPOINT_FENCE_SQL.format(mode="_shared"))
            fresh: list[dict[str, Any]] = []
            for ns, items in by_ns.items():
                have = {
                    str(row[0]): (int(row[1]), str(row[2]))
                    for row in c.execute(
                        "SELECT id, version, content_hash FROM records WHERE namespace = %s "
                        "AND id = ANY(%s)",
                        (ns, [r["id"] for r in items]),
                    ).fetchall()
                }
                for r in items:
                    old = have.get(r["id"])
                    if old is None:
                        fresh.append(r)
                    elif old == (int(r["version"]), r["content_hash"]):
                        counts["unchanged"] += 1
                    else:
                        raise ConflictError(
                            f"the target already holds record {r['id']!r} of namespace "
                            f"{ns!r} with different data (version {old[0]}, content hash "
                            f"{old[1][:12]}…; the source has version {r['version']}, "
                            f"{r['content_hash'][:12]}…)",
                            id=r["id"],
                            namespace=ns,
                        )
            if fresh:
                try:
                    self._copy_records(c, fresh)
                except pgerr.UniqueViolation as exc:
                    raise ConflictError(
                        "the target already holds a record with the same text and scope under "
                        f"another id: {str(exc).strip()}"
                    ) from exc
            counts["written"] = len(fresh)
            for key, value in (meta or {}).items():
                self._put_meta(c, key, value)
        return counts

    def load_history(
        self, rows: list[tuple[Any, ...]], meta: dict[str, str | None] | None = None
    ) -> int:
        """Copy history rows (``iter_orphan_history``'s shape, seq ignored) and ``meta``
        values in one transaction; return how many were new.

        A row already present (same namespace, record, op, version and time) is skipped,
        so copying the same rows twice leaves one of each.
        """
        with (
            self._write("bulk-loading history", bump={r[1] for r in rows}) as c,
            c.cursor() as cur,
        ):
            if meta:
                cur.execute(CHECKPOINT_FENCE_SQL.format(mode="_shared"))
            cur.execute(
                'CREATE TEMP TABLE IF NOT EXISTS engram_load_history (namespace text COLLATE "C", '
                'record_id text COLLATE "C", user_id text COLLATE "C", thread_id text '
                'COLLATE "C", op text, version int, before text, after text, at bigint) '
                "ON COMMIT DELETE ROWS"
            )
            with cur.copy(
                "COPY engram_load_history(namespace, record_id, user_id, thread_id, op, version, "
                "before, after, at) FROM STDIN"
            ) as cp:
                for r in rows:
                    cp.write_row(r[1:10])
            cur.execute(
                "INSERT INTO history(namespace, record_id, user_id, thread_id, op, version, "
                "before, after, at) SELECT s.* FROM engram_load_history s WHERE NOT EXISTS "
                "(SELECT 1 FROM history h WHERE h.namespace = s.namespace AND h.record_id = "
                "s.record_id AND h.op = s.op AND h.version = s.version AND h.at = s.at)"
            )
            added = cur.rowcount
            for key, value in (meta or {}).items():
                self._put_meta(c, key, value)
        return max(added, 0)

    def _copy_records(self, c: psycopg.Connection[Any], batch: list[dict[str, Any]]) -> None:
        """COPY a batch of exported records, their chunks and their history.

        Chunks are staged in binary COPY form (vectors as pgvector's binary floats; as text
        they cost ~0.1 ms per row to format here and again to parse on the server).
        """
        self._send_vectors_binary(c)
        with c.cursor() as cur:
            with cur.copy(_COPY_RECORDS) as cp:
                for r in batch:
                    cp.write_row((*record_values(r), r["metadata"]))
            # Temporary and emptied at commit: the staging area of this session only.
            cur.execute(
                'CREATE TEMP TABLE IF NOT EXISTS engram_load_chunks (namespace text COLLATE "C", '
                'id text COLLATE "C", ord int, start_pos int, end_pos int, body text, '
                "embedding vector) ON COMMIT DELETE ROWS"
            )
            with cur.copy(
                "COPY engram_load_chunks(namespace, id, ord, start_pos, end_pos, body, "
                "embedding) FROM STDIN (FORMAT BINARY)"
            ) as cp:
                cp.set_types(["text", "text", "int4", "int4", "int4", "text", "vector"])
                for r in batch:
                    for o, (s, e, body, vec) in enumerate(r["chunks"]):
                        cp.write_row((r["namespace"], r["id"], o, s, e, body, _Vector(vec)))
            cur.execute(
                "INSERT INTO chunks(rid, namespace, user_id, ord, start_pos, end_pos, body, fts, "
                "embedding) SELECT r.rid, s.namespace, r.user_id, s.ord, s.start_pos, s.end_pos, "
                "s.body, to_tsvector('engram', s.body), s.embedding FROM engram_load_chunks s "
                "JOIN records r ON r.namespace = s.namespace AND r.id = s.id "
                "ORDER BY r.rid, s.ord"
            )
            with cur.copy(f"COPY history({', '.join(HISTORY_COLUMNS)}) FROM STDIN") as cp:
                for r in batch:
                    for row in history_rows(r):
                        cp.write_row(row)

    def vector_index_exists(self) -> bool:
        """Whether the HNSW index on ``chunks.embedding`` exists."""
        with self._read("checking the vector index") as c:
            row = c.execute("SELECT to_regclass('chunks_hnsw') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def drop_vector_index(self) -> None:
        """Drop the vector indexes before a bulk load into an empty store (rebuilt after)."""
        with self._write("dropping the vector indexes") as c:
            for statement in DROP_VECTOR_INDEXES:
                c.execute(statement)

    def build_vector_index(self, maintenance_work_mem: str = "512MB") -> None:
        """(Re)build the vector indexes in one pass over the loaded rows, then ANALYZE.

        Building once after a bulk load is several times faster than maintaining the graph
        row by row; ``maintenance_work_mem`` is raised for this transaction only, so the
        graph is built in memory (pgvector warns and slows down when it does not fit).
        The covering user index (:data:`COVER_MAX_DIM`) takes ~1 s per 100k chunks.
        """
        if not re.fullmatch(r"[0-9]{1,6}(kB|MB|GB)", maintenance_work_mem):
            raise ValidationError(
                f"maintenance_work_mem {maintenance_work_mem!r} is not like '512MB'",
                field="maintenance_work_mem",
            )
        with self._write("building the vector indexes") as c:
            dim = self._meta(c, "embedder_dim")
            c.execute(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
            for statement in DROP_VECTOR_INDEXES:
                c.execute(statement)
            for statement in vector_index_ddl(
                None if dim is None else int(dim), self.hnsw_m, self.hnsw_ef_construction
            ):
                c.execute(statement)
        with self._write("analyzing tables") as c:
            c.execute("ANALYZE records, chunks, history, events, slot_versions")

    # ------------------------------------------------------------------ re-embedding

    def reembed_begin(self, target: str) -> None:
        """Start (or resume) a re-embedding towards ``target``; a new target starts over."""
        with self._write("starting re-embedding") as c:
            if self._meta(c, "reembed_target") != target:
                c.execute("DELETE FROM reembed_vectors")
                c.execute(
                    "INSERT INTO meta(key, value) VALUES ('reembed_target', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (target,),
                )

    @retried
    def reembed_pending(self, limit: int) -> list[tuple[int, str]]:
        """Return up to ``limit`` chunks without a new vector yet: (chunk id, chunk text)."""
        with self._read("listing chunks to re-embed") as c:
            rows = c.execute(
                "SELECT c.id, substr(r.text, c.start_pos + 1, c.end_pos - c.start_pos) "
                "FROM chunks c JOIN records r ON r.rid = c.rid "
                "LEFT JOIN reembed_vectors n ON n.chunk_id = c.id "
                "WHERE n.chunk_id IS NULL ORDER BY c.id LIMIT %s",
                (limit,),
            ).fetchall()
        return [(int(r[0]), r[1]) for r in rows]

    def reembed_put(self, rows: list[tuple[int, np.ndarray]]) -> None:
        """Store new vectors for chunks (committed, so an interrupted run resumes here)."""
        with self._write("storing re-embedded vectors") as c, c.cursor() as cur:
            cur.executemany(
                "INSERT INTO reembed_vectors(chunk_id, vector) VALUES (%s, %s::vector) "
                "ON CONFLICT (chunk_id) DO UPDATE SET vector = excluded.vector",
                [(cid, vector_text(vec)) for cid, vec in rows],
            )

    def reembed_finish(self, name: str, dim: int, embed: Callable[[list[str]], np.ndarray]) -> None:
        """Switch every chunk to its new vector and the store to the new embedder, atomically.

        The vector column loses its dimension for the switch and gets the new one after it;
        the HNSW index is rebuilt in the same transaction.
        """
        with self._write("switching embedder", [""]) as c:
            late = c.execute(
                "SELECT c.id, substr(r.text, c.start_pos + 1, c.end_pos - c.start_pos) "
                "FROM chunks c JOIN records r ON r.rid = c.rid "
                "LEFT JOIN reembed_vectors n ON n.chunk_id = c.id WHERE n.chunk_id IS NULL"
            ).fetchall()
            if late:
                vecs = embed([t for _, t in late])
                with c.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO reembed_vectors(chunk_id, vector) VALUES (%s, %s::vector)",
                        [(cid, vector_text(v)) for (cid, _), v in zip(late, vecs, strict=True)],
                    )
            for statement in DROP_VECTOR_INDEXES:
                c.execute(statement)
            c.execute("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector")
            c.execute(
                "UPDATE chunks SET embedding = n.vector FROM reembed_vectors n "
                "WHERE n.chunk_id = chunks.id"
            )
            self._set_vector_dim(c, int(dim))
            for key, value in (
                ("embedder_name", name),
                ("embedder_dim", str(dim)),
                ("index_epoch", uuid.uuid4().hex),
            ):
                c.execute(
                    "INSERT INTO meta(key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value",
                    (key, value),
                )
            c.execute("DELETE FROM reembed_vectors")
            c.execute("DELETE FROM meta WHERE key = 'reembed_target'")

    def close(self) -> None:
        """Close this process's pool (an inherited one is abandoned, never closed)."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() == self._pid:
            with suppress(Exception):
                self._pool.close()
            if self._rpool is not None:
                with suppress(Exception):
                    self._rpool.close()
