"""Smoke test of ``engramdb bench migrate``: a tiny run with model-free vectors writes its file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.timeout(600)
def test_migrate_bench_quick(tmp_path: Path) -> None:
    rc = main(
        [
            "migrate",
            "--quick",
            "--records",
            "1500",
            "--hash-vectors",
            "--reembed-records",
            "100",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "migrate_quick.json").read_text())
    summary = report["summary"]
    for key in (
        "chroma_read_rec_per_s",
        "sqlite_reuse_rec_per_s",
        "sqlite_reembed_rec_per_s",
        "postgres_reuse_rec_per_s",
        "postgres_reembed_rec_per_s",
    ):
        assert summary[key] > 0, key
    assert report["results"]["sqlite_reuse"]["written"] == 1500
    assert report["results"]["sqlite_reuse"]["embeddings_used"] == {"reused": 1500, "recomputed": 0}
    assert report["results"]["postgres_reembed"]["embeddings_used"] == {
        "reused": 0,
        "recomputed": 100,
    }
