"""End to end: a Chroma store of several users in two collections into SQLite and into
PostgreSQL, validated and searched; re-runs, conflicts, dry runs, the CLI, a kill -9
half way and its resume; and the store-to-store path from PostgreSQL into SQLite.

Real parts throughout: stores built with the ``chromadb`` package, SQLite files, the
session's PostgreSQL, a real ``engramdb migrate`` process killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from chroma_helpers import CHROMA_MAPPING, build_chroma, chroma_docs
from click.testing import CliRunner

from engramdb import ConflictError, HashEmbedder, Memory, Settings
from engramdb.cli import cli
from engramdb.ops.legacy import derived_id, migrate_legacy
from engramdb.ops.migrate import CHECKPOINT_PREFIX, migrate_store
from engramdb.stores import open_store

EMB = HashEmbedder(384)
SCRIPT = Path(sys.executable).with_name("engramdb")


def migrate(source: str, target: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("mapping", CHROMA_MAPPING)
    kw.setdefault("log_file", None)
    return migrate_legacy(source, target, embedder=EMB, settings=Settings(), **kw)


def counts(url: str) -> dict[str, int]:
    store = open_store(url, Settings())
    try:
        return dict(sorted(store.namespaces().items()))
    finally:
        store.close()


def test_chroma_store_into_each_backend_validated_and_searchable(
    tmp_path: Path, store_url: str
) -> None:
    docs = build_chroma(tmp_path / "chroma", 150)
    with Memory(store_url, embedder=EMB, namespace="other") as mem:  # not this run's data
        mem.add([{"text": "someone else's memory", "user_id": "zed"}])
    report = migrate(f"chroma://{tmp_path}/chroma", store_url, sample_size=300)
    assert report["written"] == 300 and report["skipped"]["count"] == 0 and report["ok"]
    val = report["validation"]
    assert {ns: v["source"] for ns, v in val["namespaces"].items()} == {"notes": 150, "prefs": 150}
    assert all(v["checksum"] == v["target_checksum"] for v in val["namespaces"].values())
    # every sampled record (here: all 300) was found by id and by its own text, first
    assert val["sample"]["size"] == 300 and val["sample"]["first_by_own_text"] == 300
    assert report["embeddings_used"] == {"reused": 300, "recomputed": 0}
    assert counts(store_url) == {"notes": 150, "other": 1, "prefs": 150}
    with Memory(store_url, embedder=EMB, namespace="prefs") as mem:
        hit = mem.search(docs["prefs"][17], top_k=1, user_id="bo")[0].record
        assert hit.id == derived_id("chroma:prefs/prefs-17")
        assert hit.metadata["migrated_from"] == "chroma:prefs/prefs-17"

    again = migrate(f"chroma://{tmp_path}/chroma", store_url)
    assert again["written"] == 0 and again["unchanged"] == 300 and again["ok"]
    assert counts(store_url) == {"notes": 150, "other": 1, "prefs": 150}


def test_different_data_under_a_derived_id_is_a_conflict_and_nothing_is_written(
    tmp_path: Path, store_url: str
) -> None:
    import chromadb

    build_chroma(tmp_path / "chroma", 20)
    migrate(f"chroma://{tmp_path}/chroma", store_url)
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    col = client.get_collection("notes", embedding_function=None)
    col.update(
        ids=["notes-5"], documents=["an edited note"], embeddings=[EMB.embed(["e"])[0].tolist()]
    )
    col.add(
        ids=["notes-new"],
        documents=["a new note"],
        embeddings=[EMB.embed(["n"])[0].tolist()],
        metadatas=[{"user_id": "ana"}],
    )
    with pytest.raises(ConflictError, match="derived id") as err:
        migrate(f"chroma://{tmp_path}/chroma", store_url)
    assert err.value.details["ids"] == [derived_id("chroma:notes/notes-5")]
    assert counts(store_url) == {"notes": 20, "prefs": 20}  # the new note was not written
    col.update(
        ids=["notes-5"], metadatas=[{"user_id": "dara", "topic": "t2", "created_at": 1_700_000_005}]
    )
    original = chroma_docs("notes", 20)[5]
    col.update(
        ids=["notes-5"], documents=[original], embeddings=[EMB.embed([original])[0].tolist()]
    )
    with pytest.raises(ConflictError):  # same text, other metadata: still other data
        migrate(f"chroma://{tmp_path}/chroma", store_url)


def test_dry_run_reads_everything_and_writes_nothing(tmp_path: Path) -> None:
    build_chroma(tmp_path / "chroma", 30)
    target = tmp_path / "t.db"
    report = migrate(f"chroma://{tmp_path}/chroma", f"sqlite:///{target}", dry_run=True)
    assert report["dry_run"] and report["read"] == 60 and report["to_write"] == 60
    assert report["namespaces"] == {"notes": {"source": 30}, "prefs": {"source": 30}}
    assert not target.exists()


def test_cli_flags_report_log_and_exit_codes(tmp_path: Path) -> None:
    import chromadb

    build_chroma(tmp_path / "chroma", 10)
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    client.get_collection("prefs", embedding_function=None).add(
        ids=["prefs-bad"], embeddings=[EMB.embed(["x"])[0].tolist()]
    )
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(CHROMA_MAPPING))
    target = f"sqlite:///{tmp_path / 't.db'}"
    log, out = tmp_path / "memory_migration.log", tmp_path / "report.json"
    base = [
        "--json",
        "--no-model",
        "migrate",
        "--from",
        f"chroma://{tmp_path}/chroma",
        "--to",
        target,
        "--mapping",
        str(mapping),
        "--log-file",
        str(log),
    ]
    runner = CliRunner()
    helped = runner.invoke(cli, ["migrate", "--help"])
    for flag in (
        "--mapping",
        "--batch-size",
        "--dry-run",
        "--resume / --no-resume",
        "--no-validate",
        "--sample-size",
        "--output",
        "--log-file",
        "--re-embed",
        "--namespace",
    ):
        assert flag in helped.output, flag
    dry = runner.invoke(cli, [*base, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["to_write"] == 20
    res = runner.invoke(
        cli, [*base, "--batch-size", "3", "--output", str(out), "--sample-size", "5"]
    )
    assert res.exit_code == 10, res.output  # finished, one item skipped
    report = json.loads(out.read_text())
    assert report["written"] == 20 and report["skipped"]["count"] == 1
    assert report["validation"]["ok"] and report["validation"]["sample"]["size"] == 5
    assert "chroma:prefs/prefs-bad\tno text" in log.read_text()
    forced = runner.invoke(cli, [*base, "-n", "all", "--re-embed", "--no-validate", "--no-resume"])
    assert forced.exit_code == 10
    body = json.loads(forced.stdout)
    assert body["embeddings_used"] == {"reused": 0, "recomputed": 20} and "validation" not in body
    assert counts(target) == {"all": 20, "notes": 10, "prefs": 10}
    bad_map = runner.invoke(cli, [*base[:-4], "--mapping", str(tmp_path / "none.json")])
    assert bad_map.exit_code == 2 and "does not exist" in bad_map.output
    store_path = runner.invoke(
        cli,
        [
            "migrate",
            "--from",
            target,
            "--to",
            f"sqlite:///{tmp_path / 'u.db'}",
            "--mapping",
            str(mapping),
        ],
    )
    assert store_path.exit_code == 2 and "legacy sources" in store_path.output
    # the store-to-store path takes the same flags: one namespace, a report file, no check
    copied = runner.invoke(
        cli,
        [
            "--json",
            "migrate",
            "--from",
            target,
            "--to",
            f"sqlite:///{tmp_path / 'u.db'}",
            "-n",
            "notes",
            "--no-validate",
            "--output",
            str(tmp_path / "copy.json"),
        ],
    )
    assert copied.exit_code == 0, copied.output
    assert json.loads((tmp_path / "copy.json").read_text())["verified"] is False
    assert counts(f"sqlite:///{tmp_path / 'u.db'}") == {"notes": 10}


@pytest.mark.model
def test_chroma_minilm_vectors_are_reused_by_the_minilm_target(tmp_path: Path, minilm: Any) -> None:
    """A collection with Chroma's default embedding function (all-MiniLM-L6-v2) keeps its
    vectors in a MiniLM store, and each document's own text finds it first."""
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    col = client.create_collection("memories")  # records the default embedding function
    docs = chroma_docs("memories", 40)
    col.add(
        ids=[f"m{i}" for i in range(40)],
        documents=docs,
        embeddings=minilm.embed(docs).tolist(),
        metadatas=[{"user_id": f"u{i % 4}"} for i in range(40)],
    )
    report = migrate_legacy(
        f"chroma://{tmp_path}/chroma",
        f"sqlite:///{tmp_path / 't.db'}",
        embedder=minilm,
        log_file=None,
        sample_size=40,
    )
    assert report["embeddings"]["source_model"] == {"name": "all-MiniLM-L6-v2", "dim": 384}
    assert report["embeddings"]["policy"] == "reuse"
    assert report["embeddings_used"] == {"reused": 40, "recomputed": 0}
    assert report["validation"]["sample"]["first_by_own_text"] == 40


