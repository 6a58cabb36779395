"""Fixtures of the PostgreSQL store tests (``postgres_url`` comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_store_helpers import open_memory

from engramdb import Memory


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Memory]:
    """A Memory over a fresh PostgreSQL store (a schema of its own)."""
    m = open_memory(postgres_url)
    yield m
    m.close()
