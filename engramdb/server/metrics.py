"""Prometheus metrics of the service, and the ``/metrics`` route that exposes them.

Recorded at one place: :class:`PrometheusObserver` is installed as the library's observer
(:mod:`engramdb.observe`), so every verb call through ``Memory``/``AsyncMemory`` counts,
whichever surface made it (REST, MCP, and later ZeroMQ), with no code in any route.

With several worker processes (``serve --workers N``) the runner points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start; each worker
writes its values there and a scrape of any worker reads all of them (prometheus-client's
multiprocess mode). The variable must be set before this module is imported, which is why
the runner sets it before spawning.

Metrics (all prefixed as named):

* ``memory_operations_total{op,status}``: verb calls; ``status`` is ``ok`` or the error code
  of ``engramdb.errors`` (``not_found``, ``validation_error``, ...).
* ``memory_retrieval_seconds{op}`` / ``memory_write_seconds{op}``: latency of read and
  write verbs, as the caller saw it (time waiting for a thread included).
* ``embedding_seconds``: one embedder call (a batch); ``entity_extraction_seconds``: one
  batch through the NLP step (the background worker's or an inline write's).
* ``memory_cache_hits_total`` / ``memory_cache_misses_total``: the optional Redis tier.
* ``memory_store_errors_total{kind}``: calls that failed in the store, by error code.
* ``memory_records{namespace}``: records per namespace, refreshed at most every
  ``RECORDS_REFRESH_S`` seconds by a scrape, the largest ``MAX_NAMESPACES`` namespaces.
* ``memory_pool_queue_depth{pool}``: calls waiting for a thread of the shared pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from engramdb._async_memory import AsyncMemory
from engramdb.errors import EngramError, StoreError
from engramdb.observe import observer, set_observer

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
RECORDS_REFRESH_S = 10.0
MAX_NAMESPACES = 200

READ_OPS = frozenset(
    {
        "get",
        "get_many",
        "list",
        "count",
        "history",
        "search",
        "events",
        "snapshot",
        "get_slots",
        "namespaces",
        "stats",
    }
)
WRITE_OPS = frozenset(
    {
        "add",
        "update",
        "delete",
        "delete_all",
        "add_messages",
        "log_event",
        "set_slots",
        "forget",
        "import_",
        "restore",
        "reembed",
    }
)
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

OPERATIONS = Counter(
    "memory_operations_total", "Verb calls by operation and outcome", ["op", "status"]
)
RETRIEVAL_SECONDS = Histogram(
    "memory_retrieval_seconds", "Latency of read verbs", ["op"], buckets=_LATENCY_BUCKETS
)
WRITE_SECONDS = Histogram(
    "memory_write_seconds", "Latency of write verbs", ["op"], buckets=_LATENCY_BUCKETS
)
EMBEDDING_SECONDS = Histogram(
    "embedding_seconds", "Time of one embedder call (a batch)", buckets=_LATENCY_BUCKETS
)
ENTITY_EXTRACTION_SECONDS = Histogram(
    "entity_extraction_seconds", "Time of one entity extraction batch", buckets=_LATENCY_BUCKETS
)
CACHE_HITS = Counter("memory_cache_hits_total", "Entries served by the cache tier")
CACHE_MISSES = Counter("memory_cache_misses_total", "Entries the cache tier did not hold")
STORE_ERRORS = Counter("memory_store_errors_total", "Calls failed in the store", ["kind"])
RECORDS = Gauge(
    "memory_records",
    "Records per namespace (refreshed by scrapes)",
    ["namespace"],
    multiprocess_mode="mostrecent",
)
POOL_QUEUE = Gauge(
    "memory_pool_queue_depth",
    "Calls waiting for a thread of a pool",
    ["pool"],
    multiprocess_mode="livesum",
)
_TIMINGS = {"embedding": EMBEDDING_SECONDS, "entity_extraction": ENTITY_EXTRACTION_SECONDS}


def outcome(error: BaseException | None) -> str:
    """The ``status`` label of a call: ``ok``, the engramdb error code, or a fixed word."""
    if error is None:
        return "ok"
    if isinstance(error, EngramError):
        return error.code
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return "internal_error"


class PrometheusObserver:
    """The library's observer in the service: each report becomes a metric update.

    Labelled children are looked up once and kept: ``labels()`` builds a key and takes the
    metric's lock on every call, which cost more than the update itself.
    """

    def __init__(self) -> None:
        self._ops: dict[tuple[str, str], Any] = {}
        self._latency: dict[str, Any] = {}
        self._queues: dict[str, Any] = {}

    def operation(self, op: str, seconds: float, error: BaseException | None) -> None:
        """Count the call; time it as a read or a write; count a store failure by kind."""
        status = outcome(error)
        counter = self._ops.get((op, status))
        if counter is None:
            counter = self._ops[(op, status)] = OPERATIONS.labels(op=op, status=status)
        counter.inc()
        histogram = self._latency.get(op)
        if histogram is None and (op in READ_OPS or op in WRITE_OPS):
            family = RETRIEVAL_SECONDS if op in READ_OPS else WRITE_SECONDS
            histogram = self._latency[op] = family.labels(op=op)
        if histogram is not None:
            histogram.observe(seconds)
        if isinstance(error, StoreError):
            STORE_ERRORS.labels(kind=error.code).inc()

    def timing(self, name: str, seconds: float) -> None:
        """Observe a stage's time (unknown stage names are ignored)."""
        histogram = _TIMINGS.get(name)
        if histogram is not None:
            histogram.observe(seconds)

    def cache(self, hits: int, misses: int) -> None:
        """Count cache hits and misses."""
        if hits:
            CACHE_HITS.inc(hits)
        if misses:
            CACHE_MISSES.inc(misses)

    def queued(self, pool: str, delta: int) -> None:
        """Move the pool's queue gauge."""
        gauge = self._queues.get(pool)
        if gauge is None:
            gauge = self._queues[pool] = POOL_QUEUE.labels(pool=pool)
        gauge.inc(delta)


