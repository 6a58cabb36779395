"""Episodic and working memory through the CLI: events, snapshot, slots."""

from __future__ import annotations

from .conftest import Run, err_json, out_json


def test_log_event_events_snapshot(run: Run) -> None:
    ev = out_json(
        run(
            "--json",
            "log-event",
            "t9",
            "tool_call",
            "--payload",
            '{"tool": "weather", "city": "Oslo"}',
            "--actor",
            "agent",
        )
    )
    assert ev["action"] == "tool_call" and ev["payload"]["city"] == "Oslo"
    run("log-event", "t9", "reply", "--payload", '{"text": "cold"}')
    events = out_json(run("--json", "events", "t9"))
    assert [e["action"] for e in events] == ["tool_call", "reply"]
    assert out_json(run("--json", "events", "t9", "--limit", "1"))[0]["action"] == "tool_call"
    snap = run("snapshot", "t9")
    assert snap.exit_code == 0 and "tool_call" in snap.stdout and "reply" in snap.stdout
    bad = run("--json", "log-event", "t9", "x", "--payload", "[1, 2]")
    assert bad.exit_code == 2 and err_json(bad)["error"] == "validation_error"


def test_slots_set_get_compare_and_set(run: Run) -> None:
    first = out_json(
        run("--json", "slots", "set", "t1", "mood=happy", "count=3", "--values", '{"x": [1]}')
    )
    assert first["values"] == {"mood": "happy", "count": 3, "x": [1]}
    v1 = first["version"]
    got = out_json(run("--json", "slots", "get", "t1"))
    assert got["values"] == first["values"] and got["version"] == v1

    second = out_json(
        run(
            "--json", "slots", "set", "t1", "count=4", "--unset", "x", "--expected-version", str(v1)
        )
    )
    assert second["values"] == {"mood": "happy", "count": 4} and second["version"] > v1

    stale = run("--json", "slots", "set", "t1", "count=5", "--expected-version", str(v1))
    assert stale.exit_code == 4 and err_json(stale)["error"] == "conflict"
    assert out_json(run("--json", "slots", "get", "t1"))["values"]["count"] == 4

    human = run("slots", "get", "t1")
    assert "count = 4" in human.stdout and f"version: {second['version']}" in human.stdout
    assert run("slots", "set", "t1", "no-equals-sign").exit_code == 2
