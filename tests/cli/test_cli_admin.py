"""Administration commands through the CLI: export/import, backup/restore, doctor, db."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .conftest import Run, err_json, out_json


def _seed(run: Run) -> list[str]:
    ids = []
    for text in ["apples are red", "bananas are yellow", "cherries are dark red"]:
        ids.append(out_json(run("--json", "add", text, "--user-id", "u"))[0]["record"]["id"])
    run("update", ids[0], "--text", "apples are green")
    run("log-event", "t1", "note", "--payload", '{"k": 1}')
    run("slots", "set", "t1", "a=1")
    return ids


def test_export_import_roundtrip(run: Run, tmp_path: Path) -> None:
    ids = _seed(run)
    dump = tmp_path / "dump.jsonl"
    assert out_json(run("--json", "export", str(dump))) == {"records": 3, "path": str(dump)}
    assert len(dump.read_text().splitlines()) >= 1 + 3 + 2

    counts = out_json(run("--json", "-n", "copy", "import", str(dump)))
    assert counts["written"] == 3 and counts["events"] == 1 and counts["slots"] == 1
    again = out_json(run("--json", "-n", "copy", "import", str(dump)))
    assert again["written"] == 0 and again["unchanged"] == 3
    copied = out_json(run("--json", "-n", "copy", "get", ids[0]))
    assert copied["text"] == "apples are green" and copied["namespace"] == "copy"
    hist = out_json(run("--json", "-n", "copy", "history", ids[0]))
    assert [h["op"] for h in hist][:2] == ["add", "update"]
    assert out_json(run("--json", "-n", "copy", "slots", "get", "t1"))["values"] == {"a": 1}
    hits = out_json(run("--json", "-n", "copy", "search", "yellow bananas"))["hits"]
    assert hits[0]["record"]["id"] == ids[1]

    run("add", "a note of another user", "--user-id", "v")
    filtered = tmp_path / "f.jsonl"
    res = out_json(run("--json", "export", str(filtered), "--filter", '{"user_id": "v"}'))
    assert res["records"] == 1
    out_json(run("--json", "-n", "only-v", "import", str(filtered)))
    assert out_json(run("--json", "-n", "only-v", "count")) == {"count": 1}
    not_export = tmp_path / "junk.jsonl"
    not_export.write_text("hello\n")
    bad = run("--json", "import", str(not_export))
    assert bad.exit_code == 2 and err_json(bad)["error"] == "validation_error"


def test_backup_restore(run: Run, tmp_path: Path) -> None:
    ids = _seed(run)
    bak = tmp_path / "backup.db"
    assert run("backup", str(bak)).exit_code == 0 and bak.stat().st_size > 0
    run("delete", ids[1])
    run("add", "added after the backup")
    assert out_json(run("--json", "count")) == {"count": 3}
    assert out_json(run("--json", "restore", str(bak))) == {"restored": str(bak)}
    assert run("--json", "get", ids[1]).exit_code == 0
    assert out_json(run("--json", "count")) == {"count": 3}
    assert (
        out_json(run("--json", "search", "added after the backup", "--mode", "keyword"))["hits"]
        == []
    )
    missing = run("--json", "restore", str(tmp_path / "nope.db"))
    assert missing.exit_code == 3 and err_json(missing)["error"] == "not_found"


def test_doctor_namespaces_stats_health(run: Run) -> None:
    _seed(run)
    run("-n", "other", "add", "x in other")
    report = out_json(run("--json", "doctor"))
    assert report["ok"] is True and report["problems"] == [] and report["chunks"] >= 4
    human = run("doctor")
    assert human.exit_code == 0 and "integrity_check: ok" in human.stdout
    assert out_json(run("--json", "namespaces")) == {"default": 3, "other": 1}
    assert "other\t1" in run("namespaces").stdout
    stats = out_json(run("--json", "stats"))
    assert stats["namespace_stats"]["records"] == 3 and stats["store"]["records"] == 4
    assert stats["embedder"]["name"].startswith("hash-")
    health = out_json(run("--json", "health"))
    assert health["status"] == "ok" and health["embedder"]["status"] == "ok"


def test_doctor_reports_broken_index_and_exits_1(run: Run, db_url: str) -> None:
    _seed(run)
    path = db_url[len("sqlite:///") :]
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM chunks_fts WHERE rowid = (SELECT min(id) FROM chunks)")
    conn.commit()
    conn.close()
    broken = run("--json", "doctor")
    assert broken.exit_code == 1
    assert any("keyword index" in p for p in json.loads(broken.stdout)["problems"])


def test_db_current_and_upgrade(run: Run, tmp_path: Path) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    before = out_json(run("--json", "--url", fresh, "db", "current", base=False))
    assert before["revision"] is None and before["up_to_date"] is False
    up = out_json(run("--json", "--url", fresh, "db", "upgrade", base=False))
    assert up["from"] is None and up["to"] == before["head"]
    after = out_json(run("--json", "--url", fresh, "db", "current", base=False))
    assert after["up_to_date"] is True
    again = out_json(run("--json", "--url", fresh, "db", "upgrade", base=False))
    assert again["from"] == again["to"] == before["head"]
    memory_url = run("--json", "--url", ":memory:", "db", "current", base=False)
    assert memory_url.exit_code == 2


def test_too_new_schema_is_reported_and_refused(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    run("--json", "--url", f"sqlite:///{path}", "db", "upgrade", base=False)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()
    cur = out_json(run("--json", "--url", f"sqlite:///{path}", "db", "current", base=False))
    assert cur["revision"] == "9999" and cur["up_to_date"] is False
    res = run("--json", "--no-model", "--url", f"sqlite:///{path}", "count", base=False)
    assert res.exit_code == 7 and err_json(res)["error"] == "schema_too_new"


@pytest.mark.model
def test_reembed_hash_to_minilm(run: Run) -> None:
    ids = _seed(run)
    assert run("reembed").exit_code == 2  # no target
    res = out_json(run("--json", "reembed", "--embedder", "minilm"))
    assert res["reembedded"] >= 3
    # The store now remembers MiniLM: opening it with the hash embedder is refused (exit 5).
    refused = run("--json", "count")
    assert refused.exit_code == 5 and err_json(refused)["error"] == "embedder_mismatch"
    hits = out_json(run("--json", "--embedder", "minilm", "search", "a yellow fruit"))["hits"]
    assert hits[0]["record"]["id"] == ids[1]


def test_unwritable_export_path_is_a_clean_error(run: Run, tmp_path: Path) -> None:
    _seed(run)
    res = run("--json", "export", str(tmp_path / "no-such-dir" / "x.jsonl"))
    assert res.exit_code == 1
    body = err_json(res)
    assert body["error"] == "os_error" and "no-such-dir" in body["message"]
    plain = run("export", str(tmp_path / "no-such-dir" / "x.jsonl"))
    assert plain.exit_code == 1 and plain.stderr.startswith("Error: ")
