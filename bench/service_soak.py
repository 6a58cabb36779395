"""The soak phase of the service benchmark: is the server's memory flat under steady load?

``clients`` keep-alive httpx callers run a mixed load against one server for ``seconds``:
7 searches in 10 calls, 3 adds, and once a caller holds :data:`KEEP` records of its own it
deletes its oldest after each add, so the store's size stays level and any growth of the
server's memory is the service's, not the data's. The server's RSS (with its worker
processes) is sampled every ``sample_s`` seconds.

"Flat" means the least-squares slope of RSS over the second half of the run (the first half
holds the warm-up: caches, the allocator's arenas, SQLite's page cache filling) is within
:data:`FLAT_MB_PER_MIN`.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import latency
from bench.service_drivers import Calls

KEEP = 20
FLAT_MB_PER_MIN = 1.0
SEARCH_IN_10 = 7


async def _load(
    base: str, key: str, namespace: str, clients: int, stop: threading.Event, out: dict[str, Any]
) -> None:
    import httpx

    calls = Calls("soak")
    ns = f"/v1/namespaces/{namespace}"
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    samples: dict[str, list[float]] = {"search": [], "add": [], "delete": []}
    errors: collections.Counter[str] = collections.Counter()

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60, headers=headers) as c:

        async def timed(op: str, method: str, path: str, body: Any = None) -> Any:
            t0 = time.perf_counter()
            try:
                resp = await c.request(method, path, json=body)
            except httpx.HTTPError as exc:
                errors[f"{op}: {type(exc).__name__}"] += 1
                return None
            if resp.status_code not in (200, 204):
                errors[f"{op}: {resp.status_code}"] += 1
                return None
            samples[op].append(time.perf_counter() - t0)
            return resp

        async def caller() -> None:
            mine: collections.deque[str] = collections.deque()
            i = 0
            while not stop.is_set():
                i += 1
                if i % 10 < SEARCH_IN_10:
                    await timed("search", "POST", f"{ns}/search", calls.search())
                    continue
                resp = await timed("add", "POST", f"{ns}/records", calls.add())
                if resp is not None:
                    mine.extend(r["id"] for r in resp.json()["results"] if r.get("id"))
                while len(mine) > KEEP:
                    await timed("delete", "DELETE", f"{ns}/records/{mine.popleft()}")

        await asyncio.gather(*(caller() for _ in range(clients)))
    out["calls"] = {op: latency(xs) for op, xs in samples.items()}
    out["errors"] = sum(errors.values())
    out["errors_by_kind"] = dict(errors)


def soak(
    base: str,
    key: str,
    namespace: str,
    rss_mb: Callable[[], float],
    seconds: float,
    clients: int = 4,
    sample_s: float | None = None,
) -> dict[str, Any]:
    """Run the mixed load for ``seconds`` while sampling ``rss_mb()``; see the module."""
    every = sample_s if sample_s is not None else max(0.25, min(5.0, seconds / 60))
    stop = threading.Event()
    result: dict[str, Any] = {}
    failure: list[BaseException] = []

    def drive() -> None:
        try:
            asyncio.run(_load(base, key, namespace, clients, stop, result))
        except BaseException as exc:  # reported below, the samples stay
            failure.append(exc)

    driver = threading.Thread(target=drive, daemon=True)
    start = time.perf_counter()
    points: list[tuple[float, float]] = [(0.0, rss_mb())]
    driver.start()
    while (now := time.perf_counter() - start) < seconds:
        time.sleep(min(every, max(0.0, seconds - now)))
        points.append((round(time.perf_counter() - start, 2), rss_mb()))
    stop.set()
    driver.join(120)
    if failure:
        result["driver_failed"] = repr(failure[0])[:300]
    return {**summarize_rss(points, seconds), "clients": clients, **result}


def summarize_rss(points: list[tuple[float, float]], seconds: float) -> dict[str, Any]:
    """Start, end and max RSS, the slope over the second half, and whether it is flat."""
    rss = [mb for _, mb in points]
    late = [(t, mb) for t, mb in points if t >= seconds / 2]
    slope: float | None = None
    if len(late) >= 3:
        ts = np.array([t for t, _ in late]) / 60.0
        slope = round(float(np.polyfit(ts, np.array([mb for _, mb in late]), 1)[0]), 3)
    return {
        "seconds": seconds,
        "samples": [[t, mb] for t, mb in points],
        "rss_mb_start": rss[0],
        "rss_mb_end": rss[-1],
        "rss_mb_max": max(rss),
        "second_half_slope_mb_per_min": slope,
        "flat_limit_mb_per_min": FLAT_MB_PER_MIN,
        "flat": slope is not None and abs(slope) <= FLAT_MB_PER_MIN,
    }
