"""``migrate``: a whole SQLite store copied into PostgreSQL, batched, resumable and verified.

Real stores on both sides (a SQLite file, a fresh schema on the session's PostgreSQL); the
kill test stops a real ``engramdb migrate`` process with SIGKILL in the middle of its run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from engramdb import ConflictError, HashEmbedder, Memory, Settings, StoreError, ValidationError
from engramdb.cli import cli
from engramdb.ops.migrate import CHECKPOINT_PREFIX, migrate_store, verify
from engramdb.stores.postgres import PostgresStore
from engramdb.stores.postgres.bulk import CHECKPOINT_FENCE_SQL
from engramdb.stores.sqlite import SQLiteStore

pytestmark = pytest.mark.postgres

SCRIPT = Path(sys.executable).with_name("engramdb")
NAMESPACES = ("alpha", "beta")
QUERIES = ("bees in Oslo", "sourdough starter", "train to Lisbon", "chess club on Friday")
TOPICS = [
    "keeps bees in Oslo",
    "bakes with a sourdough starter",
    "takes the night train to Lisbon",
    "runs the chess club on Friday",
    "repairs old bicycles",
    "learns Portuguese on the bus",
]


def _build_source(path: Path, per_namespace: int = 40) -> str:
    """A SQLite store with records (updated, deleted, tagged), history, events and slots."""
    url = f"sqlite:///{path}"
    with Memory(url, embedder=HashEmbedder(384), settings=Settings()) as root:
        for ns in NAMESPACES:
            mem = root.with_namespace(ns)
            items = [
                {
                    "text": f"{ns} user {i % 5} {TOPICS[i % len(TOPICS)]} (note {i})",
                    "user_id": f"u{i % 5}",
                    "metadata": {"n": i, "ns": ns, "pi": 3.25, "nested": {"ok": i % 2 == 0}},
                    "tags": ["t" + str(i % 3), "ünï"],
                    "importance": (i % 10) / 10,
                }
                for i in range(per_namespace)
            ]
            ids = [
                r.record.id for s in range(0, len(items), 500) for r in mem.add(items[s : s + 500])
            ]
            mem.update(ids[0], text=f"{ns} user 0 now keeps two hives of bees in Oslo")
            mem.update(ids[1], metadata={"n": 1, "edited": True}, add_tags=["edited"])
            mem.delete(ids[2])
            mem.add_messages(
                "th-1",
                [
                    {"role": "user", "content": f"{ns}: I moved to Lisbon last spring"},
                    {"role": "assistant", "content": "Noted, Lisbon it is."},
                ],
                user_id="u1",
            )
            mem.log_event("th-1", "tool_call", {"name": "weather", "args": {"city": "Lisbon"}})
            mem.set_slots("th-1", {"city": "Lisbon", "mood": {"score": 7}}, user_id="u1")
            mem.set_slots("th-2", {"step": 3})
    return url


def _snapshot(url: str) -> dict[str, Any]:
    """Everything a user can read back, per namespace (history without store-local seqs)."""
    out: dict[str, Any] = {}
    with Memory(url, embedder=HashEmbedder(384), settings=Settings()) as root:
        for ns in NAMESPACES:
            mem = root.with_namespace(ns)
            records = mem.list(limit=1000, include_expired=True).records
            out[ns] = {
                "records": [r.to_dict() for r in records],
                "history": {
                    r.id: [
                        {k: v for k, v in h.to_dict().items() if k != "seq"}
                        for h in mem.history(r.id)
                    ]
                    for r in records
                },
                "events": [e.to_dict() for t in ("th-1", "th-2") for e in mem.events(t)],
                "slots": [mem.get_slots(t).to_dict() for t in ("th-1", "th-2")],
                "search": {q: _ranking(mem.search(q, top_k=8, mode="vector")) for q in QUERIES},
                "user_search": {
                    q: _ranking(mem.search(q, top_k=8, mode="vector", user_id="u1"))
                    for q in QUERIES
                },
            }
    return out


def _ranking(page: Any) -> list[tuple[float, frozenset[str]]]:
    """Hits as (score, ids with that score): backends may order exact ties differently, and
    the last group may be cut differently by top_k, so it keeps only its score."""
    groups: dict[float, set[str]] = {}
    for h in page.hits:
        groups.setdefault(round(h.score, 5), set()).add(h.record.id)
    out = [(score, frozenset(ids)) for score, ids in groups.items()]
    if out:
        out[-1] = (out[-1][0], frozenset())
    return out


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _tables(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return sorted(r[0] for r in rows)


def _source_stats(url: str) -> dict[str, Any]:
    store = SQLiteStore(url[len("sqlite:///") :])
    try:
        return store.stats()
    finally:
        store.close()


def _sql(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, args or None)
        return cur.fetchall() if cur.description else []


def test_round_trip_keeps_everything(tmp_path: Path, postgres_url: str) -> None:
    src = _build_source(tmp_path / "src.db")
    report = migrate_store(src, postgres_url, batch_size=7)
    assert report["verified"] and report["bulk_load"] and not report["resumed"]
    assert report["written"] == 2 * 41 and report["unchanged"] == 0  # 2 messages each
    assert report["events_written"] == 6 and report["slot_threads_written"] == 4
    assert report["embedder"] == {"name": "hash-384", "dim": 384}
    ns = report["namespaces"]["alpha"]
    assert ns["checksum"] == ns["target_checksum"] and ns["records"] == 41
    # Every record, version, time, vector-based ranking, history, event and slot agrees.
    assert _snapshot(postgres_url) == _snapshot(src)
    # The graph index was built after the load and the checkpoint removed.
    assert _sql(postgres_url, "SELECT to_regclass('chunks_hnsw') IS NOT NULL") == [(True,)]
    assert _sql(postgres_url, "SELECT key FROM meta WHERE key LIKE 'migrate_from:%'") == []
    # Running it again copies nothing and still verifies.
    again = migrate_store(src, postgres_url)
    assert again["written"] == 0 and again["unchanged"] == 82 and not again["bulk_load"]
    assert again["events_written"] == 0


def test_dry_run_writes_nothing(tmp_path: Path, postgres_url: str) -> None:
    src = _build_source(tmp_path / "src.db", per_namespace=10)
    report = migrate_store(src, postgres_url, dry_run=True)
    assert report["dry_run"] is True
    assert report["would_copy"]["records"] == 2 * 11
    assert report["would_copy"]["events"] == 6
    assert report["namespaces"]["beta"]["threads_with_slots"] == 2
    assert _tables(postgres_url) == []  # not even the schema was created


def test_refuses_a_target_with_other_data_under_the_same_ids(
    tmp_path: Path, postgres_url: str
) -> None:
    src = _build_source(tmp_path / "src.db", per_namespace=10)
    store = SQLiteStore(str(tmp_path / "src.db"))
    taken = store.list_records("alpha", None, 1, None, False)[0].id
    store.close()
    with Memory(postgres_url, embedder=HashEmbedder(384), namespace="alpha") as dst:
        dst.add("something else entirely", id=taken)
    with pytest.raises(ConflictError, match="different data"):
        migrate_store(src, postgres_url)
    assert _sql(postgres_url, "SELECT count(*) FROM records") == [(1,)]  # nothing copied


def test_verification_catches_a_tampered_target(tmp_path: Path, postgres_url: str) -> None:
    src_url = _build_source(tmp_path / "src.db", per_namespace=10)
    migrate_store(src_url, postgres_url)
    src = SQLiteStore(str(tmp_path / "src.db"))
    dst = PostgresStore(postgres_url)
    try:
        assert verify(src, dst, list(NAMESPACES))["mismatches"] == []
        _sql(
            postgres_url,
            "UPDATE records SET content_hash = 'tampered' WHERE rid = (SELECT min(rid) "
            "FROM records WHERE namespace = 'beta')",
        )
        found = verify(src, dst, list(NAMESPACES))["mismatches"]
        assert found == [
            "namespace 'beta': record checksum differs (11 records in the source, 11 in the target)"
        ]
        _sql(postgres_url, "DELETE FROM history WHERE seq = (SELECT max(seq) FROM history)")
        assert any("history" in m for m in verify(src, dst, list(NAMESPACES))["mismatches"])
    finally:
        src.close()
        dst.close()
    # A later run refuses (the tampered id holds other data) with the conflict exit code.
    res = CliRunner().invoke(cli, ["--json", "migrate", "--from", src_url, "--to", postgres_url])
    assert res.exit_code == 4, res.output


def test_verification_failure_is_an_error(tmp_path: Path, postgres_url: str) -> None:
    src_url = _build_source(tmp_path / "src.db", per_namespace=10)
    migrate_store(src_url, postgres_url)
    _sql(postgres_url, "DELETE FROM events WHERE seq = (SELECT max(seq) FROM events)")
    _sql(
        postgres_url,
        "INSERT INTO events(id, namespace, thread_id, action, ts) "
        "VALUES ('extra', 'alpha', 'th-9', 'x', 1)",
    )
    with pytest.raises(StoreError, match="verification failed: namespace 'alpha': events"):
        migrate_store(src_url, postgres_url)
    res = CliRunner().invoke(cli, ["--json", "migrate", "--from", src_url, "--to", postgres_url])
    assert res.exit_code == 8
    body = json.loads(res.stderr if hasattr(res, "stderr") else res.output)
    assert body["error"] == "store_error" and body["details"]["mismatches"]


def test_resume_after_kill(tmp_path: Path, postgres_url: str) -> None:
    src = _build_source(tmp_path / "src.db", per_namespace=1500)
    total = 2 * 1501
    proc = subprocess.Popen(
        [str(SCRIPT), "migrate", "--from", src, "--to", postgres_url, "--batch-size", "20"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    copied = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                rows = _sql(
                    postgres_url,
                    "SELECT value FROM meta WHERE key LIKE %s",
                    CHECKPOINT_PREFIX + "%",
                )
            except psycopg.Error:
                rows = []  # the schema is still being created
            # the batch log: one entry per committed batch (two loaders commit out of order)
            copied = sum(json.loads(row[0]).get("records", 0) for row in rows)
            if copied >= 300:
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
    with contextlib.closing(PostgresStore(postgres_url)) as target:
        target.settle_checkpoints()  # the killed run's last COMMIT may still be landing
    partial = _sql(postgres_url, "SELECT count(*) FROM records")[0][0]
    assert 300 <= partial < total
    report = migrate_store(src, postgres_url, batch_size=200)
    assert report["resumed"] and report["bulk_load"]
    assert report["records_before_resume"] == partial  # the checkpoint is exact
    assert report["written"] == total - partial and report["unchanged"] == 0
    assert _sql(postgres_url, "SELECT count(*), count(DISTINCT (namespace, id)) FROM records") == [
        (total, total)
    ]
    history = _sql(postgres_url, "SELECT count(*) FROM history")[0][0]
    assert history == _source_stats(src)["history"]


def test_resume_after_a_batch_failed_while_a_later_one_committed(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two loaders: batch 2 fails only after batch 3 committed on the other connection, so
    the target holds batches 0, 1 and 3 with a hole. The run reports the error; the resumed
    run copies batch 2 and everything after 3, nothing twice, and the log says exactly how
    many records the failed run left."""
    src = _build_source(tmp_path / "src.db", per_namespace=100)
    total = 2 * 101
    real_load = PostgresStore.load_records
    calls: list[int] = []
    third_done = threading.Event()

    def load(self: PostgresStore, batch: list[dict[str, Any]], meta: Any = None) -> Any:
        with lock:
            calls.append(len(calls))
            number = calls[-1]
        if number == 2:
            assert third_done.wait(30), "the other loader never finished batch 3"
            raise StoreError("injected: the connection died during batch 2")
        out = real_load(self, batch, meta)
        if number == 3:
            third_done.set()
        return out

    lock = threading.Lock()
    monkeypatch.setattr(PostgresStore, "load_records", load)
    with pytest.raises(StoreError, match="injected"):
        migrate_store(src, postgres_url, batch_size=10)
    monkeypatch.setattr(PostgresStore, "load_records", real_load)
    partial = _sql(postgres_url, "SELECT count(*) FROM records")[0][0]
    log = dict(_sql(postgres_url, "SELECT key, value FROM meta WHERE key LIKE '%#batch:%'"))
    committed = sorted(int(k.rsplit(":", 1)[1]) for k in log)
    # 0, 1 and 3, and 4 when the other loader took it before batch 2's failure was known
    assert committed in ([0, 1, 3], [0, 1, 3, 4])
    assert partial == 10 * len(committed) == sum(json.loads(v)["records"] for v in log.values())
    report = migrate_store(src, postgres_url, batch_size=10)
    assert report["resumed"] and report["loaders"] == 2
    assert report["records_before_resume"] == partial
    assert report["written"] == total - partial and report["unchanged"] == 0
    assert _sql(postgres_url, "SELECT count(*), count(DISTINCT (namespace, id)) FROM records") == [
        (total, total)
    ]
    assert _sql(postgres_url, "SELECT key FROM meta WHERE key LIKE 'migrate_from:%'") == []
    assert _snapshot(postgres_url) == _snapshot(src)


