"""The parts of ``engramdb bench embedder`` that measure ceilings and floors, run tiny.

The HTTP part serves real ``engramdb serve --workers 2`` processes (and a no-op uvicorn app)
with the service's admin key; the floor part runs the real ONNX file and the real torch
model. Only the shape and sanity of the figures are asserted, never their size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.embedder_http import CONCURRENCY, http_adds


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
