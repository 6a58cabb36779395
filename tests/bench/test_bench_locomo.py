"""The LoCoMo harness on a small conversation of the same shape: both write paths, and the
adversarial category scored on its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import locomo

TURNS = [
    ("Ana", "Guess what, we finally adopted a retired greyhound!"),
    ("Ben", "No way! What is her name?"),
    ("Ana", "Biscuit. She sleeps all day."),
    ("Ben", "I started training for a half marathon."),
    ("Ana", "Good luck with the running plan."),
    ("Ben", "Thanks, the first long run is on Sunday."),
]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    session = [{"speaker": s, "dia_id": f"D1:{i + 1}", "text": t} for i, (s, t) in enumerate(TURNS)]
    sample = {
        "sample_id": "conv-x",
        "conversation": {
            "speaker_a": "Ana",
            "speaker_b": "Ben",
            "session_1": session,
            "session_1_date_time": "1:56 pm on 8 May, 2023",
        },
        "qa": [
            # Answered by a turn that shares no word with it: found through its neighbour.
            {"question": "Which greyhound was adopted?", "evidence": ["D1:3"], "category": 4},
            {"question": "When is Ben's first long run?", "evidence": ["D1:6"], "category": 2},
            {"question": "What did Ben name his greyhound?", "evidence": ["D1:3"], "category": 5},
        ],
    }
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps([sample]), encoding="utf-8")
    return path


def test_both_write_paths_rank_alike_with_thread_context(data: Path) -> None:
    reports = {
        wp: locomo.run(data, ["keyword"], False, None, embedder_name="hash", write_path=wp)
        for wp in locomo.WRITE_PATHS
    }
    for wp, report in reports.items():
        assert report["write_path"] == wp
        assert report["questions"] == 2 and report["adversarial_questions"] == 1
        cats = report["modes"]["keyword"]["by_category"]
        assert cats["adversarial"]["questions"] == 1
        # "greyhound" is only in the turn before the answer: its context finds it.
        assert cats["single_hop"]["recall_at_10"] == 1.0
    figures = [r["modes"]["keyword"] for r in reports.values()]
    assert figures[0] == {**figures[1], "latency_ms": figures[0]["latency_ms"]}


def test_settings_reach_the_run(data: Path) -> None:
    report = locomo.run(
        data,
        ["keyword"],
        False,
        None,
        embedder_name="hash",
        write_path="add",
        settings={"context_window": "0"},
    )
    assert report["settings"] == {"context_window": "0"}
    # Without context the answer shares no word with the question.
    single = report["modes"]["keyword"]["by_category"]["single_hop"]
    assert single["recall_at_10"] == 0.0


def test_figures_before_and_after_consolidation_in_one_run(data: Path, tmp_path: Path) -> None:
    """Turns are never merged, whichever path wrote them: a near-duplicate turn keeps its
    place and the figures stay; a long enough thread gets a summary, which takes a place and
    counts for nothing."""
    sample = json.loads(data.read_text())
    session = sample[0]["conversation"]["session_1"]
    # The same words as D1:3, louder: near-duplicate turns, said twice.
    session.append({"speaker": "Ana", "dia_id": "D1:7", "text": "Biscuit! She sleeps all day!!"})
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(sample), encoding="utf-8")
    for wp in locomo.WRITE_PATHS:
        report = locomo.run(
            path,
            ["keyword"],
            False,
            None,
            embedder_name="hash",
            write_path=wp,
            settings={"summarize_min_turns": "2"},
            consolidate=True,
        )
        after = report["after_consolidation"]
        done = after["consolidation"]
        assert (done["merges"], done["summaries"], done["questions_with_merged_evidence"]) == (
            0,
            1,
            0,
        ), wp
        single = after["modes"]["keyword"]["by_category"]["single_hop"]["recall_at_10"]
        assert single == report["modes"]["keyword"]["by_category"]["single_hop"]["recall_at_10"]
        s = report["summary"]
        assert s["keyword_consolidated_strict_recall_at_10"] == s["keyword_recall_at_10"] == 1.0


def test_credit_merges_follows_chains_and_empties_the_merged() -> None:
    held = {"c": {"a": {"D1:1"}, "b": {"D1:2"}, "s": {"D1:3"}, "x": {"D1:4"}}}
    moved = locomo.credit_merges(held, {"a": "b", "b": "s"})
    assert moved == {"c": {"s": {"D1:1", "D1:2", "D1:3"}, "x": {"D1:4"}}}
    # A cycle (never written by consolidation) ends instead of looping.
    assert locomo.credit_merges({"c": {"a": {"1"}}}, {"a": "b", "b": "a"}) == {"c": {"b": {"1"}}}


def test_figures_per_conversation_keep_adversarial_apart() -> None:
    held = {"c1": {"r1": {"D1:1"}, "r2": {"D1:2"}}, "c2": {"r3": {"D1:1"}}}
    rankings = {
        "hybrid": [
            ("c1", 1, {"D1:1"}, ["r1", "r2"]),  # found first
            ("c1", 2, {"D1:2"}, ["r1"]),  # missed
            ("c1", locomo.ADVERSARIAL, {"D1:2"}, ["r2"]),
            ("c2", 1, {"D1:1"}, ["r3"]),
        ]
    }
    got = locomo.by_conversation(rankings, locomo.score_all(rankings, held))["hybrid"]
    assert got["c1"]["questions"] == 2 and got["c1"]["recall_at_10"] == 0.5
    assert got["c1"]["adversarial_recall_at_10"] == 1.0
    assert got["c2"] == {
        "questions": 1,
        "recall_at_10": 1.0,
        "ndcg_at_10": 1.0,
        "adversarial_recall_at_10": 0.0,
    }
