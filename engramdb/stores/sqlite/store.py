"""The embedded store: one SQLite file in WAL mode, plus a derived in-process vector index.

Concurrency (datasette's pattern): one writer connection per process behind a lock, every
write in ``BEGIN IMMEDIATE`` with a busy timeout, read-only reader connections per thread.
Several processes may share one file. After ``fork`` the child opens new connections (the
inherited ones are abandoned, never used or closed, as SQLite requires).

Everything a write touches (record, chunks with vectors, keyword index rows, history, events)
is one transaction; the vector index is derived and caught up from the tables on the next
read, so writes from other processes are visible to this process's next search.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engramdb.errors import (
    BusyError,
    ConflictError,
    EmbedderMismatchError,
    EngramError,
    NotFoundError,
    SchemaTooNewError,
    StoreError,
)
from engramdb.migrations import SCHEMA_HEAD, SCHEMA_REVISIONS
from engramdb.models import AddResult, Event, HistoryEntry, MemoryRecord, Slots
from engramdb.query.filters import (
    Node,
    is_live_only,
    live_now,
    required_equalities,
    required_leaves,
    required_tags,
    top_level_key,
)
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
    existing_id_outcome,
    history_entry,
    inserted_record,
    record_params,
    row_to_record,
    scalar_set_clauses,
    write_slot_values,
)
from engramdb.stores.sqlite.ann import SEARCH_K
from engramdb.stores.sqlite.checkpoint import Checkpointer
from engramdb.stores.sqlite.filters import compile_sqlite
from engramdb.stores.sqlite.schema import current_revision, ensure_schema, upgrade
from engramdb.stores.sqlite.vector_index import VectorIndex
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

COLS = RECORD_SELECT.format(meta="metadata")
WAL_LIMIT = 64 * 1024 * 1024  # bytes of -wal before a TRUNCATE checkpoint is forced
# A list page filtered to a tag sorts the tag's records when there are at most this many
# (1,100 in ~2 ms); a commoner tag turns up soon enough walking the namespace in id order.
LIST_TAG_GATE = 2000
# Other filtered reads (count, delete, a search's candidates) start from the tag index
# when at most this many records carry the tag: its rowid lookups beat testing every record
# of the namespace until the tag covers a good share of it (count at 100k records: 0.03 ms
# for an absent tag, 1.1 ms for 1,100 records, 53 ms for 50,000 against 30 ms walking).
TAG_GATE = 20000
_JOIN_CHUNKS = "JOIN chunks c ON c.rid = r.rid"
_TAG_ROWS_UPTO = (
    "SELECT count(*) FROM (SELECT 1 FROM record_tags WHERE namespace = ? AND tag = ? LIMIT ?)"
)
_META_ROWS_UPTO = (
    "SELECT count(*) FROM (SELECT 1 FROM record_meta WHERE namespace = ? AND key = ? "
    "AND value = ? LIMIT ?)"
)
KEYWORD_PROBE = 400  # keyword matches ranked before their records are read (unscoped search)
# Page size of a new file. A chunk row (a 384-d vector is 1.5 KB) fills 4 KB pages badly
# (two rows a page, 0.9 KB left over) and every page a batch touches is written to the WAL
# and fsynced at commit. Batch ingest of the benchmark's records (40k, batches of 1,000,
# synchronous=FULL): 4 KB pages 10.4-10.7k rec/s and a 125 MB file; 8 KB 12.5-12.7k and
# 107 MB; 16 KB 13.2k; 32 KB 12.5k. 8 KB keeps single-row reads small.
PAGE_SIZE = 8192
# Set on every writing connection, because SQLite's built-in default depends on how it was
# compiled. Debian's build has it on, and then every page freed in a write is zeroed and
# written to the WAL; in bulk ingest that was ~8% of a batch's WAL frames, mostly FTS5
# segment pages freed by its merges. FAST zeroes deleted content only in pages a write
# changes anyway. ``forget`` turns it fully on for its own transaction (nothing it erased
# may stay in a free page).
_SECURE_DELETE = "FAST"
BUMP_GENERATION = BUMP_GENERATION_SQL.format(p="?")
_DEDUP_LOOKUP = f"SELECT {COLS} FROM records r WHERE namespace = ? AND dedup = ?"
_STALE_DEDUP = "dedup IS NOT engram_dedup(user_id, agent_id, thread_id, type, content_hash)"
# What record_tags must hold (migration 0008's triggers keep it so), and how many of its
# rows are missing or extra.
_TAG_ROWS = (
    "SELECT DISTINCT r.namespace, j.value, r.rid FROM records r, json_each(r.tags) j "
    "WHERE r.tags <> '[]'"
)
# The metadata values record_meta indexes (migration 0010): top-level numbers, and strings
# of at most META_INDEX_MAX_CHARS characters (the same test in SQL and in Python).
META_INDEX_MAX_CHARS = 200
_META_INDEXED = (
    "({j}type IN ('integer', 'real') OR "
    f"({{j}}type = 'text' AND length({{j}}value) <= {META_INDEX_MAX_CHARS}))"
)
_META_ROWS = (
    "SELECT r.namespace, j.key, j.value, r.rid FROM records r, json_each(r.metadata) j "
    f"WHERE r.metadata <> '{{}}' AND {_META_INDEXED.format(j='j.')}"
)
# The derived value indexes doctor checks and rebuilds: (what, table, its columns, the
# rows the records say it must hold).
_VALUE_INDEXES = (
    ("tag", "record_tags", "namespace, tag, rid", _TAG_ROWS),
    ("metadata", "record_meta", "namespace, key, value, rid", _META_ROWS),
)


def _stale_rows_sql(table: str, cols: str, rows: str) -> str:
    """How many rows of ``table`` are missing or extra against ``rows``."""
    return (
        f"SELECT (SELECT count(*) FROM ({rows} EXCEPT SELECT {cols} FROM {table})) + "
        f"(SELECT count(*) FROM (SELECT {cols} FROM {table} EXCEPT {rows}))"
    )


# Keyword rows whose scope token disagrees with their record (see scope_token).
_STALE_SCOPE = (
    "SELECT f.rowid FROM chunks_fts f JOIN chunks c ON c.id = f.rowid "
    "JOIN records r ON r.rid = c.rid "
    "WHERE f.scope IS NOT engram_scope(r.namespace, r.user_id, r.thread_id)"
)
_abandoned: list[sqlite3.Connection] = []  # connections inherited across fork: never touched


_INSERT_RECORD = (
    "INSERT INTO records(id, namespace, user_id, agent_id, thread_id, type, text, "
    "content_hash, metadata, tags, source, importance, occurred_at, created_at, "
    "updated_at, valid_from, valid_to, expires_at, version, event_id, dedup) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1,?,?) ON CONFLICT DO NOTHING"
)


def dedup_digest(user_id: str, agent_id: str, thread_id: str, type_: str, chash: str) -> bytes:
    """The 16-byte key of the dedup index: what makes two records "the same" (scope, type,
    normalised text), hashed.

    The unique index ``records_dedup`` is on ``(namespace, dedup)`` instead of the six
    columns (migration 0006): its entries shrink from ~110 to ~35 bytes, and an index in
    random order dirties one page per insert until every page is dirty, so a batch of 1,000
    into a 100k-record file wrote 805 of its pages to the WAL before, ~400 after. The fields
    are joined with U+001F, which none of them can contain (scopes and types refuse control
    characters; the content hash is hex). Registered as the SQL function ``engram_dedup``
    on every connection, for ``doctor`` and migration 0006 (which keeps its own copy).
    """
    key = "\x1f".join((user_id, agent_id, thread_id, type_, chash)).encode("utf-8")
    return hashlib.blake2b(key, digest_size=16).digest()


def scope_token(namespace: str, field: str, value: str) -> str:
    """The keyword-index token naming one scope of a chunk: ``q`` + 16 hex digits + ``q``.

    ``field`` is ``user_id`` or ``thread_id``. The tokens sit in the ``scope`` column of
    ``chunks_fts`` (migration 0007), and a keyword search whose filter requires a user or a
    thread ANDs the token into its MATCH, so FTS5 intersects the query's words with that
    scope's short list instead of ranking every match in the file and dropping the rest
    afterwards (at 100k records: 50 ms -> 2-8 ms per user-scoped keyword search). The ``q``
    ends keep the Porter stemmer off it; a collision (2^-64) would only add candidates,
    which the search's filter still removes.
    """
    key = f"{field}\x1f{namespace}\x1f{value}".encode()
    return "q" + hashlib.blake2b(key, digest_size=8).hexdigest() + "q"


def scope_text(namespace: str, user_id: str, thread_id: str) -> str:
    """The ``scope`` column of a chunk: its user's token, and its thread's when it has one.

    Registered as the SQL function ``engram_scope`` on every connection, for ``doctor``
    (migration 0007 keeps its own copy).
    """
    user = scope_token(namespace, "user_id", user_id)
    return f"{user} {scope_token(namespace, 'thread_id', thread_id)}" if thread_id else user


SCOPE_FIELDS = frozenset({"user_id", "thread_id"})
# The keyword weights of chunks_fts's columns: a match on a scope token adds nothing to a
# score (FTS5 still counts the tokens in a row's length, which BM25 normalises by).
_BM25 = "bm25(chunks_fts, 1.0, 0.0)"
_INSERT_FTS = "INSERT INTO chunks_fts(rowid, body, scope) VALUES (?, ?, ?)"
# An imported record keeps its id, times and version; SQLite adds its dedup key.
_IMPORT_RECORD = insert_sql("records", (*RECORD_COLUMNS, "dedup"), "?", "ON CONFLICT DO NOTHING")
_INSERT_HISTORY = insert_sql("history", HISTORY_COLUMNS, "?")
_HISTORY_SQL = HISTORY_SQL.format(p="?")


def _passing_rids(
    c: sqlite3.Connection, namespace: str, chunk_ids: list[int], node: Node | None
) -> dict[int, int]:
    """Map each given chunk whose record passes the filter to its record's rowid.

    CROSS JOIN pins the join order, the given chunks first (by rowid): with a plain JOIN
    the planner may walk every record of the namespace (seconds at 100k rows).
    """
    where, params = compile_sqlite(node)
    rows = c.execute(
        "SELECT c.id, c.rid FROM chunks c CROSS JOIN records r ON r.rid = c.rid WHERE c.id IN "
        f"(SELECT value FROM json_each(?)) AND r.namespace = ? AND {where}",
        (json.dumps(chunk_ids), namespace, *params),
    ).fetchall()
    return dict(rows)


def _dedup_of(it: PreparedRecord) -> bytes:
    """The dedup key of a prepared record."""
    return dedup_digest(it.user_id, it.agent_id, it.thread_id, it.type, it.content_hash)


@dataclass(frozen=True, slots=True)
class _Members:
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


def _indexed_values(node: Node | None) -> list[_Members]:
    """The tags and indexed metadata values every match of the filter must have."""
    found = [_Members((tag,)) for tag in sorted(required_tags(node))]
    for leaf in required_leaves(node):
        if leaf.kind != "meta" or leaf.op != "$eq":
            continue
        key, v = top_level_key(leaf.field), leaf.value
        number = isinstance(v, int | float) and not isinstance(v, bool)
        if key is not None and (number or (isinstance(v, str) and len(v) <= META_INDEX_MAX_CHARS)):
            found.append(_Members((key, v)))
    return found


def _rare_values(
    c: sqlite3.Connection, namespace: str, node: Node | None, most: int | None = None
) -> _Members | None:
    """The rarest tag or metadata value the filter requires, when at most ``most``
    (default ``TAG_GATE``) records have it and the filter names no user or thread; None
    otherwise.

    Reads that find one start from its index (``r.rid IN`` its records, with ``NOT
    INDEXED`` on ``r`` so that the planner can only look those rowids up): left to itself
    the planner reads the namespace's index and tests each record (30-46 ms at 100k records
    for a tag nobody has; ~146 ms for a search on a metadata value). A commoner value is left
    to that walk, which meets it soon enough (and ranks or counts no worse), and a user's or
    thread's index, already a narrow range, leads when the filter names one. Counting stops
    at ``most + 1`` rows of the index.
    """
    candidates = _indexed_values(node)
    if not candidates or required_equalities(node, SCOPE_FIELDS):
        return None
    most = TAG_GATE if most is None else most
    sizes = [(m.size_upto(c, namespace, most + 1), i) for i, m in enumerate(candidates)]
    size, i = min(sizes)
    return candidates[i] if size <= most else None


def _gated_select(
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
    records have (see _rare_values); otherwise ``hint`` (an ``INDEXED BY``) goes after
    ``r``."""
    return _select_over(cols, namespace, node, _rare_values(c, namespace, node, most), join, hint)


