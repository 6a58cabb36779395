"""The PostgreSQL store's way to its server: pools, checkout, transactions, error translation.

One :class:`Database` per store, shared by all its parts. Everything a write touches is one
transaction on one pooled connection (psycopg 3 + psycopg_pool), committed on success and
rolled back on any exception (:meth:`Database.write`); reads take a connection, or a
read-only snapshot, and may be routed to a streaming replica (:meth:`Database.read`).

Faults (:mod:`engramdb.stores.postgres.faults`): the store's public methods carry the retry;
here each failure says whether a retry is safe (:meth:`Database.translate`), and a hung
server is cut off by the watchdog after ``io_timeout_s``.

After ``fork`` the child abandons the inherited pool (never using or closing it: closing
would end the parent's sessions) and opens its own.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from engramdb.deadline import check
from engramdb.errors import EngramError, StoreError, StoreUnavailableError, ValidationError
from engramdb.stores.postgres.faults import (
    WATCHDOG,
    Breaker,
    RetryPolicy,
    in_retry,
    is_connection_failure,
    remaining,
    translate,
)
from engramdb.stores.postgres.read_timeout import budgeted, restore_default
from engramdb.stores.postgres.replica import (
    CHECKOUT_S,
    INSERT_LSN_SQL,
    PROBE_SQL,
    ReplicaRouter,
    format_lsn,
    parse_lsn,
)
from engramdb.stores.postgres.schema import ensure_schema
from engramdb.stores.postgres.vectors import BinaryVectors
from engramdb.stores.rows import BUMP_GENERATION_SQL

FRESH_S = 0.25  # a connection used this recently is handed out unchecked (see _checkout)
RECONNECT_S = 0.5  # pool reconnect attempts give up after this; callers' waits renew them
_abandoned: list[ConnectionPool[Any]] = []  # pools inherited across fork: never touched


def sqlalchemy_free_conninfo(url: str) -> str:
    """The libpq connection string of a store URL (``postgresql+psycopg://`` accepted)."""
    for prefix in ("postgresql+psycopg://", "postgres+psycopg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def probe(url: str, connect_timeout_s: float) -> None:
    """Connect once to the server of ``url`` and hang up: fail fast when it is unreachable.

    A service starting against a server that is down should say so in one line within
    the connect timeout, not retry for the whole retry window while its pool logs every
    attempt.

    Raises:
        StoreUnavailableError: the server did not accept a connection within the timeout.
    """
    conninfo = sqlalchemy_free_conninfo(url)
    kwargs: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in conninfo:
        kwargs["connect_timeout"] = max(2, round(connect_timeout_s))
    try:
        psycopg.connect(conninfo, **kwargs).close()
    except psycopg.Error as exc:
        info = conninfo_to_dict(conninfo)
        where = f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreUnavailableError(
            f"PostgreSQL at {where} is unreachable (within store_connect_timeout_s="
            f"{connect_timeout_s:g} s): {reason}",
            server=where,
        ) from exc


class Database:
    """The pools of one store and the transactions every part of it runs in.

    Opens the primary's pool at once; the replica's (``read_url``) once the schema is
    ready (:meth:`open`).
    """

    def __init__(
        self,
        url: str,
        *,
        pool_min: int,
        pool_max: int,
        pool_timeout_s: float,
        hnsw_ef_search: int,
        retry_s: float,
        connect_timeout_s: float,
        io_timeout_s: float,
        read_url: str | None,
        read_max_lag_s: float,
    ) -> None:
        self.breaker = Breaker()
        self.retry_policy = RetryPolicy(
            float(retry_s), float(io_timeout_s), float(connect_timeout_s)
        )
        self.conninfo = sqlalchemy_free_conninfo(url)
        self.hnsw_ef_search = int(hnsw_ef_search)
        self._pool_args = (int(pool_min), int(pool_max), float(pool_timeout_s))
        self._pid = os.getpid()
        self._closed = False
        self._vectors = BinaryVectors()
        # Connections that just finished a statement, and when (see _checkout).
        self._fresh: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._fresh_lock = threading.Lock()
        self._pool = self._open_pool()
        # Optional streaming replica for routed reads (engramdb.stores.postgres.replica).
        self.read_conninfo = sqlalchemy_free_conninfo(read_url) if read_url else None
        self.router = ReplicaRouter(read_max_lag_s) if read_url else None
        self._rpool: ConnectionPool[Any] | None = None

    def open(self, auto_migrate: bool, initialise: Callable[[], None]) -> None:
        """Bring the schema to its head, run ``initialise``, then open the replica's pool.

        On any failure the primary's pool is closed again, so a store that failed to open
        leaves no connections behind.

        Raises:
            SchemaTooNewError, SchemaError: see :func:`ensure_schema`.
            StoreError: the server could not be reached or refused a statement.
        """
        try:
            with self.connection() as conn:
                ensure_schema(self.conninfo, conn, auto_migrate, self.where())
            initialise()
            if self.read_conninfo is not None:
                self._rpool = self._open_pool(self.read_conninfo, "engramdb-replica")
        except psycopg.Error as exc:
            self._pool.close()
            raise self.translate(exc, "opening the store") from exc
        except BaseException:
            self._pool.close()
            raise

    @property
    def pool_max(self) -> int:
        """The most pooled connections this store opens (concurrent loaders stay within)."""
        return self._pool_args[1]

    def where(self) -> str:
        """The database and its host, for messages (never the password)."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.conninfo)
        except psycopg.Error:
            return "the PostgreSQL database"
        return f"PostgreSQL database {info.get('dbname', '?')!r} on {info.get('host', 'local')}"

    def server(self) -> str:
        """``host:port`` of the server, for error messages (never the password)."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.conninfo)
        except psycopg.Error:
            return "the PostgreSQL server"
        host = str(info.get("hostaddr") or info.get("host") or "localhost")
        return f"{host}:{info.get('port') or 5432}"

    def send_vectors_binary(self, c: psycopg.Connection[Any]) -> None:
        """Teach ``c`` to send vectors in pgvector's binary form (see :class:`BinaryVectors`)."""
        self._vectors.enable(c)

    def health(self, backend: str, probe: Callable[[], object]) -> dict[str, Any]:
        """Run ``probe`` (a cheap read); report the circuit breaker's state either way."""
        try:
            probe()
            out: dict[str, Any] = {"status": "ok", "backend": backend}
        except EngramError as exc:
            out = {"status": "error", "backend": backend, "message": exc.message}
        out["breaker"] = self.breaker.state()
        return out

    def last_write_lsn(self) -> str | None:
        """The WAL position of this store's last committed write (None without a replica)."""
        last = self.router.last_write() if self.router is not None else None
        return format_lsn(last) if last is not None else None

    # ------------------------------------------------------------------ pools

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

    def close(self) -> None:
        """Close this process's pools (inherited ones are abandoned, never closed)."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() == self._pid:
            with suppress(Exception):
                self._pool.close()
            if self._rpool is not None:
                with suppress(Exception):
                    self._rpool.close()

    # ------------------------------------------------------------------ errors

    def translate(self, exc: Exception, doing: str, committing: bool = False) -> EngramError:
        """The engramdb error for a driver error raised while ``doing`` (see
        :func:`engramdb.stores.postgres.faults.translate`)."""
        return translate(exc, doing, self.server(), committing)

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def write(self, doing: str, bump: Iterable[str] = ()) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction: COMMIT on success, ROLLBACK on any exception.

        ``bump``: namespaces whose write generation rises in the same transaction (``''`` is
        the store-wide one). The rows are bumped last, in sorted order, so their row locks
        are held only until COMMIT and concurrent writers cannot deadlock on them.
        """
        committing = False  # a connection lost once COMMIT is in flight: outcome unknown
        try:
            with self.connection() as conn:
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
                if self.router is not None:
                    self._note_commit(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self.translate(exc, doing, committing) from exc

    def _note_commit(self, conn: psycopg.Connection[Any]) -> None:
        """Remember the WAL position just after a commit (read-your-writes, see pg_replica).

        ``pg_current_wal_insert_lsn()`` read after COMMIT returned is at or past the end of
        the commit record even with ``synchronous_commit=off``. A failure here cannot undo
        the commit: the router then reads the primary for ``read_max_lag_s`` instead.
        """
        assert self.router is not None
        try:
            row = conn.execute(INSERT_LSN_SQL).fetchone()
            self.router.note_write(parse_lsn(str(row[0])) if row else 0)
        except (psycopg.Error, ValidationError):
            self.router.note_unknown_write()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, waited for at most the rest of the retry window.

        Inside a retried call the watchdog cuts the connection if the server has not
        answered within ``io_timeout_s`` (a hung server must not hang the caller). Driver
        errors are not translated: the caller names what it was doing.
        """
        with self._primary() as conn:
            # A budgeted read may have left its statement_timeout (read_timeout.py).
            restore_default(conn)
            yield conn

    @contextmanager
    def _primary(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection of the primary, as the last user left it."""
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
        :data:`FRESH_S` ago skips the check (an empty round trip, a real share of a short
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
    def read(
        self, doing: str, snapshot: bool = False, route: bool = False
    ) -> Iterator[psycopg.Connection[Any]]:
        """A connection for reads; ``snapshot`` makes several statements see one snapshot.

        ``route``: the read may be served by the replica (``read_url``) when the router
        finds it fresh enough (:mod:`engramdb.stores.postgres.replica`); a replica connection
        failing mid-read marks the replica down and the retried call re-runs on the primary.
        """
        check(doing)
        replica = self._replica_conn() if route and self.router is not None else None
        if route and self.router is not None:
            self.router.served(replica is not None)
        try:
            if replica is None:
                with self._primary() as conn, budgeted(conn):
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
                    with self._using(*replica) as conn, budgeted(conn):
                        if snapshot:
                            with conn.transaction():
                                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                                yield conn
                        else:
                            yield conn
                except psycopg.Error as exc:
                    if is_connection_failure(exc) and self.router is not None:
                        self.router.mark_down(str(exc).strip() or type(exc).__name__)
                    raise
        except (psycopg.Error, PoolTimeout) as exc:
            raise self.translate(exc, doing) from exc

    def _replica_conn(self) -> tuple[ConnectionPool[Any], psycopg.Connection[Any]] | None:
        """A replica connection for one routed read, or None to read the primary."""
        self._pool_now()  # after fork: reopen both pools
        router, pool = self.router, self._rpool
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
