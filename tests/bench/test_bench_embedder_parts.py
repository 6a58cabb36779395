"""The parts of ``engramdb bench embedder`` that measure ceilings and floors, run tiny.

The HTTP part serves real ``engramdb serve --workers 2`` processes (and a no-op uvicorn app)
with the service's admin key; the floor part runs the real ONNX file and the real torch
model. Only the shape and sanity of the figures are asserted, never their size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.embedder import http_summary
from bench.embedder_http import CONCURRENCY, http_adds

# A floor as measure_floor reports it (the figures made up: only the arithmetic is tested).
FLOOR = {
    "raw_onnx_over_torch_throughput": 1.5,
    "per_request_encoder_ceiling_over_torch": 2.5,
    "per_request_encoder_ceiling_over_torch_cpu": 2.4,
    "onnx_cheapest_cpu_ms_per_text": 8.0,
    "torch_single_cpu_ms_per_text": 18.0,
    "int8_one_per_call_over_torch_throughput": 2.0,
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    return {**env, "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_http_adds_with_the_hash_embedder_and_the_noop_server(tmp_path: Path) -> None:
    texts = [f"http bench text number {i}" for i in range(CONCURRENCY)]
    report = http_adds(tmp_path, texts, 1, _env(), ["hash", "noop"])
    assert set(report) == {"hash", "noop"}
    for variant in ("hash", "noop"):
        assert len(report[variant]["waves"]) == 1
        assert report[variant]["texts_per_s"] > 0
        assert report[variant]["p95_ms"] > 0
        cpu = report[variant]["cpu_ms_per_add"]
        assert set(cpu) == {"server", "extraction", "client"}
        assert cpu["client"] > 0 and all(v >= 0 for v in cpu.values())
        assert 0 <= report[variant]["busiest_worker_share"] <= 1
    # The hash server's workers parse, validate and store each add: CPU was spent there.
    assert report["hash"]["cpu_ms_per_add"]["server"] > 0
    summary = http_summary(report, FLOOR)
    assert summary["http_adds_per_s_hash"] == report["hash"]["texts_per_s"]
    assert summary["http_cpu_ms_per_add_hash"] > 0
    assert summary["http_cpu_bound_ceiling_over_torch"] > 1  # torch's text costs more here
    # Every add was accepted (a refused one raises): the records are in the store.
    import sqlite3

    with sqlite3.connect(tmp_path / "http-hash-0.db") as db:
        (count,) = db.execute("SELECT count(*) FROM records").fetchone()
    assert count == CONCURRENCY + 32  # the timed wave and the warm-up wave


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_floor_reports_every_case_and_both_ceilings() -> None:
    from bench.embedder_floor import SMALL_BATCHES, measure_floor

    texts = [f"a text about topic {i} and its details" for i in range(16)]
    report = measure_floor(texts, texts[:8], 1)
    cases = report["ms_per_text"]
    for n in (1, 2):
        assert cases[f"onnx_batch64_threads{n}"] > 0
        assert cases[f"torch_batch64_threads{n}"] > 0
    assert all(cases[f"onnx_batch{b}_threads1"] > 0 for b in SMALL_BATCHES)
    assert report["raw_onnx_over_torch_throughput"] > 0
    assert report["per_request_encoder_ceiling_over_torch"] > 0
    assert set(report["cpu_ms_per_text"]) == set(cases)
    assert all(v > 0 for v in report["cpu_ms_per_text"].values())
    assert report["onnx_cheapest_cpu_ms_per_text"] == min(
        report["cpu_ms_per_text"][f"onnx_batch{b}_threads1"] for b in (*SMALL_BATCHES, 64)
    )
    assert report["per_request_encoder_ceiling_over_torch_cpu"] > 0
    assert set(FLOOR) <= set(report)  # the made-up floor above has the real one's keys
