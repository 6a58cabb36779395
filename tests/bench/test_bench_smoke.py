"""Smoke test of the store benchmark: a tiny model-free run writes a complete store.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import build_parser, main

REQUIRED = [
    "engramdb_filtered_p95_ms",
    "engramdb_filtered_extraction_stopped_p95_ms",
    "engramdb_unfiltered_extraction_stopped_p95_ms",
    "chroma_filtered_p95_ms",
    "engramdb_unfiltered_p95_ms",
    "chroma_unfiltered_p95_ms",
    "engramdb_recall_at_10",
    "chroma_recall_at_10",
    "engramdb_ingest_rec_per_s",
    "chroma_ingest_rec_per_s",
    "engramdb_single_add_p50_ms",
    "chroma_single_add_p50_ms",
    "engramdb_cold_open_first_search_s",
    "filtered_speedup_vs_chroma",
    "unfiltered_speedup_vs_chroma",
    "ingest_speedup_vs_chroma",
    "disk_ratio_vs_chroma",
    "rss_ratio_vs_chroma",
]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_store_bench_quick_hash_vectors(tmp_path: Path) -> None:
    rc = main(
        [
            "store",
            "--quick",
            "--records",
            "2000",
            "--queries",
            "30",
            "--hash-vectors",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "store_quick.json").read_text())
    summary = report["summary"]
    missing = [k for k in REQUIRED if k not in summary]
    assert not missing, missing
    assert summary["records"] == 2000
    # engramdb's search is exact: it must find exactly what brute force finds.
    assert summary["engramdb_recall_at_10"] == 1.0
    assert summary["engramdb_unfiltered_recall_at_10"] >= 0.98
    assert report["workload"]["vectors"] == "hash"
    # Where the bytes go: every category sums to the whole, vectors counted in their table.
    parts = report["disk"]["engramdb_breakdown"]
    assert parts["records"] >= 2000
    assert parts["vector_payload_in_chunk_vectors"] == 384 * 4
    assert parts["by_category"]["keyword index (FTS5)"] > 0
    total = sum(parts["by_category"].values()) + sum(parts["beside_the_database"].values())
    assert abs(total - parts["bytes_per_record"]) < 1.0
    # The floors: the whole without the sidecar's float32 copy, and the bare minimum of a
    # float32 vector, its record and its FTS5 entry, each below the whole.
    beside, floors = parts["beside_the_database"], parts["floors"]
    exact = beside["vector sidecar: exact float32 blocks"]
    assert exact >= 384 * 4 * 0.99
    assert abs(floors["without_exact_copy"] - (parts["bytes_per_record"] - exact)) < 0.2
    bare = sum(parts["by_category"][c] for c in ("chunk vectors", "records"))
    assert floors["vectors_text_and_fts"] > bare
    assert floors["vectors_text_and_fts"] < floors["without_exact_copy"]
    ratios = [summary[f"disk_floor_{n}_vs_chroma"] for n in floors]
    assert all(0 < r < summary["disk_ratio_vs_chroma"] for r in ratios)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_filters_bench_quick_hash_vectors(tmp_path: Path) -> None:
    rc = main(
        ["filters", "--quick", "--records", "3000", "--queries", "20", "--hash-vectors"]
        + ["--out", str(tmp_path)]
    )
    assert rc == 0
    summary = json.loads((tmp_path / "filters_quick.json").read_text())["summary"]
    assert summary["records"] == 3000
    cases = ("nobody", "food", "pref", "chat", "meta_none", "meta_memo", "meta_doc", "meta_chat")
    for case in cases:
        for key in ("search_p95_ms", "recall_at_10", "list_p50_ms", "count_p50_ms"):
            assert f"engramdb_{case}_{key}" in summary and f"chroma_{case}_{key}" in summary
    # A filtered search is exact on engramdb: it finds what brute force finds.
    assert all(summary[f"engramdb_{c}_recall_at_10"] == 1.0 for c in cases)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_filters_bench_on_postgres_quick_hash_vectors(tmp_path: Path) -> None:
    rc = main(
        ["filters", "--postgres", "--quick", "--records", "1500", "--queries", "10"]
        + ["--hash-vectors", "--out", str(tmp_path)]
    )
    assert rc == 0
    report = json.loads((tmp_path / "filters_postgres_quick.json").read_text())
    assert report["config"]["engramdb_store"] == "postgresql"
    summary = report["summary"]
    assert summary["records"] == 1500
    exact = ("food", "pref", "meta_memo", "meta_doc")
    assert all(summary[f"engramdb_{c}_recall_at_10"] == 1.0 for c in exact)


@pytest.mark.timeout(120)
def test_ingest_parts_bench_replays_the_store_statements_into_an_identical_file(
    tmp_path: Path,
) -> None:
    rc = main(
        ["ingest-parts", "--quick", "--records", "2000", "--hash-vectors", "--out", str(tmp_path)]
    )
    assert rc == 0
    report = json.loads((tmp_path / "ingest_parts_quick.json").read_text())
    summary = report["summary"]
    assert summary["records"] == 2000
    assert summary["replayed_records"] == 2001  # the corpus and the shared warm-up record
    assert summary["budget_ms_per_batch"] == 40.0
    parts = (
        "add_ms_per_batch",
        "engine_ms_per_batch",
        "store_ms_per_batch",
        "sql_only_ms_per_batch",
        "sql_only_without_keyword_index_ms_per_batch",
        "sql_only_without_random_order_indexes_ms_per_batch",
    )
    assert all(summary[k] > 0 for k in parts)
    # The keyword rows were really left out of that replay, and every replay committed.
    assert not any("chunks_fts" in k for k in report["details"]["sql_only_without_keyword_index"])
    assert any("chunks_fts" in k for k in report["details"]["sql_only"])
    assert all("COMMIT" in report["details"][k] for k in report["details"])


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert sub._choices_actions, name
        assert p.prog.endswith(name)
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert set(helps) == {
        "store",
        "filters",
        "postgres",
        "ingest-parts",
        "ingest-embed",
        "embedder",
        "migrate",
        "langgraph",
        "search-pair",
        "keyword-floor",
        "core-share",
        "extract",
        "consolidate",
        "service",
        "locomo",
        "all",
    }
    assert all(helps.values())


def test_consolidate_bench_scores_the_planted_duplicates(tmp_path: Path) -> None:
    assert main(["consolidate", "--records", "600", "--users", "6", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "consolidate.json").read_text())
    s = report["summary"]
    assert (s["records"], s["planted_pairs"]) == (600, 60)
    assert s["recall"] == 1.0 and s["precision"] is not None and s["precision"] >= 0.9
    assert s["records_left"] == 600 - s["merged_away"]
    assert s["same_plan_dry_and_real"] is True


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_consolidate_bench_on_postgres(tmp_path: Path) -> None:
    """The same planted pairs on a PostgreSQL server the benchmark starts and removes."""
    argv = ["consolidate", "--postgres", "--records", "600", "--users", "6"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "consolidate_postgres.json").read_text())
    s = report["summary"]
    assert s["store"] == "postgresql"
    assert (s["records"], s["planted_pairs"]) == (600, 60)
    assert s["recall"] == 1.0 and s["precision"] is not None and s["precision"] >= 0.9
    assert s["records_left"] == 600 - s["merged_away"]
    assert s["same_plan_dry_and_real"] is True


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_keyword_floor_times_every_part_and_its_floor_finds_the_same_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engramdb.stores.sqlite import keyword_prune

    # A quick store is far below the sizes where the index prunes: let it prune here.
    monkeypatch.setattr(keyword_prune, "LOAD_MIN_POSTINGS", 0)
    monkeypatch.setattr(keyword_prune, "PRUNE_MIN_POSTINGS", 0)
    out = tmp_path / "out"
    args = ["keyword-floor", "--quick", "--records", "5000", "--queries", "30"]
    assert main([*args, "--hash-vectors", "--out", str(out)]) == 0
    report = json.loads((out / "keyword_floor_quick.json").read_text())
    assert report["keyword_index"]["pruning"] is True
    assert report["floor_same_pages"] == 1.0
    assert report["pool"] == 100
    lat = report["latency"]
    for name in ("hybrid", "vector", "keyword", "keyword_index", "keyword_floor"):
        for scope in ("filtered", "unfiltered"):
            fig = lat[f"{name}_{scope}"]
            assert fig["n"] == 30 and 0 < fig["p50_ms"] <= fig["p95_ms"]
    for scope in ("filtered", "unfiltered"):
        both = lat[f"floor_plus_vector_{scope}"]
        assert both["n"] == 30
        assert both["max_ms"] >= lat[f"keyword_floor_{scope}"]["max_ms"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_core_share_times_every_search_beside_every_neighbour_and_stops_them(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    args = ["core-share", "--quick", "--records", "3000", "--queries", "30"]
    assert main([*args, "--hash-vectors", "--out", str(out)]) == 0
    report = json.loads((out / "core_share_quick.json").read_text())
    assert set(report["neighbour_pids"]) == {"spin", "numpy", "spacy"}
    for pid in report["neighbour_pids"].values():  # killed and reaped, none left running
        assert not Path(f"/proc/{pid}").exists()
    lat = report["latency"]
    assert len(lat) == 4 * 2 * 2
    for fig in lat.values():
        for clock in ("wall", "cpu"):
            assert fig[clock]["n"] == 30 and 0 < fig[clock]["p50_ms"] <= fig[clock]["p95_ms"]
    s = report["summary"]
    for name in ("spin", "numpy", "spacy"):
        got = s[f"{name}_hybrid_filtered_p95_vs_none"]
        want = s[f"{name}_hybrid_filtered_p95_ms"] / s["none_hybrid_filtered_p95_ms"]
        assert abs(got - want) < 0.01


def _state(pid: int) -> str:
    """The process state letter from /proc (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_backlog_paused_freezes_the_extraction_helper_for_the_block_only() -> None:
    from bench.store import backlog_paused
    from engramdb.extract import process

    extractor = process.ProcessExtractor(8)
    found = extractor.extract(["John works for Microsoft in Seattle."])  # starts the helper
    assert {e.name for e in found[0].entities} >= {"John", "Microsoft", "Seattle"}
    helper = process._helper
    assert helper is not None and helper.alive()
    with backlog_paused():
        assert _state(helper.proc.pid) == "T"
    assert _state(helper.proc.pid) != "T"
    # Resumed, it parses again.
    again = extractor.extract(["Mary lives in Paris."])
    assert "Paris" in {e.name for e in again[0].entities}
