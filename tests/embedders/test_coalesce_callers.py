"""Concurrent single-text embeds from the async API and from REST share one encoder batch.

The coalescing window is far longer than the calls take, so a batch can only start by
filling up: it holds exactly as many texts as there are callers, and it fills only if the
calls reach the embedder at the same time. Were they serialised anywhere on the way (the
engine, the facade's pool, the REST app), the first one would wait out the window alone and
the batch count would show it. Each caller must still get its own vector: the top hit of
each query is checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engramdb import AsyncMemory, Memory
from engramdb._facade import shared_pool
from engramdb.embedders.onnx_minilm import OnnxMiniLMEmbedder
from engramdb.server import create_app

pytestmark = pytest.mark.model

WINDOW_MS = 60_000.0
RECORDS = ["Maria is allergic to peanuts.", "Alice moved from Berlin to Lisbon."]
QUERIES = {
    "who has a food allergy": RECORDS[0],
    "where does alice live now": RECORDS[1],
    "peanut allergy": RECORDS[0],
    "relocated to portugal": RECORDS[1],
}


def callers() -> int:
    """As many concurrent calls as the facade's pool runs at once (at most four queries)."""
    return min(len(QUERIES), shared_pool()._max_workers)


def coalescing_embedder(n: int) -> OnnxMiniLMEmbedder:
    embedder = OnnxMiniLMEmbedder(coalesce_ms=WINDOW_MS, batch_size=n, cache_size=0)
    assert embedder.coalescer is not None
    return embedder


async def test_concurrent_async_searches_share_one_encoder_batch(tmp_path: Path) -> None:
    n = callers()
    embedder = coalescing_embedder(n)
    mem = AsyncMemory(f"sqlite:///{tmp_path / 'a.db'}", embedder=embedder)
    try:
        await mem.add([{"text": t, "user_id": "u"} for t in RECORDS])  # a batch: not coalesced
        assert embedder.coalescer is not None and embedder.coalescer.batches == 0
        queries = list(QUERIES)[:n]
        pages = await asyncio.wait_for(
            asyncio.gather(*(mem.search(q, user_id="u", top_k=1) for q in queries)),
            timeout=WINDOW_MS / 2000,
        )
    finally:
        await mem.aclose()
    assert (embedder.coalescer.batches, embedder.coalescer.items) == (1, n)
    assert [p.hits[0].record.text for p in pages] == [QUERIES[q] for q in queries]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Memory, OnnxMiniLMEmbedder]]:
    """A Memory (built off the event loop, as the server does) over two records."""
    embedder = coalescing_embedder(callers())
    memory = Memory(f"sqlite:///{tmp_path / 'r.db'}", embedder=embedder)
    memory.add([{"text": t, "user_id": "u"} for t in RECORDS])
    yield memory, embedder
    memory.close()


async def test_concurrent_rest_searches_share_one_encoder_batch(
    served: tuple[Memory, OnnxMiniLMEmbedder],
) -> None:
    memory, embedder = served
    n = callers()
    transport = httpx.ASGITransport(
        app=create_app(memory, settings=memory.settings.model_copy(update={"auth": "off"})),
        raise_app_exceptions=False,
    )
    queries = list(QUERIES)[:n]
    async with httpx.AsyncClient(transport=transport, base_url="http://engram.test") as c:
        responses = await asyncio.wait_for(
            asyncio.gather(
                *(
                    c.post(
                        "/v1/namespaces/default/search",
                        json={"query": q, "user_id": "u", "top_k": 1},
                    )
                    for q in queries
                )
            ),
            timeout=WINDOW_MS / 2000,
        )
    assert [r.status_code for r in responses] == [200] * n, responses[0].text
    assert embedder.coalescer is not None
    assert (embedder.coalescer.batches, embedder.coalescer.items) == (1, n)
    texts = [r.json()["hits"][0]["record"]["text"] for r in responses]
    assert texts == [QUERIES[q] for q in queries]
