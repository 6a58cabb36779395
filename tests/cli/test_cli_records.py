"""Record commands end to end through the CLI on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Run, err_json, out_json


def test_add_search_get_update_history_delete_roundtrip(run: Run) -> None:
    added = out_json(
        run(
            "--json",
            "add",
            "Alice moved to Lisbon in 2021",
            "--user-id",
            "alice",
            "--tag",
            "profile",
            "--metadata",
            '{"source_doc": "chat-1"}',
        )
    )
    assert [a["outcome"] for a in added] == ["written"]
    rid = added[0]["record"]["id"]

    hits = out_json(run("--json", "search", "Lisbon", "--user-id", "alice"))["hits"]
    assert [h["record"]["id"] for h in hits] == [rid]
    assert out_json(run("--json", "search", "Lisbon", "--user-id", "bob"))["hits"] == []

    rec = out_json(run("--json", "get", rid))
    assert rec["text"] == "Alice moved to Lisbon in 2021"
    assert rec["tags"] == ["profile"] and rec["metadata"] == {"source_doc": "chat-1"}

    upd = out_json(
        run("--json", "update", rid, "--text", "Alice moved to Porto in 2023", "--add-tag", "move")
    )
    assert upd["version"] == 2 and upd["text"].startswith("Alice moved to Porto")
    assert sorted(upd["tags"]) == ["move", "profile"]

    hist = out_json(run("--json", "history", rid))
    assert [h["op"] for h in hist] == ["add", "update"]
    assert hist[1]["before"]["text"] == "Alice moved to Lisbon in 2021"

    assert out_json(run("--json", "delete", rid)) == {"deleted": rid}
    gone = run("--json", "get", rid)
    assert gone.exit_code == 3
    assert err_json(gone)["error"] == "not_found"
    assert [h["op"] for h in out_json(run("--json", "history", rid))] == ["add", "update", "delete"]


def test_human_output_is_lines(run: Run) -> None:
    res = run("add", "Bob drinks green tea", "--user-id", "bob")
    assert res.exit_code == 0 and res.stdout.startswith("written")
    rid = res.stdout.split()[1]
    found = run("search", "green tea")
    assert found.exit_code == 0
    assert rid in found.stdout and "Bob drinks green tea" in found.stdout
    shown = run("get", rid)
    assert f"id: {rid}" in shown.stdout and "user_id: bob" in shown.stdout


def test_exit_codes_not_found_validation_conflict(run: Run) -> None:
    missing = run("--json", "get", "no-such-id")
    assert missing.exit_code == 3
    body = err_json(missing)
    assert set(body) == {"error", "message", "details"} and body["error"] == "not_found"

    empty = run("--json", "add", "   ")
    assert empty.exit_code == 2
    assert err_json(empty)["error"] == "validation_error"

    bad_filter = run("--json", "list", "--filter", "{not json")
    assert bad_filter.exit_code == 2 and "--filter" in err_json(bad_filter)["message"]

    rid = out_json(run("--json", "add", "a fact", "--id", "fact-1"))[0]["record"]["id"]
    assert rid == "fact-1"
    clash = run("--json", "add", "another text", "--id", "fact-1")
    assert clash.exit_code == 4 and err_json(clash)["error"] == "conflict"
    stale = run("--json", "update", rid, "--importance", "0.5", "--expected-version", "7")
    assert stale.exit_code == 4 and err_json(stale)["error"] == "conflict"
    assert out_json(run("--json", "get", rid))["version"] == 1

    # Without --json the error is one line on stderr, never a traceback.
    plain = run("get", "no-such-id")
    assert plain.exit_code == 3
    assert plain.stderr.startswith("Error: ") and "Traceback" not in plain.output


def test_usage_error_exits_2(run: Run) -> None:
    res = run("get")
    assert res.exit_code == 2 and "Missing argument" in res.stderr
    res = run("search", "x", "--mode", "psychic")
    assert res.exit_code == 2


def test_add_from_stdin_and_jsonl_file(run: Run, tmp_path: Path) -> None:
    res = out_json(run("--json", "add", "--stdin", "--user-id", "u1", input="one\n\ntwo\nthree\n"))
    assert [r["outcome"] for r in res] == ["written"] * 3
    lines = [
        json.dumps("plain string item"),
        json.dumps({"text": "dict item", "type": "fact", "tags": ["x"]}),
        json.dumps({"text": ""}),
    ]
    f = tmp_path / "items.jsonl"
    f.write_text("\n".join(lines) + "\n")
    bad = run("--json", "add", "--file", str(f), "--user-id", "u2")
    assert bad.exit_code == 2  # abort: the empty text rejects the whole batch
    assert out_json(run("--json", "count", "--user-id", "u2")) == {"count": 0}
    res = out_json(run("--json", "add", "--file", str(f), "--user-id", "u2", "--skip-errors"))
    assert [r["outcome"] for r in res] == ["written", "written", "rejected"]
    assert res[2]["index"] == 2 and res[2]["error"]
    assert out_json(run("--json", "count", "--user-id", "u2", "--type", "fact")) == {"count": 1}
    assert out_json(run("--json", "count", "--tag", "x")) == {"count": 1}


def test_list_count_filters_and_delete_all(run: Run) -> None:
    for user, text in [("a", "alpha one"), ("a", "alpha two"), ("b", "beta one")]:
        assert run("add", text, "--user-id", user, "--metadata", '{"n": 1}').exit_code == 0
    assert out_json(run("--json", "count")) == {"count": 3}
    assert out_json(run("--json", "count", "--filter", '{"user_id": "a"}')) == {"count": 2}
    page = out_json(run("--json", "list", "--user-id", "a", "--limit", "1"))
    assert len(page["records"]) == 1 and page["next_cursor"]
    nxt = out_json(run("--json", "list", "--user-id", "a", "--cursor", page["next_cursor"]))
    assert [r["text"] for r in page["records"] + nxt["records"]] == ["alpha one", "alpha two"]
    ids = [r["id"] for r in page["records"] + nxt["records"]]
    many = out_json(run("--json", "get-many", ids[1], "missing", ids[0]))
    assert [r["id"] for r in many] == [ids[1], ids[0]]

    refused = run("--json", "delete-all")
    assert refused.exit_code == 2
    assert out_json(run("--json", "delete-all", "--user-id", "a")) == {"deleted": 2}
    assert out_json(run("--json", "delete-all", "--all")) == {"deleted": 1}
    assert out_json(run("--json", "count")) == {"count": 0}


def test_namespace_option_isolates(run: Run) -> None:
    assert run("-n", "team-a", "add", "secret plan").exit_code == 0
    assert out_json(run("--json", "-n", "team-b", "count")) == {"count": 0}
    # Global options are accepted after the command name too.
    assert out_json(run("count", "--namespace", "team-a", "--json")) == {"count": 1}
    assert out_json(run("--json", "search", "secret plan", "-n", "team-b"))["hits"] == []


def test_add_messages_and_forget(run: Run) -> None:
    res = out_json(
        run(
            "--json",
            "add-messages",
            "t1",
            "user: I am vegetarian",
            '{"role": "assistant", "content": "Noted, no meat."}',
            "--user-id",
            "u1",
        )
    )
    assert [r["outcome"] for r in res] == ["written", "written"]
    assert out_json(run("--json", "count", "--thread-id", "t1", "--type", "message")) == {
        "count": 2
    }
    events = out_json(run("--json", "events", "t1"))
    assert [e["payload"]["role"] for e in events] == ["user", "assistant"]
    counts = out_json(run("--json", "forget", "--user-id", "u1"))
    assert counts and all(isinstance(v, int) for v in counts.values())
    assert counts["records"] == 2 and "bytes_freed" not in counts
    run("--json", "add", "a fact of u2", "--user-id", "u2")
    counts = out_json(run("--json", "forget", "--user-id", "u2", "--compact"))
    assert counts["records"] == 1 and isinstance(counts["bytes_freed"], int)  # it compacted
    assert out_json(run("--json", "count")) == {"count": 0}
    assert out_json(run("--json", "count")) == {"count": 0}
    assert run("--json", "forget").exit_code == 2
