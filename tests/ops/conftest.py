"""Fixtures of the legacy-migration tests: a real redis-server for the Redis source."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    """One redis-server for the session (started here, stopped at the end)."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def redis_server(redis_session: RedisServer) -> Iterator[RedisServer]:
    """The session's server, empty at the start of the test."""
    with redis_session.client() as c:
        c.flushall()
    return redis_session
