"""Helpers shared by the benchmarks: latency summaries, RSS, sizes on disk, JSON output."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
CACHE_DIR = ROOT / "bench" / ".cache"


def latency(samples_s: Sequence[float]) -> dict[str, float]:
    """Summarise latencies given in seconds as milliseconds: n, mean, p50, p95, p99, max."""
    arr = np.asarray(samples_s, dtype=np.float64) * 1000.0
    if arr.size == 0:
        return {"n": 0}
    return {
        "n": int(arr.size),
        "mean_ms": round(float(arr.mean()), 4),
        "p50_ms": round(float(np.percentile(arr, 50)), 4),
        "p95_ms": round(float(np.percentile(arr, 95)), 4),
        "p99_ms": round(float(np.percentile(arr, 99)), 4),
        "max_ms": round(float(arr.max()), 4),
    }


def variants_against(
    times: dict[str, list[float]],
    base: str,
    agree: dict[str, int],
    n: int,
    overlap: dict[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """Each variant's latency beside the ``base`` variant's, with the share of ``n``
    queries whose answers agreed with it (and their mean overlap, where given): how the
    keyword probes report the alternatives they time side by side."""
    ref = latency(times[base])
    out: dict[str, dict[str, float]] = {}
    for name, samples in times.items():
        lat = latency(samples)
        out[name] = {
            **lat,
            "p50_ratio_to_today": round(lat["p50_ms"] / ref["p50_ms"], 3),
            "p95_ratio_to_today": round(lat["p95_ms"] / ref["p95_ms"], 3),
            "same_top_as_today": round(agree[name] / n, 4),
        }
        if overlap is not None:
            out[name]["overlap_with_today"] = round(overlap[name] / n, 4)
    return out


def before_after(before: str, after: str, samples: dict[str, list[float]]) -> dict[str, Any]:
    """Two variants' latencies and the after/before ratios of their p50 and p95."""
    old, new = latency(samples[before]), latency(samples[after])
    return {
        before: old,
        after: new,
        "p50_ratio": round(new["p50_ms"] / old["p50_ms"], 3),
        "p95_ratio": round(new["p95_ms"] / old["p95_ms"], 3),
    }


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def dir_size_mb(path: Path) -> float:
    """Total size of the files under ``path`` (or of the file) in MiB."""
    if path.is_file():
        return round(path.stat().st_size / 2**20, 2)
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return round(total / 2**20, 2)


def ratio(a: float, b: float) -> float | None:
    """``a / b`` rounded, or None when ``b`` is zero."""
    return round(a / b, 3) if b else None


def machine() -> dict[str, Any]:
    """What the figures were measured on (they are noisy on a shared 2-core machine)."""
    try:
        load = list(os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux
        load = []
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_report(report: dict[str, Any], out_dir: Path, name: str) -> Path:
    """Write ``report`` as ``<out_dir>/<name>.json`` and return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def log(msg: str) -> None:
    """Progress to stderr (stdout carries the summary)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def finish(report: dict[str, Any], out_dir: Path, name: str, quick: bool) -> dict[str, Any]:
    """Write ``<name>.json`` (``<name>_quick.json`` for a quick run), print its summary and
    return the report.

    A quick run writes a file of its own: its figures (a small corpus) must never replace
    the committed full-run results a README or the architecture cites.
    """
    report["config"]["quick"] = quick
    path = write_report(report, out_dir, f"{name}_quick" if quick else name)
    print(json.dumps(report["summary"], indent=2))
    log(f"wrote {path}")
    return report
