"""Smoke test of the PostgreSQL benchmark: a tiny model-free run writes a complete
postgres.json (the benchmark starts and removes its own server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    "engramdb_disk_mb",
    "pgvector_disk_mb",
    "engramdb_cold_open_first_search_s",
    "engramdb_hybrid_filtered_extraction_stopped_p95_ms",
    "engramdb_hybrid_filtered_floor_p95_ms",
]


def quick_report(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run a quick model-free ``bench postgres`` with ``args``; return the report it wrote."""
    argv = ["postgres", "--quick", "--queries", "20", "--hash-vectors", *args]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    (written,) = tmp_path.glob("postgres*.json")
    report: dict[str, Any] = json.loads(written.read_text())
    return report


def assert_complete(summary: dict[str, Any]) -> None:
    """Every required figure is there, and a positive number."""
    missing = [k for k in REQUIRED if k not in summary]
    assert not missing, missing
    bad = [k for k in REQUIRED if not (isinstance(summary[k], int | float) and summary[k] > 0)]
    assert not bad, {k: summary[k] for k in bad}


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_postgres_bench_quick_hash_vectors(tmp_path: Path) -> None:
    report = quick_report(tmp_path, "--records", "1500")
    assert (tmp_path / "postgres_quick.json").exists()
    summary = report["summary"]
    assert_complete(summary)
    assert summary["records"] == 1500
    # A user's scope is scanned exactly: it finds what brute force finds.
    assert summary["engramdb_recall_at_10"] == 1.0
    assert report["bulk_load"]["records"] == 1500
    assert report["bulk_load"]["unfiltered_recall_at_10_after_load"] >= 0.9
    assert report["workload"]["vectors"] == "hash"
    # Each part of a filtered hybrid search is timed alone on the same queries; the floor
    # is, per query, the vector side plus the one read after fusion.
    parts = report["search"]["engramdb_hybrid_filtered_parts"]
    assert {p["n"] for p in parts.values()} == {parts["search"]["n"]} and parts["search"]["n"] > 0
    floor = parts["floor: vector side + read after fusion"]["mean_ms"]
    alone = parts["vector side alone"]["mean_ms"] + parts["read after fusion alone"]["mean_ms"]
    assert floor == pytest.approx(alone, abs=1e-3)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_postgres_bench_above_real_rows_bulk_loads_then_adds_a_tail(tmp_path: Path) -> None:
    # Above --real-rows (a million records in the real run) both systems are bulk-loaded
    # and only the last tenth is added online, on top of the loaded store.
    report = quick_report(tmp_path, "--records", "3000", "--real-rows", "1500")
    assert (tmp_path / "postgres_3k_quick.json").exists()
    summary = report["summary"]
    assert summary["records"] == 3000
    assert report["bulk_load"]["records"] == 2700
    assert report["bulk_load"]["pgvector_index_build_seconds"] > 0
    assert report["ingest"] == report["ingest"] | {"records": 300, "onto_records": 2700}
    assert report["config"]["bulk_loaded_records"] == 2700
    # Every record reached both systems: a user's exact scope finds what brute force finds.
    assert summary["engramdb_recall_at_10"] == 1.0
    assert summary["pgvector_recall_at_10"] >= 0.9
    assert_complete(summary)
