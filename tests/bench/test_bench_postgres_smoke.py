"""Smoke test of the PostgreSQL benchmark: a tiny model-free run writes a complete
postgres.json (the benchmark starts and removes its own server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main

REQUIRED = [
    "engramdb_filtered_p95_ms",
    "pgvector_filtered_p95_ms",
    "engramdb_unfiltered_p95_ms",
    "pgvector_unfiltered_p95_ms",
    "engramdb_recall_at_10",
    "engramdb_ingest_rec_per_s",
    "pgvector_ingest_rec_per_s",
    "bulk_load_rec_per_s",
    "pgvector_copy_rec_per_s",
    "pgvector_executemany_rec_per_s",
]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_postgres_bench_quick_hash_vectors(tmp_path: Path) -> None:
    rc = main(
        [
            "postgres",
            "--quick",
            "--records",
            "1500",
            "--queries",
            "20",
            "--hash-vectors",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "postgres_quick.json").read_text())
    summary = report["summary"]
    missing = [k for k in REQUIRED if k not in summary]
    assert not missing, missing
    assert all(isinstance(summary[k], int | float) and summary[k] > 0 for k in REQUIRED)
    assert summary["records"] == 1500
    # A user's scope is scanned exactly: it finds what brute force finds.
    assert summary["engramdb_recall_at_10"] == 1.0
    assert report["bulk_load"]["records"] == 1500
    assert report["bulk_load"]["unfiltered_recall_at_10_after_load"] >= 0.9
    assert report["workload"]["vectors"] == "hash"