def _select_over(
    cols: str,
    namespace: str,
    node: Node | None,
    members: _Members | None,
    join: str = "",
    hint: str = "",
) -> tuple[str, list[Any]]:
    """The SQL of :func:`_gated_select` for members already chosen (or None)."""
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


def _index_values(c: sqlite3.Connection, ns: str, records: list[tuple[int, str, str]]) -> None:
    """Add new records' tags to ``record_tags`` and their top-level metadata strings and
    numbers to ``record_meta`` (``records``: rowid, JSON tags, JSON metadata).

    Inserts write these rows here; updates and deletes are followed by the triggers of
    migrations 0008 and 0010. An AFTER INSERT trigger would do it too, but a table with one
    makes SQLite keep a statement journal for every row inserted (batch ingest 18.9k ->
    12.9k records/s, though no record had a tag).
    """
    tagged = [(ns, rid, tags) for rid, tags, _ in records if tags != "[]"]
    if tagged:
        c.executemany(
            "INSERT INTO record_tags(namespace, tag, rid) SELECT DISTINCT ?1, value, ?2 "
            "FROM json_each(?3)",
            tagged,
        )
    described = [(ns, rid, meta) for rid, _, meta in records if meta != "{}"]
    if described:
        c.executemany(
            "INSERT OR IGNORE INTO record_meta(namespace, key, value, rid) "
            f"SELECT ?1, key, value, ?2 FROM json_each(?3) WHERE {_META_INDEXED.format(j='')}",
            described,
        )


def _record_row(ns: str, it: PreparedRecord, now: int) -> tuple[Any, ...]:
    """The values of :data:`_INSERT_RECORD` for one prepared record."""
    return (*record_params(ns, it, now), _dedup_of(it))


def _vector_bytes(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, np.float32).tobytes()