def install_observer() -> None:
    """Make this process report to Prometheus (once; an observer a test set is replaced)."""
    if not isinstance(observer(), PrometheusObserver):
        set_observer(PrometheusObserver())


def registry() -> Any:
    """The registry a scrape reads: every worker's values in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
        return reg
    return REGISTRY


def worker_exited() -> None:
    """Drop this process's live gauges from the shared directory (a worker shutting down)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _RecordsGauge:
    """Refreshes ``memory_records`` from ``namespaces()`` at most every RECORDS_REFRESH_S."""

    def __init__(self) -> None:
        self.at = -float("inf")
        self.lock = asyncio.Lock()

    async def refresh(self, memory: AsyncMemory) -> None:
        if time.monotonic() - self.at < RECORDS_REFRESH_S:
            return
        async with self.lock:
            if time.monotonic() - self.at < RECORDS_REFRESH_S:
                return
            counts = await memory.namespaces()
            self.at = time.monotonic()
        largest = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_NAMESPACES]
        if not os.environ.get(MULTIPROC_ENV):
            RECORDS.clear()  # a forgotten namespace leaves the gauge
        for namespace, n in largest:
            RECORDS.labels(namespace=namespace).set(n)


metrics_router = APIRouter()


@metrics_router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format. Keyed like other routes once keys exist, unless
    ``metrics_public`` is set (for a scrape port that only the monitoring network reaches)."""
    records: _RecordsGauge = request.app.state.records_gauge
    # A store failure shows in /ready; the other metrics still answer.
    with contextlib.suppress(EngramError):
        await records.refresh(request.app.state.memory)
    return Response(generate_latest(registry()), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: Any) -> None:
    """Add ``/metrics`` to ``app`` and make this process report to it."""
    install_observer()
    app.state.records_gauge = _RecordsGauge()
    app.include_router(metrics_router)


def operation_figures() -> list[dict[str, Any]]:
    """Per operation, from the registry a scrape reads (every worker's values): calls, calls
    that failed, mean latency and the p50/p95 bucket bounds, for the admin page.

    A percentile is the upper bound of the first histogram bucket holding it (what a
    histogram can tell); past the last finite bucket it is None.
    """
    calls: dict[str, dict[str, float]] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    sums: dict[str, float] = {}
    for family in registry().collect():
        for sample in family.samples:
            op = sample.labels.get("op")
            if op is None:
                continue
            if sample.name == "memory_operations_total":
                mine = calls.setdefault(op, {"calls": 0.0, "failed": 0.0})
                mine["calls"] += sample.value
                if sample.labels.get("status") != "ok":
                    mine["failed"] += sample.value
            elif sample.name in ("memory_retrieval_seconds_bucket", "memory_write_seconds_bucket"):
                bound = float(sample.labels["le"])
                buckets.setdefault(op, []).append((bound, sample.value))
            elif sample.name in ("memory_retrieval_seconds_sum", "memory_write_seconds_sum"):
                sums[op] = sums.get(op, 0.0) + sample.value
    out = []
    for op in sorted(calls):
        merged: dict[float, float] = {}
        for bound, count in buckets.get(op, []):
            merged[bound] = merged.get(bound, 0.0) + count  # one series per worker, summed
        ordered = sorted(merged.items())
        timed = ordered[-1][1] if ordered else 0.0
        out.append(
            {
                "op": op,
                "calls": int(calls[op]["calls"]),
                "failed": int(calls[op]["failed"]),
                "mean_ms": round(sums.get(op, 0.0) / timed * 1000, 3) if timed else None,
                "p50_ms": _bucket_bound(ordered, 0.50),
                "p95_ms": _bucket_bound(ordered, 0.95),
            }
        )
    return out


def operation_errors() -> list[tuple[str, str, int]]:
    """``(op, error code, calls)`` of every failed outcome counted, most calls first."""
    found: dict[tuple[str, str], float] = {}
    for family in registry().collect():
        for sample in family.samples:
            if sample.name != "memory_operations_total":
                continue
            op, status = sample.labels.get("op", ""), sample.labels.get("status", "ok")
            if status != "ok":
                found[(op, status)] = found.get((op, status), 0.0) + sample.value
    ordered = sorted(found.items(), key=lambda item: (-item[1], item[0]))
    return [(op, status, int(count)) for (op, status), count in ordered if count]


def _bucket_bound(cumulative: list[tuple[float, float]], q: float) -> float | None:
    total = cumulative[-1][1] if cumulative else 0.0
    if not total:
        return None
    for bound, count in cumulative:
        if count >= q * total:
            return None if math.isinf(bound) else round(bound * 1000, 3)
    return None
