"""Shared fixtures: a real SQLite file per test, the hash embedder, and the real model.

``store_url`` is parametrized over every backend; the PostgreSQL store joins the list when
it lands, and every contract test then runs against it unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from engramdb import HashEmbedder, Memory, MiniLMEmbedder, Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty store of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'engram.db'}"
    raise AssertionError(request.param)


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
