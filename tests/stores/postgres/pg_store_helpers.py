"""Helpers of the PostgreSQL store tests: opening a Memory, reading the catalog, counting calls
(``count_calls``, shared with the other suites)."""

from __future__ import annotations

from typing import Any

import psycopg
from call_counts import count_calls

from engramdb import HashEmbedder, Memory, Settings

__all__ = ["chunk_indexes", "count_calls", "hnsw_definition", "open_memory"]


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
