"""Smoke test of ``engramdb bench langgraph``: a tiny model-free run writes langgraph_quick.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_langgraph_bench_quick_without_postgres(tmp_path: Path) -> None:
    argv = ["langgraph", "--quick", "--records", "1000", "--queries", "20", "--hash-vectors"]
    assert main([*argv, "--no-postgres", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "langgraph_quick.json").read_text())
    summary = report["summary"]
    assert summary["records"] == 1000
    for name in ("engram_sqlite", "inmemory"):
        assert summary[f"put_items_per_s_{name}"] > 0
        assert summary[f"checkpointer_p95_ms_{name.replace('inmemory', 'langgraph_sqlite')}"] > 0
    for scope in ("user", "all"):
        # Exact vector search on both sides finds exactly what brute force finds.
        assert summary[f"{scope}_recall_at_10_engram_sqlite_vector"] == 1.0
        assert summary[f"{scope}_recall_at_10_inmemory"] == 1.0
        assert 0 < summary[f"{scope}_recall_at_10_engram_sqlite"] <= 1.0
        assert f"{scope}_p95_speedup_engram_sqlite_vs_inmemory" in summary
    # The floor (the search's unskippable parts alone) is measured within a user only,
    # and finds what the whole vector search finds.
    assert summary["user_recall_at_10_engram_sqlite_floor"] == 1.0
    assert summary["user_p95_ms_engram_sqlite_floor"] > 0
    assert "all_p95_ms_engram_sqlite_floor" not in summary
    # So is the vector math alone (no record read), and it finds the same hits.
    assert summary["user_recall_at_10_engram_sqlite_vector_math"] == 1.0
    assert "user_p95_speedup_engram_sqlite_vector_math_vs_inmemory" in summary
    assert "all_p95_ms_engram_sqlite_vector_math" not in summary
    assert "checkpointer_p95_speedup_sqlite" in summary
    assert not any("postgres" in key for key in summary)
    assert report["checkpointer"]["steps_per_thread"] == 50
    # Searches run in blocks per store: every store answers every query of its scope once.
    for scope in ("search_user", "search_all"):
        for name in ("engram_sqlite", "engram_sqlite_vector", "inmemory"):
            assert report["store"][scope][name]["queries"] == 20
    for name in ("engram_sqlite_floor", "engram_sqlite_vector_math"):
        assert report["store"]["search_user"][name]["queries"] == 20


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_langgraph_bench_quick_on_postgres(tmp_path: Path) -> None:
    argv = ["langgraph", "--quick", "--records", "600", "--queries", "10", "--hash-vectors"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "langgraph_quick.json").read_text())
    summary = report["summary"]
    # Both PostgreSQL stores were loaded, vacuumed and searched in blocks like the others.
    for scope in ("search_user", "search_all"):
        for name in ("engram_postgres", "engram_postgres_vector", "langgraph_postgres"):
            assert report["store"][scope][name]["queries"] == 10
    assert summary["user_recall_at_10_engram_postgres_vector"] >= 0.9
    assert summary["user_p95_speedup_engram_sqlite_vector_vs_langgraph_postgres"] > 0
    assert summary["checkpointer_p95_ms_langgraph_postgres"] > 0
