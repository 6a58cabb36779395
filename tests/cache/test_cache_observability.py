"""The cache tier as the service reports it: /ready pings Redis, /metrics counts hits."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisServer

from engramdb import HashEmbedder, Memory, Settings
from engramdb.server import create_app

pytestmark = pytest.mark.redis


def sample(text: str, name: str) -> float:
    """The value of an unlabelled sample in a Prometheus exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                return float(s.value)
    return 0.0


async def test_ready_and_metrics_follow_the_cache(db_url: str, redis_server: RedisServer) -> None:
    settings = Settings(url=db_url, embedder="hash", hash_dim=64, cache_url=redis_server.url)
    mem = Memory(settings=settings, embedder=HashEmbedder(64))
    try:
        transport = httpx.ASGITransport(
            app=create_app(mem, settings=mem.settings.model_copy(update={"auth": "off"}))
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://engram.test") as c:
            ready = (await c.get("/ready")).json()
            assert ready["components"]["cache"]["status"] == "ok"
            assert ready["components"]["cache"]["latency_ms"] >= 0
            before = (await c.get("/metrics")).text
            rid = (await c.post("/v1/namespaces/c/records", json={"text": "hot"})).json()[
                "results"
            ][0]["id"]
            for _ in range(3):
                assert (await c.get(f"/v1/namespaces/c/records/{rid}")).status_code == 200
            after = (await c.get("/metrics")).text
            hits = sample(after, "memory_cache_hits_total") - sample(
                before, "memory_cache_hits_total"
            )
            misses = sample(after, "memory_cache_misses_total") - sample(
                before, "memory_cache_misses_total"
            )
            assert (hits, misses) == (2, 1)  # the first read fills the entry

            redis_server.stop()
            down = await c.get("/ready")
            # The service still serves from the store: ready, with the cache's failure shown.
            assert down.status_code == 200 and down.json()["status"] == "ok"
            cache = down.json()["components"]["cache"]
            assert cache["status"] == "error" and "redis" in cache["message"]
            assert redis_server.url not in down.text
            assert (await c.get(f"/v1/namespaces/c/records/{rid}")).status_code == 200
    finally:
        mem.close()