@pytest.mark.postgres
def test_store_to_store_from_postgresql_into_sqlite(tmp_path: Path, postgres_url: str) -> None:
    with Memory(postgres_url, embedder=EMB, namespace="alpha") as mem:
        ids = [
            r.record.id
            for r in mem.add([{"text": f"alpha note {i}", "user_id": "u"} for i in range(30)])
        ]
        mem.update(ids[0], text="alpha note zero, edited")
        mem.delete(ids[1])
        mem.with_namespace("beta").add([{"text": "beta note"}])
    target = f"sqlite:///{tmp_path / 'down.db'}"
    hashed = Settings(embedder="hash")  # the embedder the store was built with: sampled searches
    report = migrate_store(postgres_url, target, batch_size=7, sample_size=5, settings=hashed)
    assert report["verified"] and report["written"] == 30
    assert report["sample"]["size"] == 5 and report["sample"]["first_by_own_text"] == 5
    with Memory(target, embedder=EMB, namespace="alpha") as mem:
        assert mem.get(ids[0]).text == "alpha note zero, edited" and mem.get(ids[0]).version == 2
        assert len(mem.history(ids[1])) == 2  # the deleted record's history came along
    only_beta = migrate_store(postgres_url, f"sqlite:///{tmp_path / 'b.db'}", namespace="beta")
    assert list(only_beta["namespaces"]) == ["beta"] and only_beta["written"] == 1


