"""Smoke test of the service benchmark: a tiny run against real servers writes a complete
service_quick.json (the figures themselves are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main

REQUIRED = [
    "http_1_added_p50_ms",
    "http_8_throughput_over_inprocess",
    "http_8_p95_over_inprocess",
    "zmq_1_added_p50_ms",
    "zmq_8_search_throughput_over_inprocess",
    "http_32_add_throughput_over_inprocess",
    "health_p95_ms_under_heavy",
    "huge_body_rss_growth_mb",
    "huge_body_rss_growth_mb_later_rounds",
    "http_floor_p50_ms",
    "http_floor_fastapi_p50_ms",
    "http_floor_fastapi_thread_p50_ms",
    "http_floor_fastapi_httptools_p50_ms",
    "http_1_search_added_over_floor_ms",
    "soak_rss_mb_start",
    "soak_rss_mb_end",
    "soak_rss_mb_max",
]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_service_bench_quick(tmp_path: Path) -> None:
    rc = main(
        [
            "service",
            *("--quick", "--records", "300", "--seconds", "0.3", "--soak-seconds", "1.5"),
            *("--out", str(tmp_path)),
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "service_quick.json").read_text())
    summary = report["summary"]
    missing = [k for k in REQUIRED if summary.get(k) is None]
    assert not missing, missing
    assert summary["records"] == 300 and summary["errors"] == 0
    # Both refusals of the 300 MB body are 413s, whichever way it was sent.
    assert all(" 413 " in line for line in summary["huge_body_statuses"]), summary
    soak = report["soak"]
    assert soak["seconds"] == 1.5 and len(soak["samples"]) >= 3 and soak["errors"] == 0
    assert set(report["floor"]) == {
        "starlette",
        "fastapi",
        "fastapi_thread",
        "fastapi_httptools",
    }
    for surface in ("http", "zmq"):
        for phase in report["servers"]["workers_2"][surface].values():
            assert phase["n"] > 0 and phase["errors"] == 0, phase
