"""``/health`` (liveness) and ``/ready`` (readiness): what an orchestrator polls.

``/health`` answers from the event loop alone, touching neither the store nor a thread
pool: it says the process is up and serving, so a store outage never gets a healthy
process restarted. ``/ready`` checks each component (the library's ``health`` verb): the
store answers a read, the embedder embeds, the cache answers a ping; each with its status
and latency. It answers 503 while the store or the embedder fails, so a load balancer
stops sending traffic; a failing cache shows in its entry but keeps the service ready, as
the service then serves from the store.

Neither waits for admission, and ``/ready``'s checks run on a thread of their own
(:func:`probe_pool`), not on the shared pool where every search, add and export queues: a
probe that waits behind a queue of heavy calls would time out and get a busy but healthy
service taken out of rotation.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request, Response

from engramdb.memory import Memory
from engramdb.server import schemas as s

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def probe_pool() -> ThreadPoolExecutor:
    """The one thread readiness checks run on (checks queue behind each other, never
    behind the service's calls)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engramdb-probe")
        return _pool


async def _check(request: Request) -> dict[str, Any]:
    memory: Memory = request.app.state.memory._view(Memory)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(probe_pool(), memory.health)


probes = APIRouter(tags=["meta"])


@probes.get("/health", response_model=s.LivenessOut)
async def health() -> s.LivenessOut:
    """Liveness: 200 while the process serves requests (no component is checked)."""
    return s.LivenessOut(status="ok", pid=os.getpid())


@probes.get(
    "/ready",
    response_model=s.HealthOut,
    responses={503: {"model": s.HealthOut, "description": "The store or the embedder fails"}},
)
async def ready(request: Request, response: Response) -> s.HealthOut:
    """Readiness: each component's status and latency; 503 unless the store and the
    embedder are ok."""
    report = dict(await _check(request))
    status = str(report.pop("status", "degraded"))
    if status != "ok":
        response.status_code = 503
    return s.HealthOut(status=status, components=report, pid=os.getpid())
