"""Helpers of the cache-tier tests (a module of its own: ``conftest`` names are ambiguous)."""

from __future__ import annotations

from typing import Any

from engramdb import HashEmbedder, Memory, Settings

DIM = 64


def open_mem(url: str, cache_url: str | None, namespace: str = "default", **kw: Any) -> Memory:
    """A Memory with the hash embedder and (optionally) the cache tier."""
    settings = Settings(
        url=url, embedder="hash", hash_dim=DIM, cache_url=cache_url, namespace=namespace, **kw
    )
    return Memory(embedder=HashEmbedder(DIM), settings=settings)
