"""Fixtures for entity tests: a Memory with extraction on, over each backend.

The spaCy pipeline is loaded once per process (the first test pays for it); the hash
embedder stands in for the model, because what is tested here is the extraction, not
the retrieval.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engramdb import HashEmbedder, Memory, Settings


@pytest.fixture
def emem(store_url: str) -> Iterator[Memory]:
    """A Memory with background extraction (the default) over each backend."""
    m = Memory(store_url, embedder=HashEmbedder(384), settings=Settings(extract="background"))
    yield m
    m.close()