def test_an_interrupt_stops_the_loaders_and_the_run_resumes(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the loaders run: the call raises KeyboardInterrupt only after both
    loader threads have finished their batch (none is left writing behind the caller's
    back), and a second run copies exactly the rest.

    The order is fixed by events, not by timing: the first batch commits only once the
    other loader has begun the second, its progress report sends the Ctrl-C, the second
    batch is written only once the interrupt has reached the main thread (its signal
    handler ran), and any later one only after the second. So batches are in flight on
    both loaders when the call is interrupted, and the call must wait for them.
    """
    src = _build_source(tmp_path / "src.db", per_namespace=100)
    total = 2 * 101

    main = threading.main_thread().ident
    assert threading.get_ident() == main, "the test must run on the main thread"

    real_load = PostgresStore.load_records
    lock = threading.Lock()
    started: list[int] = []
    writing: set[int] = set()
    second_begun = threading.Event()
    second_written = threading.Event()
    interrupted = threading.Event()

    def load(self: PostgresStore, batch: list[dict[str, Any]], meta: Any = None) -> Any:
        with lock:
            number = len(started)
            started.append(number)
            writing.add(number)
        try:
            if number == 0:
                assert second_begun.wait(30), "the other loader never began a batch"
            elif number == 1:
                second_begun.set()
                assert interrupted.wait(30), "the interrupt never reached the main thread"
            else:
                assert second_written.wait(30), "the second batch was never written"
            out = real_load(self, batch, meta)
            if number == 1:
                second_written.set()
            return out
        finally:
            with lock:
                writing.discard(number)

    sent = threading.Event()

    def interrupt(_: int) -> None:  # one Ctrl-C, delivered to the thread waiting on the loaders
        if not sent.is_set():
            sent.set()
            signal.pthread_kill(main, signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:  # Python's own handler, observed
        interrupted.set()
        raise KeyboardInterrupt

    monkeypatch.setattr(PostgresStore, "load_records", load)
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with pytest.raises(KeyboardInterrupt):
            migrate_store(src, postgres_url, batch_size=10, progress=interrupt)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert second_written.is_set() and not writing  # the batches in flight were waited for
    left = [t for t in threading.enumerate() if t.name.startswith("engramdb-migrate")]
    assert not [t for t in left if t.is_alive()]
    monkeypatch.setattr(PostgresStore, "load_records", real_load)
    partial = _sql(postgres_url, "SELECT count(*) FROM records")[0][0]
    assert 20 <= partial < total
    report = migrate_store(src, postgres_url, batch_size=10)
    assert report["records_before_resume"] == partial
    assert report["written"] == total - partial and report["unchanged"] == 0


def test_a_run_waits_for_a_checkpointing_commit_still_in_flight(
    tmp_path: Path, postgres_url: str
) -> None:
    """A killed run's loader whose COMMIT is on its way still commits on the server after the
    client is gone; a run started meanwhile must not read the checkpoints before it lands.
    Here an open transaction holds the checkpoint fence the way such a loader does: the
    run waits for it, and proceeds once it ends."""
    src = _build_source(tmp_path / "src.db", per_namespace=20)
    PostgresStore(postgres_url).close()  # the schema exists
    with psycopg.connect(postgres_url) as loader:
        loader.execute(CHECKPOINT_FENCE_SQL.format(mode="_shared"))
        done: list[dict[str, Any]] = []
        run = threading.Thread(target=lambda: done.append(migrate_store(src, postgres_url)))
        run.start()
        run.join(1.5)
        assert run.is_alive() and not done  # waiting on the in-flight transaction
        loader.commit()
    run.join(60)
    assert done and done[0]["written"] == 2 * 21 and done[0]["verified"]


def test_cli_json_help_and_usage_errors(tmp_path: Path, postgres_url: str) -> None:
    src = _build_source(tmp_path / "src.db", per_namespace=5)
    runner = CliRunner()
    helped = runner.invoke(cli, ["migrate", "--help"])
    assert helped.exit_code == 0
    for option in ("--from", "--to", "--batch-size", "--dry-run", "--no-resume", "--json"):
        assert option in helped.output
    res = runner.invoke(
        cli, ["--json", "migrate", "--from", src, "--to", postgres_url, "--batch-size", "3"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["written"] == 12 and out["verified"] is True
    assert set(out["namespaces"]) == set(NAMESPACES)
    dry = runner.invoke(
        cli, ["migrate", "--json", "--dry-run", "--from", src, "--to", postgres_url]
    )
    assert json.loads(dry.stdout)["would_copy"]["records"] == 12
    bad_target = runner.invoke(cli, ["migrate", "--from", src, "--to", "mysql://nope/db"])
    assert bad_target.exit_code == 2 and "engramdb store URL" in bad_target.output
    missing = runner.invoke(
        cli, ["migrate", "--from", f"sqlite:///{tmp_path}/nope.db", "--to", postgres_url]
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output
    zero = runner.invoke(cli, ["migrate", "--from", src, "--to", postgres_url, "--batch-size", "0"])
    assert zero.exit_code == 2 and "batch_size" in zero.output
    no_to = runner.invoke(cli, ["migrate", "--from", src])
    assert no_to.exit_code == 2 and "--to" in no_to.output


def test_library_validates_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="engramdb store URL"):
        migrate_store("sqlite:///x.db", "mysql://nope")
    with pytest.raises(ValidationError, match="in-memory"):
        migrate_store("sqlite:///x.db", ":memory:")
    with pytest.raises(ValidationError, match="in-memory"):
        migrate_store(":memory:", "postgresql://x@127.0.0.1/db")
    with pytest.raises(ValidationError, match="batch_size"):
        migrate_store("sqlite:///x.db", "postgresql://x@127.0.0.1/db", batch_size=True)
    with pytest.raises(ValidationError, match="same store"):
        migrate_store("postgresql://a@h/db", "postgresql://a@h/db")


def test_two_migrators_at_once_copy_once(tmp_path: Path, postgres_url: str) -> None:
    src = _build_source(tmp_path / "src.db", per_namespace=300)
    cmd = [str(SCRIPT), "--json", "migrate", "--from", src, "--to", postgres_url]
    procs = [
        subprocess.Popen(
            [*cmd, "--batch-size", "25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    reports = [json.loads(o[0]) for o in outs]
    # One copied everything; the other waited for the lock and found it all there.
    assert sorted(r["written"] for r in reports) == [0, 2 * 301]
    assert sorted(r["unchanged"] for r in reports) == [0, 2 * 301]
    assert (
        _sql(postgres_url, "SELECT count(*) FROM history")[0][0] == (_source_stats(src)["history"])
    )


def test_postgres_to_postgres(tmp_path: Path, postgres_db_url: str) -> None:
    import postgres_server

    src = _build_source(tmp_path / "src.db", per_namespace=12)
    with (
        postgres_server.fresh_schema(postgres_db_url) as first,
        postgres_server.fresh_schema(postgres_db_url) as second,
    ):
        migrate_store(src, first)
        report = migrate_store(first, second, batch_size=5)
        assert report["written"] == 2 * 13 and report["verified"]
        assert _snapshot(second) == _snapshot(src)


def test_same_text_under_another_id_is_a_conflict(tmp_path: Path, postgres_url: str) -> None:
    src = _build_source(tmp_path / "src.db", per_namespace=30)
    store = SQLiteStore(str(tmp_path / "src.db"))
    last = store.list_records("beta", None, 1, None, False)[0]
    store.close()
    with Memory(postgres_url, embedder=HashEmbedder(384), namespace="beta") as dst:
        dst.add(last.text, user_id=last.user_id, type=last.type)  # a new id, the same text
    with pytest.raises(ConflictError, match="same text and scope under another id"):
        migrate_store(src, postgres_url, batch_size=4)
    # The batches before the conflicting one stay (with their checkpoint): fix and resume.
    assert _sql(postgres_url, "SELECT count(*) FROM records")[0][0] > 1


def test_load_records_is_idempotent_and_refuses_other_data(
    tmp_path: Path, postgres_url: str
) -> None:
    from engramdb.ops.migrate import _import_row

    _build_source(tmp_path / "src.db", per_namespace=6)
    src = SQLiteStore(str(tmp_path / "src.db"))
    rows = [_import_row(item) for item in src.iter_all("alpha", None)]
    src.close()
    dst = PostgresStore(postgres_url)
    try:
        dst.check_embedder("hash-384", 384)
        assert dst.load_records(rows, meta={"k": "v"}) == {"written": 7, "unchanged": 0}
        assert dst.read_meta("k") == "v"
        assert dst.load_records(rows) == {"written": 0, "unchanged": 7}
        changed = [{**rows[0], "version": rows[0]["version"] + 1}]
        with pytest.raises(ConflictError, match="different data") as err:
            dst.load_records(changed, meta={"k": "w"})
        assert err.value.details["id"] == rows[0]["id"]
        assert dst.read_meta("k") == "v"  # the failed batch wrote nothing, not even meta
    finally:
        dst.close()
