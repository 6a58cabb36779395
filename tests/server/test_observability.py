"""Metrics, structured logs, liveness and readiness of the service.

In-process (the real ASGI app over a real SQLite file) for what one process shows, and a
real ``engramdb serve --workers 2`` for the multiprocess metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import ADMIN_HEADERS, ServerProcess, free_port

from engramdb import HashEmbedder, Memory, Settings
from engramdb._facade import shared_pool
from engramdb.ops.keys import ENV_ADMIN_ID
from engramdb.server import create_app
from engramdb.server.logs import JsonFormatter

NS = "/v1/namespaces/obs"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


class BreakableEmbedder(HashEmbedder):
    """The hash embedder, until ``broken`` is set: then every call raises."""

    broken = False

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        if self.broken:
            raise RuntimeError("model server went away")
        return super().embed(texts, query=query)


@pytest.fixture
def embedder() -> BreakableEmbedder:
    return BreakableEmbedder(64)


@pytest.fixture
async def obs_client(
    server_settings: Settings, embedder: BreakableEmbedder
) -> AsyncIterator[httpx.AsyncClient]:
    mem = Memory(settings=server_settings, embedder=embedder)
    app = create_app(mem)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://engram.test", headers=ADMIN_HEADERS
        ) as c:
            yield c
    finally:
        mem.close()


# ---------------------------------------------------------------------------- metrics


async def test_metrics_count_verbs_by_outcome_and_time_them(obs_client: httpx.AsyncClient) -> None:
    before = (await obs_client.get("/metrics")).text
    for i in range(3):
        r = await obs_client.post(f"{NS}/records", json={"text": f"metric note {i}"})
        assert r.status_code == 200
    assert (await obs_client.get(f"{NS}/records/nope")).status_code == 404
    assert (await obs_client.post(f"{NS}/search", json={"query": "metric note"})).status_code == 200
    resp = await obs_client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    after = resp.text

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("memory_operations_total", op="add", status="ok") == 3
    assert delta("memory_operations_total", op="get", status="not_found") == 1
    assert delta("memory_operations_total", op="search", status="ok") == 1
    assert delta("memory_write_seconds_count", op="add") == 3
    assert delta("memory_retrieval_seconds_count", op="search") == 1
    assert delta("memory_retrieval_seconds_count", op="get") == 1
    assert delta("embedding_seconds_count") >= 4  # three texts and one query
    assert delta("embedding_seconds_sum") > 0
    assert sample(after, "memory_pool_queue_depth", pool="shared") == 0
    for family in ("entity_extraction_seconds", "memory_cache_hits", "memory_store_errors"):
        assert f"# HELP {family}" in after  # defined from the start, even before any use


async def test_entity_extraction_is_timed(server_settings: Settings) -> None:
    """Each batch through the NLP step (here inline, in the write) feeds its histogram."""
    mem = Memory(settings=server_settings.model_copy(update={"extract": "inline"}))
    transport = httpx.ASGITransport(app=create_app(mem), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://engram.test", headers=ADMIN_HEADERS
        ) as c:
            before = (await c.get("/metrics")).text
            body = {"text": "John works for Microsoft in Seattle"}
            assert (await c.post(f"{NS}/records", json=body)).status_code == 200
            after = (await c.get("/metrics")).text
    finally:
        mem.close()
    count = "entity_extraction_seconds_count"
    assert sample(after, count) - sample(before, count) >= 1
    assert sample(after, "entity_extraction_seconds_sum") > sample(
        before, "entity_extraction_seconds_sum"
    )


async def test_records_per_namespace_gauge(obs_client: httpx.AsyncClient) -> None:
    for ns, n in (("obs", 3), ("other", 1)):
        for i in range(n):
            await obs_client.post(f"/v1/namespaces/{ns}/records", json={"text": f"n {i}"})
    text = (await obs_client.get("/metrics")).text  # this app's first scrape reads the counts
    assert sample(text, "memory_records", namespace="obs") == 3
    assert sample(text, "memory_records", namespace="other") == 1


async def test_a_store_failure_is_counted_by_kind(
    obs_client: httpx.AsyncClient, server_settings: Settings
) -> None:
    before = (await obs_client.get("/metrics")).text
    # Another connection holds the file's write lock: the add waits busy_timeout, then fails.
    db = server_settings.url.removeprefix("sqlite:///")
    await obs_client.post(f"{NS}/records", json={"text": "store exists"})
    mem = Memory(
        settings=server_settings.model_copy(update={"busy_timeout_ms": 0}),
        embedder=HashEmbedder(64),
    )
    holder = sqlite3.connect(db, timeout=0)
    try:
        app = create_app(mem)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=ADMIN_HEADERS
        ) as c:
            holder.execute("BEGIN IMMEDIATE")
            r = await c.post(f"{NS}/records", json={"text": "cannot be written now"})
            holder.rollback()
            assert r.status_code == 503 and r.json()["error"] == "busy", r.text
            after = (await c.get("/metrics")).text
    finally:
        holder.close()
        mem.close()
    assert (
        sample(after, "memory_store_errors_total", kind="busy")
        - sample(before, "memory_store_errors_total", kind="busy")
        == 1
    )
    assert (
        sample(after, "memory_operations_total", op="add", status="busy")
        - sample(before, "memory_operations_total", op="add", status="busy")
        == 1
    )


# ---------------------------------------------------------------------------- logs


async def test_request_id_is_taken_or_made_and_returned(obs_client: httpx.AsyncClient) -> None:
    given = await obs_client.get("/health", headers={"X-Request-ID": "trace-1.a:b"})
    assert given.headers["X-Request-ID"] == "trace-1.a:b"
    made = await obs_client.get("/health")
    assert len(made.headers["X-Request-ID"]) == 32
    # Not a plain token (log injection, oversized): replaced by a fresh id.
    for bad in ("two words", "x" * 129, "line\\nbreak"):
        r = await obs_client.get("/health", headers={"X-Request-ID": bad})
        assert r.headers["X-Request-ID"] != bad and len(r.headers["X-Request-ID"]) == 32
    err = await obs_client.get(f"{NS}/records/missing", headers={"X-Request-ID": "err-7"})
    assert err.status_code == 404 and err.headers["X-Request-ID"] == "err-7"


async def test_one_json_access_line_per_request_without_memory_text(
    obs_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "the launch code is 0000"
    with caplog.at_level(logging.INFO):
        refused = await obs_client.post(
            f"{NS}/records?x=1", json={"text": secret}, headers={"X-Request-ID": "req-0"}
        )
        assert refused.status_code == 422  # an unknown query parameter
        r = await obs_client.post(
            f"{NS}/records", json={"text": secret}, headers={"X-Request-ID": "req-1"}
        )
        assert r.status_code == 200
        rid = r.json()["results"][0]["id"]
        await obs_client.get(f"{NS}/records/{rid}", headers={"X-Request-ID": "req-2"})
        await obs_client.get("/no/such/path", headers={"X-Request-ID": "req-3"})
        ours = [rec for rec in caplog.records if rec.name.startswith("engramdb")]
        lines = [JsonFormatter().format(rec) for rec in ours]
    access = [json.loads(x) for x in lines if '"engramdb.access"' in x]
    assert [(a["method"], a["route"], a["status"], a["request_id"]) for a in access] == [
        ("POST", "/v1/namespaces/{ns}/records", 422, "req-0"),
        ("POST", "/v1/namespaces/{ns}/records", 200, "req-1"),
        ("GET", "/v1/namespaces/{ns}/records/{record_id}", 200, "req-2"),
        ("GET", "<unmatched>", 404, "req-3"),
    ]
    for a in access:
        # every request carried the admin key (ENGRAM_ADMIN_KEY): its id, never the secret
        assert a["level"] == "INFO" and a["key_id"] == ENV_ADMIN_ID and a["duration_ms"] >= 0
    everything = "\n".join(lines)
    assert secret not in everything and rid not in everything and "obs" not in everything


def test_the_json_formatter_writes_one_object_per_line() -> None:
    record = logging.makeLogRecord(
        {"name": "t", "levelname": "WARNING", "msg": "a\nb %s", "args": (object(),)}
    )
    record.extra_field = {"k": [1, 2]}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["message"].startswith("a\nb <object") and out["extra_field"] == {"k": [1, 2]}
    assert out["level"] == "WARNING" and out["ts"].endswith("Z")


# ---------------------------------------------------------------------------- probes


async def test_ready_reports_each_component_with_latency(obs_client: httpx.AsyncClient) -> None:
    r = await obs_client.get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    components = r.json()["components"]
    assert set(components) == {"store", "embedder", "cache"}
    assert components["cache"]["status"] == "disabled"
    for part in components.values():
        assert isinstance(part["latency_ms"], float) and part["latency_ms"] >= 0


async def test_liveness_holds_while_readiness_fails(
    obs_client: httpx.AsyncClient, embedder: BreakableEmbedder
) -> None:
    embedder.broken = True
    ready = await obs_client.get("/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "degraded"
    assert ready.json()["components"]["embedder"]["status"] == "error"
    assert "model server went away" not in ready.text  # the cause stays in the log
    live = await obs_client.get("/health")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    embedder.broken = False
    assert (await obs_client.get("/ready")).status_code == 200


async def test_ready_answers_while_every_thread_of_the_shared_pool_is_busy(
    obs_client: httpx.AsyncClient,
) -> None:
    # Searches, adds and exports run on the shared pool; with all of its threads held (and
    # more calls queued behind them), readiness must still answer: it has a thread of its own.
    release = threading.Event()
    pool = shared_pool()
    held = [pool.submit(release.wait, 60) for _ in range(32)]
    try:
        ready = await asyncio.wait_for(obs_client.get("/ready"), 30)
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        assert not any(f.done() for f in held)  # the pool stayed held throughout
    finally:
        release.set()
        for f in held:
            f.result(60)


# ---------------------------------------------------------------------------- processes


@pytest.mark.slow
def test_metrics_add_up_across_worker_processes(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    script = str(Path(sys.executable).with_name("engramdb"))
    argv = [script, "--no-model", "--url", f"sqlite:///{tmp_path / 'w.db'}", "serve"]
    server = ServerProcess(
        "serve",
        [*argv, "--port", str(port), "--workers", "2"],
        ServerProcess.clean_env(),
        tmp_path / "w.log",
    )
    total = 0

    def add(i: int) -> int:
        """One add on a fresh connection; the pid of the worker that served it."""
        with httpx.Client(
            base_url=base, timeout=30, headers=ADMIN_HEADERS
        ) as c:  # one connection: one worker
            r = c.post("/v1/namespaces/multi/records", json={"text": f"worker note {i}"})
            assert r.status_code == 200, r.text
            pid: int = c.get("/health").json()["pid"]
            return pid

    try:
        server.wait_ready(base)
        pids: set[int] = set()
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(pids) < 2 and total < 400:  # the kernel picks the accepting process
                pids |= set(pool.map(add, range(total, total + 16)))
                total += 16
        assert len(pids) == 2, f"only {pids} served {total} adds:\n{server.tail()}"
        with httpx.Client(base_url=base, timeout=30, headers=ADMIN_HEADERS) as c:
            scrapes = [c.get("/metrics") for _ in range(6)]
        for resp in scrapes:  # whichever worker answers, it reports both
            assert resp.status_code == 200, f"{resp.text}\n{server.tail()}"
            adds = sample(resp.text, "memory_operations_total", op="add", status="ok")
            assert adds == total, f"{adds} of {total} adds counted:\n{server.tail()}"
            assert sample(resp.text, "memory_write_seconds_count", op="add") == total
    finally:
        assert server.stop() == 0, server.tail()
    log = [json.loads(x) for x in server.log.read_text().splitlines() if x.startswith('{"ts"')]
    assert sum(1 for r in log if r.get("route") == "/v1/namespaces/{ns}/records") == total
