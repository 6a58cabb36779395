"""Helpers of the PostgreSQL store tests: opening a Memory, reading the catalog, counting calls."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from engramdb import HashEmbedder, Memory, Settings


def open_memory(url: str, **settings: Any) -> Memory:
    """A Memory on ``url`` with the 64-d hash embedder and these settings."""
    return Memory(url, embedder=HashEmbedder(64), settings=Settings(**settings))


def hnsw_definition(url: str) -> str:
    """The DDL of the HNSW index, as the server reports it."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_get_indexdef('chunks_hnsw'::regclass)").fetchone()
    assert row is not None
    return str(row[0])


def chunk_indexes(url: str) -> set[str]:
    """The names of the valid indexes on ``chunks``."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indisvalid AND i.indrelid = to_regclass('chunks')"
        ).fetchall()
    return {str(r[0]) for r in rows}


def count_calls(monkeypatch: pytest.MonkeyPatch, obj: object, names: list[str]) -> dict:
    """Count calls of the named methods of ``obj`` (the real methods still run)."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(obj, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(obj, name, counted)
    return calls
