"""D4: another program locks the file; fork: a child process reuses the parent's Memory."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from engramdb import BusyError

from .helpers import ENV, assert_doctor_clean, child_cmd, open_mem, raw_checks, wait_line

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]


def hold_lock(db: Path, kind: str, hold: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        child_cmd("lock", "--db", str(db), "--kind", kind, "--hold", str(hold)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    wait_line(proc, "LOCKED", 30)
    return proc


def finish(proc: subprocess.Popen[str]) -> None:
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def test_exclusive_lock_gives_busy_then_recovers(tmp_path: Path) -> None:
    db = tmp_path / "d4.db"
    with open_mem(db, busy_timeout_ms=1000) as mem:
        first = mem.add("written before the lock")[0].id
        locker = hold_lock(db, "exclusive", 3.0)
        try:
            t0 = time.monotonic()
            with pytest.raises(BusyError):
                mem.add("blocked by an exclusive lock")
            waited = time.monotonic() - t0
            assert 0.5 <= waited < 10, waited  # it waited about busy_timeout, then gave up
            # A second try on the (discarded and reopened) writer also fails cleanly.
            with pytest.raises(BusyError):
                mem.update(first, add_tags=["blocked"])
        finally:
            finish(locker)
        # Released: the very next write succeeds, and nothing of the failed ones is there.
        rid = mem.add("written after the lock")[0].id
        assert mem.get(rid).text == "written after the lock"
        assert mem.count() == 2
        assert mem.get(first).tags == []
        assert_doctor_clean(mem)


def test_open_reader_does_not_block_writers(tmp_path: Path) -> None:
    db = tmp_path / "reader.db"
    with open_mem(db, busy_timeout_ms=1000) as mem:
        mem.add("present before the reader")
        reader = hold_lock(db, "read", 3.0)
        try:
            t0 = time.monotonic()
            for i in range(20):
                mem.add(f"written while a read transaction is open {i}")
            assert time.monotonic() - t0 < 2.5
            assert reader.poll() is None, "the reader must still hold its snapshot"
            assert mem.count() == 21
        finally:
            finish(reader)
        assert raw_checks(db)["integrity"] == ["ok"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_reuses_memory(tmp_path: Path) -> None:
    db = tmp_path / "fork.db"
    mem = open_mem(db)
    try:
        parent_id = mem.add("written by the parent before fork")[0].id
        mem.search("parent before fork", mode="vector")  # readers and the index are live
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: same Memory object, new connections
            code = 1
            try:
                os.close(r)
                got = mem.get(parent_id).text
                new = mem.add("written by the child after fork")[0].id
                hits = mem.search("parent before fork", mode="vector", top_k=1).hits
                report = mem.doctor()
                msg = {"got": got, "new": new, "hit": hits[0].record.id, "ok": report["ok"]}
                os.write(w, json.dumps(msg).encode())
                mem.close()
                code = 0
            except BaseException as exc:
                os.write(w, json.dumps({"error": repr(exc)}).encode())
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r) as pipe:
            out = json.loads(pipe.read() or "{}")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, out
        assert out["got"] == "written by the parent before fork"
        assert out["hit"] == parent_id and out["ok"]
        # The parent carries on with its own connections and sees the child's write.
        assert mem.get(out["new"]).text == "written by the child after fork"
        hits = mem.search("written by the child after fork", mode="vector", top_k=1).hits
        assert hits[0].record.id == out["new"]
        mem.add("the parent still writes")
        assert mem.count() == 3
        assert_doctor_clean(mem)
    finally:
        mem.close()
    assert raw_checks(db)["integrity"] == ["ok"]