class SQLiteStore:
    """The embedded default store (see module docstring)."""

    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        auto_migrate: bool = True,
        ann_min_rows: int = 20_000,
        ann_min_user_rows: int = 5_000,
        ann_connectivity: int = 16,
        ann_ef_search: int = 96,
        ann_ef_add: int = 128,
        namespace_max_records: int = 0,
    ) -> None:
        self._temp_dir: str | None = None
        self.namespace_max_records = int(namespace_max_records)
        self._ann = (ann_min_rows, ann_min_user_rows, ann_connectivity, ann_ef_search, ann_ef_add)
        if str(path) == ":memory:":
            self._temp_dir = tempfile.mkdtemp(prefix="engramdb-mem-")
            path = Path(self._temp_dir) / "engram.db"
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._wlock = threading.RLock()
        self._local = threading.local()
        self._pid = os.getpid()
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._index: VectorIndex | None = None
        self._index_lock = threading.Lock()
        self._sidecar = self.path.with_name(self.path.name + ".vindex")
        self._wal_path = self.path.with_name(self.path.name + "-wal")
        self._checkpointer = self._new_checkpointer()
        try:
            conn = self._writer_conn()
            ensure_schema(self.path, conn, auto_migrate)
            self._init_meta()
        except sqlite3.Error as exc:
            raise self._translate(exc, "opening the store") from exc

    # ------------------------------------------------------------------ connections

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self.path),
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        if not readonly:
            # Takes effect only on a new, empty file (before WAL mode); an existing file
            # keeps the page size it was made with.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA secure_delete = {_SECURE_DELETE}")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.synchronous == 'FULL' else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -32000")
        conn.create_function("engram_dedup", 5, dedup_digest, deterministic=True)
        conn.create_function("engram_scope", 3, scope_text, deterministic=True)
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        return conn

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            # Inherited connections must not be used or closed in the child.
            if self._writer is not None:
                _abandoned.append(self._writer)
            _abandoned.extend(self._readers)
            self._writer = None
            self._readers = []
            self._local = threading.local()
            self._wlock = threading.RLock()
            self._pid = os.getpid()
            # The parent's index may be mid-change under a lock no thread here will release,
            # and its ANN worker thread does not exist here: reload from the sidecar.
            self._index = None
            self._index_lock = threading.Lock()
            self._checkpointer = self._new_checkpointer()

    def _new_checkpointer(self) -> Checkpointer:
        """This process's checkpointer (a forked child makes its own), on its own connection."""
        return Checkpointer(lambda: self._connect(readonly=False))

    def _writer_conn(self) -> sqlite3.Connection:
        self._check_fork()
        if self._closed:
            raise StoreError("the store is closed")
        if self._writer is None:
            self._writer = self._connect(readonly=False)
            # Checkpoints run on the checkpointer's thread, not inside commits.
            self._writer.execute("PRAGMA wal_autocheckpoint = 0")
        return self._writer

    def _reader(self) -> sqlite3.Connection:
        self._check_fork()
        if self._closed:
            raise StoreError("the store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _discard_writer(self) -> None:
        # After an I/O error never retry on the same handle (fsyncgate): reopen next time.
        if self._writer is not None:
            try:
                self._writer.close()
            except sqlite3.Error:
                _abandoned.append(self._writer)
            self._writer = None

    @staticmethod
    def _translate(exc: sqlite3.Error, doing: str) -> EngramError:
        msg = str(exc)
        if "locked" in msg or "busy" in msg:
            return BusyError(f"database is busy while {doing}: {msg}")
        return StoreError(f"storage failed while {doing}: {msg}")

    @contextmanager
    def _write(self, doing: str, bump: Iterable[str] = ()) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any error.

        ``bump``: namespaces whose write generation (``generation``) rises in the same
        transaction, just before COMMIT (``''`` is the store-wide generation); the cache tier
        never serves an entry tagged with an older generation.
        """
        with self._wlock:
            try:
                conn = self._writer_conn()
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self._discard_writer()
                raise self._translate(exc, doing) from exc
            try:
                yield conn
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    self._discard_writer()
                if isinstance(exc, sqlite3.Error):
                    self._discard_writer()
                    raise self._translate(exc, doing) from exc
                raise
            try:
                if bump:
                    conn.executemany(BUMP_GENERATION, [(ns,) for ns in sorted(set(bump))])
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                self._discard_writer()
                raise self._translate(exc, doing) from exc
            self._checkpointer.kick()
            self._bound_wal(conn)

    def _bound_wal(self, conn: sqlite3.Connection) -> None:
        """Truncate the WAL once it passes WAL_LIMIT (a long reader can starve checkpoints).

        SQLite's automatic checkpoint is PASSIVE and cannot reset the log while a reader holds
        an old snapshot; our own reads are short transactions, so a TRUNCATE checkpoint after
        a commit usually succeeds and keeps ``-wal`` bounded. Failure here is not an error:
        the commit is already durable.
        """
        try:
            size = os.stat(self._wal_path).st_size
        except OSError:
            return
        if size > WAL_LIMIT:
            with suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def _read(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot on this thread's reader connection."""
        conn = self._reader()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._translate(exc, doing) from exc

    def _query(self, doing: str, sql: str, args: tuple[Any, ...]) -> list[Any]:
        """Run one SELECT on this thread's reader connection and return its rows.

        One statement is its own snapshot in autocommit mode, so the BEGIN/COMMIT of
        :meth:`_read` (two more calls per read, on every search) is only for several.
        """
        try:
            return self._reader().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._translate(exc, doing) from exc

    # ------------------------------------------------------------------ meta

    def _init_meta(self) -> None:
        with self._write("initialising metadata") as c:
            c.execute(
                "INSERT INTO meta(key, value) VALUES ('index_epoch', ?) ON CONFLICT DO NOTHING",
                (uuid.uuid4().hex,),
            )
            c.execute(
                "INSERT INTO meta(key, value) VALUES ('store_id', ?) ON CONFLICT DO NOTHING",
                (uuid.uuid4().hex,),
            )

    def _meta(self, conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def embedder_info(self) -> tuple[str, int] | None:
        """Return the (name, dim) recorded in the store, if any."""
        with self._read("reading the embedder") as c:
            name, dim = self._meta(c, "embedder_name"), self._meta(c, "embedder_dim")
        return None if name is None or dim is None else (name, int(dim))

    def check_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first use; refuse a different one (invariant 7)."""
        info = self.embedder_info()
        if info is None:
            with self._write("recording the embedder") as c:
                c.execute(
                    "INSERT INTO meta(key, value) VALUES ('embedder_name', ?), ('embedder_dim', ?)"
                    " ON CONFLICT DO NOTHING",
                    (name, str(dim)),
                )
            info = self.embedder_info()
        if info != (name, dim):
            raise EmbedderMismatchError(
                f"{self.path} was built with embedder {info[0]!r} (dim {info[1]}), "  # type: ignore[index]
                f"not {name!r} (dim {dim}); open it with that embedder or run `engramdb reembed`",
                stored_name=info[0] if info else None,
                stored_dim=info[1] if info else None,
                name=name,
                dim=dim,
            )

    # ------------------------------------------------------------------ writes

    def add_records(
        self,
        namespace: str,
        items: list[PreparedRecord],
        on_error: OnError,
        events: list[PreparedEvent] | None = None,
    ) -> list[AddResult]:
        """Insert records (and events) in one transaction, deduplicating in the database.

        With ``on_error="abort"`` the first failing item rolls back everything and its error
        is raised (with ``details['index']``); with ``"skip"`` each item runs in a savepoint
        and a failing one is reported as rejected while the others commit.
        """
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
                    c.execute("SAVEPOINT item")
                try:
                    results.append(self._insert_one(c, namespace, item, now, i))
                except ConflictError as exc:
                    if on_error == "abort":
                        exc.details["index"] = i
                        raise
                    c.execute("ROLLBACK TO item")
                    c.execute("RELEASE item")
                    results.append(AddResult(i, "rejected", None, exc.message))
                    continue
                if on_error == "skip":
                    c.execute("RELEASE item")
            check_quota(namespace, self.namespace_max_records, before, results)
        return results

    def _quota_count(self, c: sqlite3.Connection, namespace: str) -> int:
        """Records of the namespace, when a quota is set (0 otherwise: nothing to check).

        The write transaction (BEGIN IMMEDIATE) holds the file's only write lock, so no
        other writer can add between this count and the commit.
        """
        if not self.namespace_max_records:
            return 0
        return int(
            c.execute("SELECT count(*) FROM records WHERE namespace = ?", (namespace,)).fetchone()[
                0
            ]
        )

    def _insert_one(
        self, c: sqlite3.Connection, ns: str, it: PreparedRecord, now: int, index: int
    ) -> AddResult:
        row = c.execute(
            _INSERT_RECORD + " RETURNING rid",
            _record_row(ns, it, now),
        ).fetchone()
        if row is None:
            return self._conflict_result(c, ns, it, index)
        rid = row[0]
        self._insert_chunks(c, rid, it.chunks, scope_text(ns, it.user_id, it.thread_id))
        _index_values(c, ns, [(rid, it.tags_json, it.metadata_json)])
        now_dt = from_us_req(now)
        # No history row: Engine.history derives the add (see engine.core._derived_add).
        return AddResult(index, "written", inserted_record(ns, it, now_dt))

    def _conflict_result(
        self, c: sqlite3.Connection, ns: str, it: PreparedRecord, index: int
    ) -> AddResult:
        """The outcome of an item whose INSERT hit a unique index (same id or same text)."""
        if it.caller_id:
            existing = self._select_one(c, ns, it.id)
            if existing is not None:
                return existing_id_outcome(existing, it, index)
        dup = c.execute(_DEDUP_LOOKUP, (ns, _dedup_of(it))).fetchone()
        if dup is None:  # pragma: no cover - a conflict must have a cause
            raise ConflictError(f"record {it.id!r} conflicts with an existing record")
        return AddResult(index, "deduplicated", row_to_record(dup))

    def _insert_batch(
        self,
        c: sqlite3.Connection,
        ns: str,
        items: list[PreparedRecord],
        now: int,
        on_error: OnError,
    ) -> list[AddResult]:
        """Insert a batch with distinct ids through ``executemany`` (the bulk-ingest path).

        Dedup stays with the unique indexes: every row is offered with ``ON CONFLICT DO
        NOTHING`` and the rows that went in are read back by rowid (AUTOINCREMENT assigns
        increasing rowids in insertion order and we hold the write lock), so an item that is
        absent hit a unique index and gets the same outcome as on the one-by-one path. A
        rejected item (an id clash with a different text) inserted nothing, so no savepoint
        is needed to skip it.
        """
        base_rid = c.execute("SELECT coalesce(max(rid), 0) FROM records").fetchone()[0]
        c.executemany(_INSERT_RECORD, [_record_row(ns, it, now) for it in items])
        rids = dict(c.execute("SELECT id, rid FROM records WHERE rid > ?", (base_rid,)).fetchall())
        results: list[AddResult] = []
        chunk_rows: list[tuple[int, int, int, int, bytes]] = []
        tagged: list[tuple[int, str, str]] = []
        bodies: list[tuple[str, str]] = []
        scopes: dict[tuple[str, str], str] = {}
        now_dt = from_us_req(now)
        for i, it in enumerate(items):
            rid = rids.get(it.id)
            if rid is None:
                try:
                    results.append(self._conflict_result(c, ns, it, i))
                except ConflictError as exc:
                    if on_error == "abort":
                        exc.details["index"] = i
                        raise
                    results.append(AddResult(i, "rejected", None, exc.message))
                continue
            key = (it.user_id, it.thread_id)
            scope = scopes.get(key)
            if scope is None:
                scope = scopes[key] = scope_text(ns, it.user_id, it.thread_id)
            for ordinal, ch in enumerate(it.chunks):
                chunk_rows.append((rid, ordinal, ch.start, ch.end, _vector_bytes(ch.vector)))
                bodies.append((ch.index_text, scope))
            tagged.append((rid, it.tags_json, it.metadata_json))
            results.append(AddResult(i, "written", inserted_record(ns, it, now_dt)))
        _index_values(c, ns, tagged)
        if chunk_rows:
            base_cid = c.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0]
            c.executemany(
                "INSERT INTO chunks(rid, ord, start, end, vector) VALUES (?,?,?,?,?)", chunk_rows
            )
            cids = [
                r[0]
                for r in c.execute("SELECT id FROM chunks WHERE id > ? ORDER BY id", (base_cid,))
            ]
            c.executemany(
                _INSERT_FTS,
                [(cid, body, scope) for cid, (body, scope) in zip(cids, bodies, strict=True)],
            )
        # No history rows: an add is derivable (the record as inserted is the before-image
        # of its first change, or the live record), so Engine.history derives it. Its row
        # was ~5% of bulk ingest, and its (namespace, user_id) index entry one more page
        # per user written to the WAL every batch.
        return results

    def _insert_chunks(
        self, c: sqlite3.Connection, rid: int, chunks: list[PreparedChunk], scope: str
    ) -> None:
        for ordinal, ch in enumerate(chunks):
            cur = c.execute(
                "INSERT INTO chunks(rid, ord, start, end, vector) VALUES (?,?,?,?,?)",
                (
                    rid,
                    ordinal,
                    ch.start,
                    ch.end,
                    np.ascontiguousarray(ch.vector, np.float32).tobytes(),
                ),
            )
            c.execute(_INSERT_FTS, (cur.lastrowid, ch.index_text, scope))

    def _delete_chunks_of(self, c: sqlite3.Connection, rids: list[int]) -> None:
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

    def _select_one(self, c: sqlite3.Connection, ns: str, record_id: str) -> MemoryRecord | None:
        row = c.execute(
            f"SELECT {COLS} FROM records r WHERE namespace = ? AND id = ?", (ns, record_id)
        ).fetchone()
        return None if row is None else row_to_record(row)

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
                f"SELECT {COLS} FROM records r WHERE namespace = ? AND id = ?",
                (namespace, record_id),
            ).fetchone()
            before = checked_for_update(
                None if row is None else row_to_record(row), namespace, record_id, expected_version
            )
            rid = row[0]
            sets, params = scalar_set_clauses(changes, "?")
            if changes.content_hash is not None or changes.type is not None:
                sets.append("dedup = ?")
                params.append(
                    dedup_digest(
                        before.user_id or "",
                        before.agent_id or "",
                        before.thread_id or "",
                        changes.type or before.type,
                        changes.content_hash or before.content_hash or "",
                    )
                )
            if changes.metadata_json is not None:
                sets.append("metadata = ?")
                params.append(changes.metadata_json)
            if changes.add_tags or changes.remove_tags:
                sets.append(
                    "tags = (SELECT json_group_array(v) FROM ("
                    "SELECT value AS v FROM json_each(records.tags) "
                    "WHERE value NOT IN (SELECT value FROM json_each(?)) "
                    "UNION SELECT value FROM json_each(?) "
                    "WHERE value NOT IN (SELECT value FROM json_each(?)) ORDER BY 1))"
                )
                rm = json.dumps(changes.remove_tags or [])
                params.extend([rm, json.dumps(changes.add_tags or []), rm])
            now = now_us()
            sets.append("version = version + 1")
            sets.append("updated_at = ?")
            params.append(now)
            try:
                c.execute(f"UPDATE records SET {', '.join(sets)} WHERE rid = ?", (*params, rid))
            except sqlite3.IntegrityError as exc:
                raise ConflictError(
                    f"another record in the same scope already has this text ({record_id!r})",
                    id=record_id,
                ) from exc
            if changes.chunks is not None:
                self._delete_chunks_of(c, [rid])
                self._insert_chunks(
                    c,
                    rid,
                    changes.chunks,
                    scope_text(namespace, before.user_id or "", before.thread_id or ""),
                )
            after = self._select_one(c, namespace, record_id)
            assert after is not None
            c.execute(_INSERT_HISTORY, change_row(namespace, before, after, now))
            return after

    def delete_records(self, namespace: str, ids: list[str] | None, node: Node | None) -> int:
        """Delete by ids or filter from every index in one transaction, leaving history."""
        with self._write("deleting records", [namespace]) as c:
            if ids is not None:
                rows = c.execute(
                    f"SELECT {COLS} FROM records r WHERE namespace = ? AND id IN "
                    "(SELECT value FROM json_each(?))",
                    (namespace, json.dumps(ids)),
                ).fetchall()
            else:
                sql, args = _gated_select(c, COLS, namespace, node)
                rows = c.execute(sql, args).fetchall()
            if not rows:
                return 0
            rids = [r[0] for r in rows]
            now = now_us()
            c.executemany(
                _INSERT_HISTORY,
                [change_row(namespace, row_to_record(r), None, now) for r in rows],
            )
            self._delete_chunks_of(c, rids)
            c.execute(
                "DELETE FROM records WHERE rid IN (SELECT value FROM json_each(?))",
                (json.dumps(rids),),
            )
            return len(rids)

    # ------------------------------------------------------------------ reads

    def get_records(self, namespace: str, ids: list[str]) -> list[MemoryRecord]:
        """Return the records with these ids in the order asked; missing ones omitted."""
        rows = self._query(
            "reading records",
            f"SELECT {COLS} FROM records r WHERE namespace = ? AND id IN "
            "(SELECT value FROM json_each(?))",
            (namespace, json.dumps(ids)),
        )
        by_id = {r[1]: row_to_record(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def list_records(
        self, namespace: str, node: Node | None, limit: int, after: str | None, descending: bool
    ) -> list[MemoryRecord]:
        """Return one keyset page of matching records ordered by id.

        A page of one thread reads the thread's index and sorts its rows: left to itself,
        the planner walked the whole namespace in id order (``records_ns_thread`` is in time
        order) to skip that sort, 4.6 ms at 25k records for a thread of 100. A page of a
        tag or metadata value held by at most ``LIST_TAG_GATE`` records sorts those records
        (see _rare_values); a commoner one is met soon enough walking the namespace in id
        order.
        """
        cmp, order = ("<", "DESC") if descending else (">", "ASC")
        in_thread = any(f == "thread_id" for f, _ in required_equalities(node, SCOPE_FIELDS))
        with self._read("listing records") as c:
            hint = " INDEXED BY records_ns_thread" if in_thread else ""
            sql, args = _gated_select(c, COLS, namespace, node, most=LIST_TAG_GATE, hint=hint)
            if after is not None:
                sql += f" AND r.id {cmp} ?"
                args.append(after)
            sql += f" ORDER BY r.id {order} LIMIT ?"
            args.append(limit)
            return [row_to_record(r) for r in c.execute(sql, args).fetchall()]

    def count_records(self, namespace: str, node: Node | None) -> int:
        """Count matching records."""
        with self._read("counting records") as c:
            sql, args = _gated_select(c, "count(*)", namespace, node)
            row = c.execute(sql, args).fetchone()
        return int(row[0])

    def health(self) -> dict[str, Any]:
        """Check that the file answers a read."""
        try:
            self.count_records("default", None)
        except EngramError as exc:
            return {"status": "error", "backend": self.backend, "message": exc.message}
        return {"status": "ok", "backend": self.backend}

    def last_write_lsn(self) -> str | None:
        """None: a SQLite file has no replicas, every read sees every committed write."""
        return None

    def history(self, namespace: str, record_id: str) -> list[HistoryEntry]:
        """Return every change of a record, oldest first."""
        with self._read("reading history") as c:
            rows = c.execute(_HISTORY_SQL, (namespace, record_id)).fetchall()
        return [history_entry(r) for r in rows]

    # ------------------------------------------------------------------ search

    def _vector_index(self) -> VectorIndex:
        """Return the vector index, caught up with every commit visible to this process."""
        conn = self._reader()
        with self._index_lock:
            try:
                dv = conn.execute("PRAGMA data_version").fetchone()[0]
                if self._index is not None and getattr(self._local, "dv", None) == dv:
                    return self._index
                conn.execute("BEGIN")
                try:
                    epoch = self._meta(conn, "index_epoch") or ""
                    dim_s = self._meta(conn, "embedder_dim")
                    dim = int(dim_s) if dim_s else 0
                    index = self._index
                    if index is None or index.epoch != epoch or index.dim != dim:
                        if index is not None:
                            index.stop()
                        index = VectorIndex.load(self._sidecar, dim, epoch)
                        if index is None:
                            index = VectorIndex(dim=dim, epoch=epoch)
                        index.configure(*self._ann)
                    inserts = conn.execute(
                        "SELECT c.id, c.vector, r.namespace, r.user_id FROM chunks c "
                        "JOIN records r ON r.rid = c.rid WHERE c.id > ? ORDER BY c.id",
                        (index.max_chunk_id,),
                    ).fetchall()
                    deletes = conn.execute(
                        "SELECT seq, chunk_id FROM chunk_deletes WHERE seq > ? ORDER BY seq",
                        (index.delete_seq,),
                    ).fetchall()
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._translate(exc, "catching up the vector index") from exc
            with index.lock:
                index.apply(inserts, deletes)
            self._index = index
            self._local.dv = dv
            return index

    def vector_candidates(
        self,
        namespace: str,
        query: np.ndarray,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: bool = False,
    ) -> list[ChunkHit]:
        """Return the best chunks by cosine similarity (exact) that pass the filter.

        The scope's rows are scored exactly. Without a residual filter the top ``limit`` are
        returned directly; with one, the best few are checked in SQL first, and if too many
        fail, the exact set of qualifying chunks is fetched and used as a mask.
        ``with_records`` is ignored: reading the page's records afterwards is a local read.
        """
        index = self._vector_index()
        if user_id is None and _indexed_values(node):
            # A rare tag or metadata value: score just its chunks instead of the whole
            # namespace (a vector search for a tag of 1,100 records out of 100k: 65 ms
            # scanning and masking, 5.2 ms this way).
            with self._read("filtering vector candidates") as c:
                rare = _rare_values(c, namespace, node, LIST_TAG_GATE)
                if rare is not None:
                    sql, args = _select_over("c.id", namespace, node, rare, _JOIN_CHUNKS)
                    members = [r[0] for r in c.execute(sql, args)]
            if rare is not None:
                return self._score_members(members, query, limit)
        if node is not None and is_live_only(node) and not self._any_expired(namespace, node):
            node = None  # nothing has expired: the expiry check would pass every chunk
        if node is None or is_live_only(node):
            # A large scope (namespace, or one user with many chunks) without a residual
            # filter: its HNSW graph (plus the exact tail it has not absorbed yet), when the
            # background worker has it ready.
            got = index.ann_scan(namespace, query, max(limit, SEARCH_K), user_id)
            if got is not None:
                probe = _top(got[0], got[1], len(got[0]))
                if node is not None:
                    passed = self._passing(namespace, [h.chunk_id for h in probe], node)
                    probe = [h for h in probe if h.chunk_id in passed]
                if len(probe) >= limit:
                    return probe[:limit]
        with index.lock:
            ids, scores = index.scan(namespace, user_id, query)
            ids = ids.copy()
        if len(ids) == 0:
            return []
        if node is None:
            return _top(ids, scores, limit)
        # Four times the page: a filter passed by a quarter of the scope or more is settled
        # here (checking 400 candidates costs ~1 ms; the mask below reads every record of
        # the namespace that passes it, ~70 ms for half of 100k).
        probe = _top(ids, scores, max(limit * 4, 64))
        passed = self._passing(namespace, [h.chunk_id for h in probe], node)
        kept = [h for h in probe if h.chunk_id in passed]
        if len(kept) >= limit or len(probe) == len(ids):
            return kept[:limit]
        with self._read("filtering vector candidates") as c:
            if user_id is None:
                sql, args = _gated_select(c, "c.id", namespace, node, _JOIN_CHUNKS)
            else:
                where, params = compile_sqlite(node)
                sql = (
                    f"SELECT c.id FROM chunks c JOIN records r ON r.rid = c.rid "
                    f"WHERE r.namespace = ? AND {where} AND r.user_id = ?"
                )
                args = [namespace, *params, user_id]
            allowed = np.fromiter((r[0] for r in c.execute(sql, args)), dtype=np.int64)
        mask = np.isin(ids, allowed)
        return _top(ids[mask], scores[mask], limit)

    def _score_members(self, chunk_ids: list[int], query: np.ndarray, limit: int) -> list[ChunkHit]:
        """The best ``limit`` of the given chunks by exact cosine similarity."""
        ids = np.asarray(chunk_ids, dtype=np.int64)
        scores = self._scores(chunk_ids, query)
        indexed = ~np.isnan(scores)
        return _top(ids[indexed], scores[indexed], limit)

    def _any_expired(self, namespace: str, node: Node) -> bool:
        """True when some record of the namespace has expired by the filter's ``now``.

        One probe of the ``(namespace, expires_at)`` index; when it says no, a search skips
        checking its candidates against the expiry filter in SQL (~1 ms per search).
        """
        # The earliest expiry of the namespace only changes with a write, so it is kept per
        # reader connection until the connection's data_version moves.
        cache: dict[str, tuple[int, int | None]] = getattr(self._local, "first_expiry", {})
        self._local.first_expiry = cache
        dv = getattr(self._local, "dv", None)
        hit = cache.get(namespace)
        if dv is not None and hit is not None and hit[0] == dv:
            first = hit[1]
        else:
            with self._read("checking expiry") as c:
                row = c.execute(
                    "SELECT MIN(expires_at) FROM records WHERE namespace = ? "
                    "AND expires_at IS NOT NULL",
                    (namespace,),
                ).fetchone()
            first = None if row[0] is None else int(row[0])
            if dv is not None:
                cache[namespace] = (dv, first)
        return first is not None and first <= live_now(node)

    def vector_scores(self, chunk_ids: list[int], query: np.ndarray) -> list[float]:
        """Return the cosine similarity of the query to each chunk (NaN when not indexed)."""
        return [float(x) for x in self._scores(chunk_ids, query)]

    def _scores(self, chunk_ids: list[int], query: np.ndarray) -> np.ndarray:
        """:meth:`vector_scores` as an array: one product per index block, not per chunk
        (a rare tag's 1,100 chunks scored one by one took ~4 ms)."""
        index = self._vector_index()
        out = np.full(len(chunk_ids), np.nan, dtype=np.float32)
        with index.lock:
            rows_of: dict[Any, tuple[list[int], list[int]]] = {}
            for slot, cid in enumerate(chunk_ids):
                loc = index.where.get(cid)
                if loc is not None:
                    slots, rows = rows_of.setdefault(loc[0], ([], []))
                    slots.append(slot)
                    rows.append(loc[1])
            for key, (slots, rows) in rows_of.items():
                out[slots] = index.blocks[key].mat[rows] @ query
        return out

    def _passing(self, namespace: str, chunk_ids: list[int], node: Node) -> set[int]:
        with self._read("filtering candidates") as c:
            return set(_passing_rids(c, namespace, chunk_ids, node))

    def keyword_candidates(
        self, namespace: str, match: str, node: Node | None, limit: int
    ) -> list[ChunkHit]:
        """Return the best chunks by BM25 (negated so that higher is better).

        When the filter requires a user or a thread, the MATCH requires its scope tokens,
        so FTS5 walks the intersection of the words with that scope's chunks. The best
        ``KEYWORD_PROBE`` matches (or 4x ``limit``) are ranked in FTS5 alone, and only they
        meet their records and the filter: joining every match first cost ~2/3 of a 75 ms
        keyword search over 100k records, and 14 of 22 ms for the biggest user's. When too
        few of them pass the filter (another namespace dominates, or a narrow filter) the
        whole join runs. When the filter requires a rare tag or metadata value (see
        _rare_values), only its records' chunks are ranked: FTS5 still walks the words'
        lists but scores just the members (a search for a tag nobody has took ~120 ms at
        100k records scoring every match).
        The unary ``+`` keeps the membership test out of FTS5, which would otherwise run
        the whole query once per listed rowid (seconds for a thousand).
        """
        if not match:
            return []
        scopes = required_equalities(node, SCOPE_FIELDS)
        for field, value in sorted(scopes):
            match = f'({match}) AND scope:"{scope_token(namespace, field, value)}"'
        probe = max(limit * 4, KEYWORD_PROBE)
        with self._read("keyword search") as c:
            members = ""
            member_args: list[Any] = []
            rare = _rare_values(c, namespace, node)
            if rare is not None:
                rids, member_args = rare.rids(namespace)
                members = (
                    f" AND +chunks_fts.rowid IN (SELECT c.id FROM ({rids}) t CROSS JOIN "
                    "chunks c ON c.rid = t.rid)"
                )
            ranked = c.execute(
                f"SELECT rowid, {_BM25} AS s FROM chunks_fts WHERE chunks_fts MATCH ?{members} "
                "ORDER BY s, rowid LIMIT ?",
                (match, *member_args, probe),
            ).fetchall()
            passed = _passing_rids(c, namespace, [r[0] for r in ranked], node)
            hits = [ChunkHit(cid, passed[cid], -float(s)) for cid, s in ranked if cid in passed]
            # The probe is a prefix of the full order: its passing rows are the best ones.
            if len(hits) >= limit or len(ranked) < probe:
                return hits[:limit]
            where, params = compile_sqlite(node)
            rows = c.execute(
                f"SELECT chunks_fts.rowid, c.rid, {_BM25} AS s FROM chunks_fts "
                "JOIN chunks c ON c.id = chunks_fts.rowid JOIN records r ON r.rid = c.rid "
                f"WHERE chunks_fts MATCH ?{members} AND r.namespace = ? AND {where} "
                "ORDER BY s, chunks_fts.rowid LIMIT ?",
                (match, *member_args, namespace, *params, limit),
            ).fetchall()
        return [ChunkHit(r[0], r[1], -float(r[2])) for r in rows]

    def locate(
        self, namespace: str, chunk_ids: list[int], node: Node | None
    ) -> dict[int, tuple[str, int, int, int]]:
        """Map chunk id -> (record id, version, start, end) for chunks passing the filter."""
        if not chunk_ids:
            return {}
        where, params = compile_sqlite(node)
        rows = self._query(
            "locating search hits",
            "SELECT c.id, r.id, r.version, c.start, c.end FROM chunks c CROSS JOIN records r "
            "ON r.rid = c.rid WHERE c.id IN (SELECT value FROM json_each(?)) AND "
            f"r.namespace = ? AND {where}",
            (json.dumps(chunk_ids), namespace, *params),
        )
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def thread_turns(
        self, namespace: str, thread_id: str, start: int, end: int, margin: int
    ) -> list[ThreadTurn]:
        """Return a thread's messages in ``[start, end]`` plus ``margin`` on each side."""
        scope = "namespace = ? AND thread_id = ? AND type = 'message'"
        with self._read("reading a thread") as c:
            rids = [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at < ? "
                    "ORDER BY occurred_at DESC, rid DESC LIMIT ?",
                    (namespace, thread_id, start, margin),
                )
            ]
            rids += [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at BETWEEN ? AND ?",
                    (namespace, thread_id, start, end),
                )
            ]
            rids += [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at > ? "
                    "ORDER BY occurred_at, rid LIMIT ?",
                    (namespace, thread_id, end, margin),
                )
            ]
            rows = c.execute(
                "SELECT r.id, r.text, r.occurred_at, c.id, c.start, c.end FROM records r "
                "JOIN chunks c ON c.rid = r.rid WHERE r.rid IN (SELECT value FROM json_each(?)) "
                "ORDER BY r.occurred_at, r.rid, c.ord",
                (json.dumps(rids),),
            ).fetchall()
        turns: list[ThreadTurn] = []
        for record_id, text, occurred, cid, a, b in rows:
            if not turns or turns[-1].record_id != record_id:
                turns.append(ThreadTurn(record_id, text, occurred, []))
            turns[-1].chunks.append((cid, a, b))
        return turns

    def set_index_texts(self, namespace: str, texts: list[tuple[int, str]]) -> None:
        """Rewrite the keyword-index text of chunks (skipping chunks deleted meanwhile)."""
        if not texts:
            return
        with self._write("re-indexing a thread", [namespace]) as c:
            # CROSS JOIN pins the join order, the given chunks first: with a plain JOIN the
            # planner walked the namespace's records (5.7 ms per message added at 10k
            # records, growing with the store).
            live = {
                r[0]
                for r in c.execute(
                    "SELECT c.id FROM chunks c CROSS JOIN records r ON r.rid = c.rid WHERE "
                    "c.id IN (SELECT value FROM json_each(?)) AND r.namespace = ?",
                    (json.dumps([cid for cid, _ in texts]), namespace),
                )
            }
            c.executemany(
                "UPDATE chunks_fts SET body = ? WHERE rowid = ?",
                [(body, cid) for cid, body in texts if cid in live],
            )

    # ------------------------------------------------------------------ episodic + slots

    def generation(self, namespace: str) -> int:
        """Return the namespace's write generation (see ``Store.generation``)."""
        with self._read("reading the write generation") as c:
            return int(c.execute(GENERATION_SQL.format(p="?"), (namespace,)).fetchone()[0])

    def next_expiry(self, namespace: str, after: int) -> int | None:
        """Return the earliest ``expires_at`` after ``after`` (see ``Store.next_expiry``)."""
        with self._read("reading the next expiry") as c:
            row = c.execute(NEXT_EXPIRY_SQL.format(p="?"), (namespace, after)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def store_id(self) -> str:
        """Return this store's identity (kept by ``restore``; a ``backup`` copy gets its own)."""
        with self._read("reading the store id") as c:
            return self._meta(c, "store_id") or ""

    def _insert_events(
        self, c: sqlite3.Connection, namespace: str, events: list[PreparedEvent]
    ) -> list[Event]:
        out = []
        for e in events:
            cur = c.execute(
                "INSERT INTO events(id, namespace, thread_id, user_id, actor, action, payload, ts)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (e.id, namespace, e.thread_id, e.user_id, e.actor, e.action, e.payload_json, e.ts),
            )
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
                    cur.lastrowid or 0,
                )
            )
        return out

    def append_events(self, namespace: str, events: list[PreparedEvent]) -> list[Event]:
        """Append events in order in one transaction."""
        with self._write("appending events", [namespace]) as c:
            return self._insert_events(c, namespace, events)

    def list_events(
        self, namespace: str, thread_id: str, since: int | None, limit: int
    ) -> list[Event]:
        """Return a thread's events in append order, optionally from a time on."""
        sql = (
            "SELECT id, namespace, thread_id, action, payload, user_id, actor, ts, seq "
            "FROM events WHERE namespace = ? AND thread_id = ?"
        )
        args: list[Any] = [namespace, thread_id]
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._read("reading events") as c:
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
                r[8],
            )
            for r in rows
        ]

    def get_slots(self, namespace: str, thread_id: str) -> Slots:
        """Return the thread's slots (an empty map at version 0 when never set)."""
        with self._read("reading slots") as c:
            return self._slots(c, namespace, thread_id)

    def _slots(self, c: sqlite3.Connection, namespace: str, thread_id: str) -> Slots:
        ver = c.execute(
            "SELECT version, updated_at FROM slot_versions WHERE namespace = ? AND thread_id = ?",
            (namespace, thread_id),
        ).fetchone()
        rows = c.execute(
            "SELECT name, value FROM slots WHERE namespace = ? AND thread_id = ? ORDER BY name",
            (namespace, thread_id),
        ).fetchall()
        return Slots(
            namespace,
            thread_id,
            {n: json.loads(v) for n, v in rows},
            ver[0] if ver else 0,
            from_us(ver[1]) if ver else None,
        )

    def set_slots(
        self,
        namespace: str,
        thread_id: str,
        values: dict[str, Any],
        expected_version: int | None,
        user_id: str,
    ) -> Slots:
        """Compare-and-set: write values (None removes a slot) and bump the thread's version."""
        with self._write("setting slots", [namespace]) as c:
            row = c.execute(
                "SELECT version FROM slot_versions WHERE namespace = ? AND thread_id = ?",
                (namespace, thread_id),
            ).fetchone()
            current = row[0] if row else 0
            check_slot_version(thread_id, current, expected_version)
            write_slot_values(c.execute, "?", namespace, thread_id, values)
            c.execute(
                "INSERT INTO slot_versions(namespace, thread_id, user_id, version, updated_at) "
                "VALUES (?,?,?,1,?) ON CONFLICT(namespace, thread_id) DO UPDATE SET "
                "version = version + 1, updated_at = excluded.updated_at",
                (namespace, thread_id, user_id, now_us()),
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

        Unlike ``delete`` this keeps no before-image: the rows are removed with
        ``secure_delete`` on, the keyword index is optimised and the WAL truncated, so the
        text does not linger in free pages. ``compact`` also rewrites the file without its
        free pages (``VACUUM``; other writers wait meanwhile), so it shrinks.
        """
        conds: list[str] = []
        args: list[Any] = []
        if user_id is not None:
            conds.append("user_id = ?")
            args.append(user_id)
        if thread_id is not None:
            conds.append("thread_id = ?")
            args.append(thread_id)
        if not conds and not everything:
            raise EngramError("forget needs a user_id, a thread_id or the whole namespace")
        cond = " AND ".join(["namespace = ?", *conds])
        args = [namespace, *args]
        counts: dict[str, int] = {}
        with self._wlock:
            w = self._writer_conn()
            w.execute("PRAGMA secure_delete = ON")
            try:
                with self._write("forgetting", [namespace]) as c:
                    rids = [r[0] for r in c.execute(f"SELECT rid FROM records WHERE {cond}", args)]
                    self._delete_chunks_of(c, rids)
                    counts["records"] = c.execute(
                        f"DELETE FROM records WHERE {cond}", args
                    ).rowcount
                    counts["history"] = c.execute(
                        f"DELETE FROM history WHERE {cond}", args
                    ).rowcount
                    counts["events"] = c.execute(f"DELETE FROM events WHERE {cond}", args).rowcount
                    if user_id is None or thread_id is not None:
                        slot_cond = cond.replace("user_id = ? AND ", "") if user_id else cond
                        slot_args = [a for a in args if a != user_id] if user_id else args
                        counts["slot_threads"] = c.execute(
                            f"DELETE FROM slot_versions WHERE {slot_cond}", slot_args
                        ).rowcount
                        c.execute(f"DELETE FROM slots WHERE {slot_cond}", slot_args)
                    else:
                        threads = [
                            r[0]
                            for r in c.execute(
                                "SELECT thread_id FROM slot_versions "
                                "WHERE namespace = ? AND user_id = ?",
                                (namespace, user_id),
                            )
                        ]
                        for t in threads:
                            c.execute(
                                "DELETE FROM slots WHERE namespace = ? AND thread_id = ?",
                                (namespace, t),
                            )
                            c.execute(
                                "DELETE FROM slot_versions WHERE namespace = ? AND thread_id = ?",
                                (namespace, t),
                            )
                        counts["slot_threads"] = len(threads)
                    c.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
                if compact:
                    before = self._file_bytes(w)
                    w.execute("VACUUM")
                    counts["bytes_freed"] = max(0, before - self._file_bytes(w))
                w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise self._translate(exc, "forgetting") from exc
            finally:
                if self._writer is not None:
                    self._writer.execute(f"PRAGMA secure_delete = {_SECURE_DELETE}")
        return counts

    @staticmethod
    def _file_bytes(conn: sqlite3.Connection) -> int:
        """The database's size in bytes as SQLite sees it (pages in use and free)."""
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])

    # ------------------------------------------------------------------ admin

    def namespaces(self) -> dict[str, int]:
        """Return record counts per namespace (namespaces with only events count 0)."""
        with self._read("listing namespaces") as c:
            rows = c.execute(
                "SELECT namespace, sum(n) FROM (SELECT namespace, count(*) AS n FROM records "
                "GROUP BY namespace UNION ALL SELECT DISTINCT namespace, 0 FROM events "
                "UNION ALL SELECT DISTINCT namespace, 0 FROM slot_versions) "
                "GROUP BY namespace ORDER BY namespace"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Return counts (for one namespace, or all) and file sizes."""
        with self._read("reading stats") as c:

            def one(sql: str, *a: Any) -> int:
                return int(c.execute(sql, a).fetchone()[0])

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
                    "records": one("SELECT count(*) FROM records WHERE namespace = ?", namespace),
                    "events": one("SELECT count(*) FROM events WHERE namespace = ?", namespace),
                    "history": one("SELECT count(*) FROM history WHERE namespace = ?", namespace),
                    "threads_with_slots": one(
                        "SELECT count(*) FROM slot_versions WHERE namespace = ?", namespace
                    ),
                }
        wal = self.path.with_name(self.path.name + "-wal")
        out["backend"] = "sqlite"
        out["path"] = str(self.path)
        out["file_bytes"] = self.path.stat().st_size if self.path.exists() else 0
        out["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
        out["indexed_vectors"] = len(self._index) if self._index is not None else None
        return out

    def doctor(self, repair: bool = False) -> dict[str, Any]:
        """Check SQLite integrity and that every derived index agrees with the tables.

        With ``repair`` the in-process vector index and its sidecar are rebuilt from the
        tables and the keyword index is rebuilt with FTS5's own ``rebuild``-free check.
        """
        problems: list[str] = []
        with self._read("checking integrity") as c:
            integrity = [r[0] for r in c.execute("PRAGMA integrity_check")]
            fk = c.execute("PRAGMA foreign_key_check").fetchall()
            chunks = {r[0] for r in c.execute("SELECT id FROM chunks")}
            fts = {r[0] for r in c.execute("SELECT rowid FROM chunks_fts")}
            orphan_records = int(
                c.execute(
                    "SELECT count(*) FROM records r WHERE NOT EXISTS "
                    "(SELECT 1 FROM chunks c WHERE c.rid = r.rid)"
                ).fetchone()[0]
            )
            stale_dedup = int(
                c.execute(f"SELECT count(*) FROM records WHERE {_STALE_DEDUP}").fetchone()[0]
            )
            stale_scope = [r[0] for r in c.execute(_STALE_SCOPE)]
            stale_values = {
                what: int(c.execute(_stale_rows_sql(table, cols, rows)).fetchone()[0])
                for what, table, cols, rows in _VALUE_INDEXES
            }
        if integrity != ["ok"]:
            problems.append("integrity_check: " + "; ".join(integrity[:5]))
        if fk:
            problems.append(f"foreign_key_check: {len(fk)} violations")
        if chunks != fts:
            problems.append(f"keyword index has {len(fts)} rows for {len(chunks)} chunks")
        if orphan_records:
            problems.append(f"{orphan_records} records have no indexed chunk")
        if stale_dedup:
            problems.append(f"{stale_dedup} records have a dedup key that disagrees with them")
        if stale_scope:
            problems.append(
                f"{len(stale_scope)} keyword rows have a user scope that disagrees with "
                "their record"
            )
        for what, stale in stale_values.items():
            if stale:
                problems.append(f"the {what} index has {stale} rows that disagree with the records")
        index = self._vector_index()
        with index.lock:
            indexed = index.chunk_ids()
        index_ok = indexed == chunks
        if not index_ok:
            problems.append(f"vector index has {len(indexed)} rows for {len(chunks)} chunks")
        repaired = []
        if repair and not index_ok:
            with self._index_lock:
                self._index = None
                shutil.rmtree(self._sidecar, ignore_errors=True)
            self._local.dv = None
            self._vector_index()
            repaired.append("vector index rebuilt from the tables")
        # Problems a repair cannot fix; the vector index, dedup keys and scopes are derived.
        unfixable = integrity != ["ok"] or bool(fk) or chunks != fts or bool(orphan_records)
        if repair and stale_dedup:
            try:
                with self._write("recomputing dedup keys") as c:
                    c.execute(
                        "UPDATE records SET dedup = engram_dedup(user_id, agent_id, thread_id, "
                        f"type, content_hash) WHERE {_STALE_DEDUP}"
                    )
                repaired.append("dedup keys recomputed from the records")
            except StoreError as exc:  # the corrected keys make two records the same
                unfixable = True
                problems.append(
                    "could not recompute the deduplication keys: two records in one scope have "
                    f"the same text; delete one and repair again ({exc.message})"
                )
        if repair and stale_scope:
            with self._write("recomputing keyword scopes") as c:
                c.execute(
                    "UPDATE chunks_fts SET scope = (SELECT "
                    "engram_scope(r.namespace, r.user_id, r.thread_id) "
                    "FROM chunks c JOIN records r ON r.rid = c.rid WHERE c.id = chunks_fts.rowid) "
                    "WHERE rowid IN (SELECT value FROM json_each(?))",
                    (json.dumps(stale_scope),),
                )
            repaired.append("keyword scopes recomputed from the records")
        for what, table, cols, rows in _VALUE_INDEXES:
            if repair and stale_values[what]:
                with self._write(f"rebuilding the {what} index") as c:
                    c.execute(f"DELETE FROM {table}")
                    c.execute(f"INSERT INTO {table}({cols}) {rows}")
                repaired.append(f"{what} index rebuilt from the records")
        return {
            "ok": not problems or (repair and not unfixable),
            "integrity_check": integrity[0] if integrity else "?",
            "chunks": len(chunks),
            "keyword_rows": len(fts),
            "vector_rows": len(indexed),
            "problems": problems,
            "repaired": repaired,
        }

    def backup(self, path: Path) -> None:
        """Write a consistent online snapshot with SQLite's backup API."""
        path = Path(path)
        if path.resolve() == self.path:
            raise EngramError("the backup path is the store itself")
        tmp = path.with_name(path.name + ".partial")
        tmp.unlink(missing_ok=True)
        try:
            dst = sqlite3.connect(str(tmp))
            try:
                self._reader().backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
                # A copy opened as a store of its own is another store: its cache keys must
                # not be this one's (restore keeps the identity of the store it replaces).
                dst.execute("UPDATE meta SET value = ? WHERE key = 'store_id'", (uuid.uuid4().hex,))
                dst.commit()
                ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                dst.close()
            if ok != "ok":
                raise StoreError(f"backup failed its integrity check: {ok}")
            os.replace(tmp, path)
        except sqlite3.Error as exc:
            tmp.unlink(missing_ok=True)
            raise self._translate(exc, "backing up") from exc

    def restore(self, path: Path) -> None:
        """Replace the store's content with a backup (other processes must be stopped)."""
        path = Path(path)
        if not path.exists():
            raise NotFoundError(f"backup file {path} does not exist")
        staging: Path | None = None
        try:
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                ok = src.execute("PRAGMA integrity_check").fetchone()[0]
                if ok != "ok":
                    raise StoreError(f"backup {path} fails its integrity check: {ok}")
                if current_revision(src) != SCHEMA_HEAD:
                    # A backup from an older engramdb: upgrade a staged copy, never the
                    # backup itself, then restore from the copy.
                    src, staging = self._staged_upgrade(path, src)
                with self._wlock:
                    dst = self._writer_conn()
                    # Same store, older content: keep its identity and move every namespace's
                    # write generation past all values seen before, so no cached read of the
                    # replaced content (or of the backup's era) is ever served again.
                    store_id = self._meta(dst, "store_id")
                    top = int(dst.execute(MAX_GENERATION_SQL).fetchone()[0])
                    src.backup(dst)
                    dst.execute(
                        "UPDATE meta SET value = ? WHERE key = 'index_epoch'", (uuid.uuid4().hex,)
                    )
                    dst.execute("UPDATE meta SET value = ? WHERE key = 'store_id'", (store_id,))
                    dst.execute(RESTORE_GENERATION_SQL.format(p="?"), (top + 1,))
            finally:
                src.close()
        except sqlite3.Error as exc:
            raise self._translate(exc, "restoring") from exc
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        with self._index_lock:
            self._index = None
            self._local.dv = None

    @staticmethod
    def _staged_upgrade(path: Path, src: sqlite3.Connection) -> tuple[sqlite3.Connection, Path]:
        """Copy an older backup to a temp folder and upgrade the copy to the head schema.

        Raises:
            SchemaTooNewError: the backup was written by a newer engramdb.
            StoreError: the file is not an engramdb store.
        """
        rev = current_revision(src)
        if rev is None:
            src.close()
            raise StoreError(f"{path} is not an engramdb store (no schema revision)")
        if rev not in SCHEMA_REVISIONS:
            src.close()
            raise SchemaTooNewError(
                f"backup {path} has schema revision {rev!r}, newer than this engramdb knows "
                f"(head {SCHEMA_HEAD!r}); upgrade engramdb",
                revision=rev,
            )
        staging = Path(tempfile.mkdtemp(prefix="engramdb-restore-"))
        staged = staging / "staged.db"
        copy = sqlite3.connect(staged)
        try:
            src.backup(copy)
        finally:
            copy.close()
            src.close()
        upgrade(staged)
        return sqlite3.connect(f"file:{staged}?mode=ro", uri=True), staging

    def iter_all(
        self, namespace: str | None, node: Node | None, after: tuple[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every matching record with its chunk vectors and history, for export.

        ``after`` (namespace, id) starts after that record: how ``migrate`` resumes.
        """
        where, params = compile_sqlite(node)
        ns_sql, ns_args = ("r.namespace = ?", [namespace]) if namespace else ("1", [])
        if after is not None:
            ns_sql += " AND (r.namespace, r.id) > (?, ?)"
            ns_args = [*ns_args, *after]
        conn = self._connect(readonly=True)
        try:
            conn.execute("BEGIN")
            cur = conn.execute(
                f"SELECT {COLS} FROM records r WHERE {ns_sql} AND {where} "
                "ORDER BY r.namespace, r.id",
                (*ns_args, *params),
            )
            for row in cur:
                rec = row_to_record(row)
                chunks = conn.execute(
                    "SELECT c.start, c.end, c.vector, f.body FROM chunks c JOIN chunks_fts f "
                    "ON f.rowid = c.id WHERE c.rid = ? ORDER BY c.ord",
                    (row[0],),
                ).fetchall()
                hist = conn.execute(
                    "SELECT op, version, before, after, at FROM history WHERE namespace = ? AND "
                    "record_id = ? ORDER BY seq",
                    (rec.namespace, rec.id),
                ).fetchall()
                yield {"record": rec, "chunks": chunks, "history": hist}
            conn.execute("COMMIT")
        finally:
            conn.close()

    def load_history(
        self, rows: list[tuple[Any, ...]], meta: dict[str, str | None] | None = None
    ) -> int:
        """Insert history rows unless already present (see ``Store.load_history``)."""
        added = 0
        with self._write("loading history", bump={r[1] for r in rows}) as c:
            for r in rows:
                cur = c.execute(
                    "INSERT INTO history(namespace, record_id, user_id, thread_id, op, version, "
                    "before, after, at) SELECT ?,?,?,?,?,?,?,?,? WHERE NOT EXISTS (SELECT 1 FROM "
                    "history h WHERE h.namespace = ? AND h.record_id = ? AND h.op = ? AND "
                    "h.version = ? AND h.at = ?)",
                    (*r[1:10], r[1], r[2], r[5], r[6], r[9]),
                )
                added += cur.rowcount
            for key, value in (meta or {}).items():
                c.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                    "SET value = excluded.value",
                    (key, value),
                )
        return added

    def iter_orphan_history(self, after_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Return history rows of records that no longer exist, in ``seq`` order."""
        with self._read("reading history") as c:
            return [
                tuple(r)
                for r in c.execute(
                    "SELECT h.seq, h.namespace, h.record_id, h.user_id, h.thread_id, h.op, "
                    "h.version, h.before, h.after, h.at FROM history h WHERE h.seq > ? AND NOT "
                    "EXISTS (SELECT 1 FROM records r WHERE r.namespace = h.namespace AND "
                    "r.id = h.record_id) ORDER BY h.seq LIMIT ?",
                    (after_seq, limit),
                ).fetchall()
            ]

    def iter_digests(self, namespace: str) -> Iterator[tuple[str, int, str]]:
        """Yield ``(id, version, content_hash)`` of a namespace's records in id order."""
        conn = self._connect(readonly=True)
        try:
            yield from conn.execute(
                "SELECT id, version, content_hash FROM records WHERE namespace = ? ORDER BY id",
                (namespace,),
            )
        finally:
            conn.close()

    def iter_events_and_slots(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Yield events and slot maps as export lines."""
        with self._read("exporting events") as c:
            lines = exported_events_and_slots(
                lambda sql, args: c.execute(sql, args).fetchall(), "?", namespace
            )
        yield from lines

    def import_records(self, batch: list[dict[str, Any]]) -> dict[str, int]:
        """Insert exported records verbatim (ids, times, versions, history) in one transaction.

        An id that already exists with the same text and version counts as unchanged; with
        anything else it counts as a conflict and is left as it is.
        """
        counts = {"written": 0, "unchanged": 0, "conflicts": 0}
        with self._write("importing records", [""]) as c:
            for r in batch:
                dedup = dedup_digest(
                    r["user_id"], r["agent_id"], r["thread_id"], r["type"], r["content_hash"]
                )
                row = c.execute(
                    _IMPORT_RECORD + " RETURNING rid", (*record_values(r), dedup)
                ).fetchone()
                if row is None:
                    counts[present_outcome(self._select_one(c, r["namespace"], r["id"]), r)] += 1
                    continue
                _index_values(c, r["namespace"], [(row[0], r["tags"], r["metadata"])])
                scope = scope_text(r["namespace"], r["user_id"], r["thread_id"])
                for ordinal, (start, end, body, vec) in enumerate(r["chunks"]):
                    cur = c.execute(
                        "INSERT INTO chunks(rid, ord, start, end, vector) VALUES (?,?,?,?,?)",
                        (row[0], ordinal, start, end, np.asarray(vec, np.float32).tobytes()),
                    )
                    c.execute(_INSERT_FTS, (cur.lastrowid, body, scope))
                c.executemany(_INSERT_HISTORY, history_rows(r))
                counts["written"] += 1
        return counts

    def import_events_and_slots(self, lines: list[dict[str, Any]]) -> tuple[int, int]:
        """Insert exported events (idempotent by id) and slot maps; return their counts."""
        with self._write("importing events", [""]) as c:
            return import_events_and_slots(lines, c.execute, c.executemany, "?")

    # ------------------------------------------------------------------ re-embedding

    def reembed_begin(self, target: str) -> None:
        """Start (or resume) a re-embedding towards ``target``; a new target starts over."""
        with self._write("starting re-embedding") as c:
            if self._meta(c, "reembed_target") != target:
                c.execute("DELETE FROM reembed_vectors")
                c.execute(
                    "INSERT INTO meta(key, value) VALUES ('reembed_target', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (target,),
                )

    def reembed_pending(self, limit: int) -> list[tuple[int, str]]:
        """Return up to ``limit`` chunks without a new vector yet: (chunk id, chunk text)."""
        with self._read("listing chunks to re-embed") as c:
            rows = c.execute(
                "SELECT c.id, substr(r.text, c.start + 1, c.end - c.start) FROM chunks c "
                "JOIN records r ON r.rid = c.rid LEFT JOIN reembed_vectors n ON n.chunk_id = c.id "
                "WHERE n.chunk_id IS NULL ORDER BY c.id LIMIT ?",
                (limit,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def reembed_put(self, rows: list[tuple[int, np.ndarray]]) -> None:
        """Store new vectors for chunks (committed, so an interrupted run resumes here)."""
        with self._write("storing re-embedded vectors") as c:
            c.executemany(
                "INSERT OR REPLACE INTO reembed_vectors(chunk_id, vector) VALUES (?, ?)",
                [(cid, np.asarray(vec, np.float32).tobytes()) for cid, vec in rows],
            )

    def reembed_finish(self, name: str, dim: int, embed: Callable[[list[str]], np.ndarray]) -> None:
        """Switch every chunk to its new vector and the store to the new embedder, atomically."""
        with self._write("switching embedder", [""]) as c:
            late = c.execute(
                "SELECT c.id, substr(r.text, c.start + 1, c.end - c.start) FROM chunks c "
                "JOIN records r ON r.rid = c.rid LEFT JOIN reembed_vectors n ON n.chunk_id = c.id "
                "WHERE n.chunk_id IS NULL"
            ).fetchall()
            if late:
                vecs = embed([t for _, t in late])
                c.executemany(
                    "INSERT INTO reembed_vectors(chunk_id, vector) VALUES (?, ?)",
                    [
                        (cid, vec.astype(np.float32).tobytes())
                        for (cid, _), vec in zip(late, vecs, strict=True)
                    ],
                )
            c.execute(
                "UPDATE chunks SET vector = (SELECT vector FROM reembed_vectors n "
                "WHERE n.chunk_id = chunks.id)"
            )
            for key, value in (
                ("embedder_name", name),
                ("embedder_dim", str(dim)),
                ("index_epoch", uuid.uuid4().hex),
            ):
                c.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                    "SET value = excluded.value",
                    (key, value),
                )
            c.execute("DELETE FROM reembed_vectors")
            c.execute("DELETE FROM meta WHERE key = 'reembed_target'")
        with self._index_lock:
            self._index = None
        shutil.rmtree(self._sidecar, ignore_errors=True)

    def close(self) -> None:
        """Persist the vector index sidecar and close this process's connections."""
        if self._closed:
            return
        if os.getpid() == self._pid:
            self._checkpointer.stop()
        if os.getpid() == self._pid and self._index is not None:
            self._index.stop()
        if os.getpid() == self._pid and self._index is not None and len(self._index) > 0:
            try:
                with self._index.lock:
                    self._index.save(self._sidecar)
            except OSError:
                pass
        self._closed = True
        if os.getpid() == self._pid:
            for conn in [*self._readers, *([self._writer] if self._writer else [])]:
                with suppress(sqlite3.Error):
                    conn.close()
        self._readers = []
        self._writer = None
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> list[ChunkHit]:
    """Top-k by score descending, ties broken by chunk id (deterministic)."""
    n = len(ids)
    if n == 0:
        return []
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
        # Include every row tied with the k-th score so the tie-break is by id, not by position.
        kth = scores[part].min()
        part = np.nonzero(scores >= kth)[0]
    else:
        part = np.arange(n)
    order = np.lexsort((ids[part], -scores[part]))[:k]
    sel = part[order]
    return [ChunkHit(int(i), 0, float(s)) for i, s in zip(ids[sel], scores[sel], strict=True)]
