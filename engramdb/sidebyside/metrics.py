"""Exported metrics of the side-by-side wrappers, when prometheus_client is importable.

The wrappers keep plain attributes (counters and gauges a caller can read without any
dependency); these mirror them into the process's default Prometheus registry, created once
per process (a second registration of one name would raise).
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_metrics: dict[str, Any] | None = None


def metrics() -> dict[str, Any]:
    """The metric objects by short name; empty when prometheus_client is not installed."""
    global _metrics
    with _lock:
        if _metrics is not None:
            return _metrics
        try:
            from prometheus_client import Counter, Gauge
        except ImportError:
            _metrics = {}
            return _metrics
        _metrics = {
            "secondary_failures": Counter(
                "engramdb_dualwrite_secondary_failures",
                "Writes the secondary store did not take at once (queued for retry)",
            ),
            "queue_depth": Gauge(
                "engramdb_dualwrite_queue_depth", "Writes waiting in the dual-write retry queue"
            ),
            "rollbacks": Counter(
                "engramdb_sidebyside_rollbacks",
                "Automatic rollbacks of reads to the old store",
                ["reason"],
            ),
            "read_from_new": Gauge(
                "engramdb_sidebyside_read_from_new", "Percentage of reads served by the new store"
            ),
            "shadow_reads": Counter(
                "engramdb_sidebyside_compared_reads", "Reads run on both stores and compared"
            ),
            "shadow_errors": Counter(
                "engramdb_sidebyside_new_store_errors", "Reads the new store failed"
            ),
        }
        return _metrics


def inc(name: str, amount: float = 1.0, **labels: str) -> None:
    """Add to a counter (nothing when prometheus_client is absent)."""
    metric = metrics().get(name)
    if metric is not None:
        (metric.labels(**labels) if labels else metric).inc(amount)


def set_gauge(name: str, value: float) -> None:
    """Set a gauge (nothing when prometheus_client is absent)."""
    metric = metrics().get(name)
    if metric is not None:
        metric.set(value)
