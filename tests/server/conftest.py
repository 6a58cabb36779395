"""Fixtures of the REST tests: a real SQLite file, the hash embedder, the real ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import ADMIN_HEADERS, ADMIN_KEY, MAX_TEXT

from engramdb import HashEmbedder, Memory, Settings
from engramdb.server import create_app


@pytest.fixture
def server_settings(tmp_path: Path) -> Settings:
    """Settings of a fresh store file with a small text limit (to exercise 413)."""
    return Settings(
        url=f"sqlite:///{tmp_path / 'server.db'}",
        embedder="hash",
        hash_dim=64,
        max_text_bytes=MAX_TEXT,
        admin_key=ADMIN_KEY,
    )


@pytest.fixture
def server_mem(server_settings: Settings) -> Iterator[Memory]:
    """The Memory the app serves (hash embedder: no model)."""
    m = Memory(settings=server_settings, embedder=HashEmbedder(64))
    yield m
    m.close()


@pytest.fixture
async def client(server_mem: Memory) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the real ASGI app in-process, with the admin key."""
    app = create_app(server_mem)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://engram.test", headers=ADMIN_HEADERS
    ) as c:
        yield c
