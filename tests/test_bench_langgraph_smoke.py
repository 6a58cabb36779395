"""Smoke test of ``engramdb bench langgraph``: a tiny model-free run writes langgraph.json."""

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
    report = json.loads((tmp_path / "langgraph.json").read_text())
    summary = report["summary"]
    assert set(summary["put_items_per_s"]) == {"engram_sqlite", "inmemory"}
    for scope in ("search_user", "search_all"):
        assert set(summary[scope]) == {"engram_sqlite", "engram_sqlite_vector", "inmemory"}
        # Exact vector search on both sides finds exactly what brute force finds.
        assert summary[scope]["engram_sqlite_vector"]["recall_at_10"] == 1.0
        assert summary[scope]["inmemory"]["recall_at_10"] == 1.0
    assert set(summary["checkpointer_p95_ms"]) == {"engram_sqlite", "langgraph_sqlite"}
    assert report["checkpointer"]["steps_per_thread"] == 50
