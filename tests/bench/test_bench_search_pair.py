"""Smoke test of ``search-pair``: two trees on one store, alternated, compared by ratio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ("vector_filtered", "vector_unfiltered", "hybrid_filtered", "hybrid_unfiltered")


def _base_tree(tmp_path: Path) -> Path:
    """The other tree: a copy of this checkout's package and benchmarks, as a worktree of
    the commit before a change would be."""
    base = tmp_path / "base"
    for part in ("engramdb", "bench"):
        shutil.copytree(ROOT / part, base / part, ignore=shutil.ignore_patterns(".cache"))
    (base / "bench" / ".cache").symlink_to(ROOT / "bench" / ".cache")
    return base


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_search_pair_times_both_trees_on_copies_of_one_store(tmp_path: Path) -> None:
    base = _base_tree(tmp_path)
    out = tmp_path / "out"
    rc = main(
        [
            "search-pair",
            "--quick",
            "--records",
            "2000",
            "--queries",
            "30",
            "--hash-vectors",
            "--rounds",
            "2",
            "--base",
            str(base),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    report = json.loads((out / "search_pair_quick.json").read_text())
    assert report["config"]["base"] == str(base) and report["config"]["head"] == str(ROOT)
    assert report["build"]["keyword_index"]["why"]  # 2,000 rows: FTS5 answers, and says so
    assert set(report["prepare"]) == {"base", "head"}  # each tree's untimed first open
    for side in ("base", "head"):
        rounds = report["rounds"][side]
        assert len(rounds) == 2
        for fig in FIGURES:
            assert all(0 < r[fig]["p50_ms"] <= r[fig]["p95_ms"] for r in rounds)
    for fig in FIGURES:
        ratio = report["summary"][f"{fig}_p95_ms_ratio_head_vs_base"]
        med = report["median"]
        assert ratio == pytest.approx(
            med["head"][fig]["p95_ms"] / med["base"][fig]["p95_ms"], abs=2e-3
        )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_search_pair_reuses_the_store_kept_in_its_workdir(tmp_path: Path) -> None:
    base = _base_tree(tmp_path)
    work, out = tmp_path / "work", tmp_path / "out"
    args = ["search-pair", "--quick", "--records", "1000", "--queries", "10", "--hash-vectors"]
    args += ["--rounds", "1", "--base", str(base), "--out", str(out), "--workdir", str(work)]
    assert main(args) == 0
    first = json.loads((out / "search_pair_quick.json").read_text())
    made = work / "made" / "pair.db"
    built_at = made.stat().st_mtime_ns
    assert "reused" not in first["build"]
    assert main(args) == 0
    second = json.loads((out / "search_pair_quick.json").read_text())
    assert second["build"]["reused"] is True
    assert made.stat().st_mtime_ns == built_at  # the kept store itself is never opened again
    assert {k: v for k, v in second["build"].items() if k != "reused"} == first["build"]
    # Another workload is not this store: it is built again.
    assert main([*args[:3], "1200", *args[4:]]) == 0
    third = json.loads((out / "search_pair_quick.json").read_text())
    assert "reused" not in third["build"]


def test_search_pair_refuses_a_base_that_is_no_checkout(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no engramdb package"):
        main(["search-pair", "--quick", "--hash-vectors", "--base", str(tmp_path)])
