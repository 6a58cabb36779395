"""``/health`` (liveness) and ``/ready`` (readiness): what an orchestrator polls.

``/health`` answers from the event loop alone, touching neither the store nor a thread
pool: it says the process is up and serving, so a store outage never gets a healthy
process restarted. ``/ready`` checks each component (the library's ``health`` verb): the
store answers a read, the embedder embeds, the cache answers a ping; each with its status
and latency. It answers 503 while the store or the embedder fails, so a load balancer
stops sending traffic; a failing cache shows in its entry but keeps the service ready, as
the service then serves from the store.
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from engramdb._async_memory import AsyncMemory
from engramdb.server import schemas as s


async def _memory(request: Request) -> AsyncMemory:
    mem: AsyncMemory = request.app.state.memory
    return mem


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
async def ready(mem: Annotated[AsyncMemory, Depends(_memory)], response: Response) -> s.HealthOut:
    """Readiness: each component's status and latency; 503 unless the store and the
    embedder are ok."""
    report = dict(await mem.health())
    status = str(report.pop("status", "degraded"))
    if status != "ok":
        response.status_code = 503
    return s.HealthOut(status=status, components=report, pid=os.getpid())