def _logged_records(url: str) -> int:
    """Records in the batch log of a run in progress (a cheap read of the ``meta`` table)."""
    sql = "SELECT value FROM meta WHERE key LIKE '" + CHECKPOINT_PREFIX + "%#batch:%'"
    try:
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                rows = conn.execute(sql).fetchall()
        else:
            with psycopg.connect(url, autocommit=True) as pg:
                rows = pg.execute(sql).fetchall()
    except (sqlite3.Error, psycopg.Error):
        return 0  # not created yet
    return sum(json.loads(r[0])["records"] for r in rows)


@pytest.mark.slow
@pytest.mark.fault
def test_kill_half_way_then_resume_writes_nothing_twice(tmp_path: Path, store_url: str) -> None:
    build_chroma(tmp_path / "chroma", 2500)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(CHROMA_MAPPING))
    env = {**os.environ, "ENGRAM_EMBEDDER": "hash", "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [
            str(SCRIPT),
            "migrate",
            "--from",
            f"chroma://{tmp_path}/chroma",
            "--to",
            store_url,
            "--mapping",
            str(mapping),
            "--batch-size",
            "100",
            "--log-file",
            str(tmp_path / "l.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if _logged_records(store_url) >= 2500:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    store = open_store(store_url, Settings())
    try:
        store.settle_checkpoints()  # type: ignore[attr-defined]  # a last COMMIT may be landing
    finally:
        store.close()
    partial = sum(counts(store_url).values())
    assert 2500 <= partial < 5000
    report = migrate(f"chroma://{tmp_path}/chroma", store_url, sample_size=50)
    assert report["resumed"] and report["records_before_resume"] == partial
    assert report["written"] == 5000 - partial and report["unchanged"] == 0
    assert report["validation"]["ok"] and counts(store_url) == {"notes": 2500, "prefs": 2500}
    again = migrate(f"chroma://{tmp_path}/chroma", store_url, validate=False)
    assert again["written"] == 0 and again["unchanged"] == 5000


def test_the_progress_bar_draws_records_per_second_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import click

    from engramdb.cli.context import CliState
    from engramdb.cli.output import rich_progress

    with click.Context(cli) as ctx:
        ctx.ensure_object(CliState)
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
        with rich_progress(10, "migrate") as progress:
            assert progress is not None
            progress(4)
            progress(6)
        ctx.obj.json = True  # --json: no bar
        with rich_progress(10, "migrate") as quiet:
            assert quiet is None


def test_validation_catches_a_record_written_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write path that altered one record's metadata (injected here) fails validation:
    the checksum of its namespace differs, the run raises StoreError (exit 8) and the
    report file names the record."""
    from engramdb import StoreError
    from engramdb.ops import legacy

    build_chroma(tmp_path / "chroma", 8)
    real_row = legacy._Run.row
    wrong = derived_id("chroma:notes/notes-2")

    def row(self: Any, ns: str, rec: Any, *rest: Any) -> dict[str, Any]:
        out = real_row(self, ns, rec, *rest)
        if out["id"] == wrong:
            meta = json.loads(out["metadata"])
            meta["topic"] = "tampered"
            out["metadata"] = json.dumps(meta)
        return out

    monkeypatch.setattr(legacy._Run, "row", row)
    out = tmp_path / "report.json"
    with pytest.raises(StoreError, match="content checksum differs") as err:
        migrate(f"chroma://{tmp_path}/chroma", f"sqlite:///{tmp_path / 't.db'}", output=str(out))
    assert err.value.details["mismatches"] == [
        "namespace 'notes': content checksum differs (1 record(s) differ)"
    ]
    report = json.loads(out.read_text())
    assert report["validation"]["namespaces"]["notes"]["different"] == [wrong]
    assert report["validation"]["namespaces"]["prefs"]["different"] == []
    assert report["ok"] is False
