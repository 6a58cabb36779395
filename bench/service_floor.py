"""The floor under the service's HTTP figures: what one Python HTTP round trip costs here.

The service benchmark's target "HTTP adds at most 1 ms to the in-process p50" can only be
judged against what any Python service pays for a keep-alive round trip on the same
machine, with the same client. So the run also serves trivial apps with the same uvicorn
(same event loop, same HTTP protocol implementation as ``engramdb serve``, h11) and drives
them with the same httpx driver, 1 client, the same search body:

* ``starlette``: a bare Starlette route answering a fixed small JSON object;
* ``fastapi``: FastAPI parsing the body into the service's own ``SearchRequest`` and
  answering a fixed 10-hit page through the service's ``SearchPageOut`` response model;
* ``fastapi_thread``: the same plus one hop to a worker thread and back (what any service
  whose store blocks must do once per call);
* ``fastapi_httptools``: ``fastapi`` served with uvicorn's httptools parser instead of h11,
  to show what the choice of HTTP parser costs.

None touches a store: the difference between a floor and the service is the service's own
per-request work (keys, limits, admission, logs, metrics, the route).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import log
from bench.service_drivers import phase_report, run_http
from engramdb.server import schemas as s

FLOORS: dict[str, tuple[str, str]] = {
    # name: (app kind, uvicorn http implementation)
    "starlette": ("starlette", "h11"),
    "fastapi": ("fastapi", "h11"),
    "fastapi_thread": ("fastapi_thread", "h11"),
    "fastapi_httptools": ("fastapi", "httptools"),
}
PATH = "/v1/namespaces/bench/search"


def _page() -> Any:
    """A 10-hit search page shaped like the service's answers (texts of a typical length)."""
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    hits = []
    for i in range(10):
        record = s.RecordOut(
            id=f"01JEXAMPLE{i:016d}",
            namespace="bench",
            text=f"note {i}: remember the dentist appointment next week and the visa paperwork",
            type="note",
            user_id="u7",
            agent_id=None,
            thread_id=None,
            metadata={},
            tags=[],
            source=None,
            importance=None,
            occurred_at=now,
            created_at=now,
            updated_at=now,
            valid_from=None,
            valid_to=None,
            expires_at=None,
            version=1,
            content_hash="0" * 64,
            event_id=None,
        )
        parts = s.ScorePartsOut(
            vector=0.5, keyword=0.25, fused=0.03, vector_rank=i + 1, keyword_rank=i + 1
        )
        hits.append(s.SearchHitOut(record=record, score=0.9 - i / 100, parts=parts, chunk="c0"))
    return s.SearchPageOut(hits=hits, next_cursor=None)


def floor_app(kind: str) -> Any:
    """The ASGI app of one floor (see the module docstring)."""
    if kind == "starlette":
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def search(request: Request) -> JSONResponse:
            await request.body()
            return JSONResponse({"hits": [], "next_cursor": None})

        async def health(request: Request) -> JSONResponse:
            return JSONResponse({"status": "ok"})

        return Starlette(routes=[Route(PATH, search, methods=["POST"]), Route("/health", health)])
    from fastapi import FastAPI

    app = FastAPI()
    page = _page()
    pool = ThreadPoolExecutor(max_workers=4)
    hop = kind == "fastapi_thread"

    @app.post(PATH, response_model=s.SearchPageOut)
    async def search(body: s.SearchRequest) -> s.SearchPageOut:
        if hop:
            return await asyncio.get_running_loop().run_in_executor(pool, lambda: page)
        return page

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(kind: str, port: int, http: str) -> None:
    """Serve one floor app on ``port`` (the entry point of the floor's server process)."""
    import uvicorn

    uvicorn.run(
        floor_app(kind),
        host="127.0.0.1",
        port=port,
        http=http,
        log_level="warning",
        access_log=False,
    )


def _server(kind: str, http: str, port: int, logdir: Path) -> tuple[subprocess.Popen, Any]:
    out = open(logdir / f"floor-{kind}-{http}.log", "wb")  # noqa: SIM115
    argv = [sys.executable, "-m", "bench.service_floor", kind, str(port), http]
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT), out


def _wait(base: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the floor server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the floor server did not start")


def measure_floors(
    body: Any, seconds: float, warm_s: float, logdir: Path, free_port: Any
) -> dict[str, Any]:
    """Each floor of :data:`FLOORS`, 1 client for ``seconds`` after ``warm_s`` of warm-up."""
    out: dict[str, Any] = {}
    for name, (kind, http) in FLOORS.items():
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc, logfile = _server(kind, http, port, logdir)
        try:
            _wait(base, proc)
            run_http(base, "floor", PATH, body, 1, warm_s)
            out[name] = rep = phase_report(run_http(base, "floor", PATH, body, 1, seconds), 1)
            log(f"floor {name}: p50 {rep.get('p50_ms')} ms, {rep['throughput_per_s']}/s")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            logfile.close()
    return out


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
