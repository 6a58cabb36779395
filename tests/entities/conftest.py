"""Fixtures for entity tests: a Memory with extraction on, over each backend.

The spaCy pipeline is loaded once per process (the first test pays for it); the hash
embedder stands in for the model, because what is tested here is the extraction, not
the retrieval.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engramdb import HashEmbedder, Memory, Settings


def open_memory(url: str, extract: str = "background", **kw: object) -> Memory:
    """A Memory over ``url`` with extraction in the given mode."""
    return Memory(url, embedder=HashEmbedder(384), settings=Settings(extract=extract, **kw))


@pytest.fixture
def emem(store_url: str) -> Iterator[Memory]:
    """A Memory with background extraction (the default) over each backend."""
    m = open_memory(store_url)
    yield m
    m.close()
