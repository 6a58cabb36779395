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
