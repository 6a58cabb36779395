"""C6: an online backup while two writers (a thread and a process) keep adding."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from .helpers import DIM, ENV, assert_doctor_clean, child_cmd, open_mem, raw_checks, read_ledger

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]


def test_backup_is_a_consistent_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    proc_ledger = tmp_path / "proc.ledger"
    with open_mem(db) as mem:
        mem.add("created before the writers start")
        stop = threading.Event()
        acked: list[tuple[float, int, list[str]]] = []  # (t_ack, batch, ids) of the thread

        def writer() -> None:
            b = 1000
            while not stop.is_set():
                texts = [f"thread batch {b} item {i}" for i in range(10)]
                res = mem.add([{"text": t, "metadata": {"batch": b}} for t in texts])
                acked.append((time.time(), b, [r.id for r in res]))
                b += 1

        proc = subprocess.Popen(
            child_cmd(
                "batches",
                *("--db", str(db), "--ledger", str(proc_ledger), "--seed", "3"),
                *("--batches", "400", "--size", "10", "--dim", str(DIM)),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        t = threading.Thread(target=writer)
        t.start()
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("READY")
            # Both writers are running (SQLite's lock is not fair: give the child time).
            deadline = time.monotonic() + 60
            while len(read_ledger(proc_ledger)) < 3 or len(acked) < 3:
                assert time.monotonic() < deadline, "the writers did not get going"
                time.sleep(0.02)
            start = time.time()
            before_thread = {i for ta, _, ids in list(acked) if ta < start for i in ids}
            before_proc = {
                i for e in read_ledger(proc_ledger) if e["t_ack"] < start for i in e["ids"]
            }
            mem.backup(tmp_path / "snap.db")
            n_thread, n_proc = len(acked), len(read_ledger(proc_ledger))
            while len(acked) <= n_thread + 2 or len(read_ledger(proc_ledger)) <= n_proc:
                assert time.monotonic() < deadline, "the writers stopped"
                time.sleep(0.02)
        finally:
            stop.set()
            t.join(timeout=60)
            proc.kill()
            proc.wait()
            for f in (proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
        acked_thread = {i for _, _, ids in acked for i in ids}
        # The child was killed: its in-flight batch may be committed without an ack, so the
        # upper bound is what the file holds at the end (every ack is in it, checked below).
        final = set(raw_checks(db)["texts"])
    acked_proc = {i for e in read_ledger(proc_ledger) for i in e["ids"]}
    assert acked_thread <= final and acked_proc <= final
    assert before_thread and before_proc, "the writers had not written before the backup"
    snap = raw_checks(tmp_path / "snap.db")
    assert snap["integrity"] == ["ok"] and snap["fk"] == []
    in_backup = set(snap["texts"])
    assert before_thread | before_proc <= in_backup, "acked-before-start missing from backup"
    assert in_backup <= final
    assert final - in_backup, "no write came after the backup"
    per_batch = Counter(b for _, b in snap["texts"].values() if b is not None)
    assert all(n == 10 for n in per_batch.values()), "a batch is torn in the backup"
    assert snap["chunks"] == snap["fts"] == snap["records"]
    # Restore into a new file: it passes doctor and holds exactly the snapshot.
    with open_mem(tmp_path / "restored.db") as fresh:
        fresh.restore(tmp_path / "snap.db")
        assert_doctor_clean(fresh)
        assert fresh.count() == len(in_backup)
        some = sorted(in_backup)[len(in_backup) // 2]
        text = snap["texts"][some][0]
        assert fresh.search(text, mode="vector", top_k=1).hits[0].record.id == some
        fresh.add("written after the restore")
    with open_mem(tmp_path / "restored.db") as again:
        assert_doctor_clean(again)
        assert again.count() == len(in_backup) + 1
