"""Shared pieces of the fault tests: child processes, the ack ledger, and database checks."""

from __future__ import annotations

import json
import os
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engramdb import HashEmbedder, Memory, Settings

CHILD = Path(__file__).with_name("child.py")
DIM = 64  # children and parents agree on the hash embedder's dimension
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def open_mem(db: Path, **settings: Any) -> Memory:
    """Open a Memory over ``db`` with the hash embedder the children use."""
    s = Settings(url=f"sqlite:///{db}", embedder="hash", **settings)
    return Memory(embedder=HashEmbedder(DIM), settings=s)


def child_cmd(mode: str, *args: str) -> list[str]:
    return [sys.executable, str(CHILD), mode, *args]


def wait_line(proc: subprocess.Popen[str], want: str, timeout: float) -> str:
    """Read the child's stdout until a line starting with ``want``; fail on EOF or timeout."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"child did not print {want!r} within {timeout}s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"child exited before {want!r}: {err[-2000:]}")
        if line.startswith(want):
            return line.rstrip("\n")


class Repl:
    """A child process running ``child.py repl``: one Memory driven by JSON commands."""

    def __init__(self, db: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            child_cmd("repl", "--db", str(db), "--dim", str(DIM), *extra),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        self.pid = json.loads(wait_line(self.proc, "{", 30))["pid"]

    def send(self, op: str, *args: Any, at: float | None = None, **kwargs: Any) -> None:
        cmd: dict[str, Any] = {"op": op, "args": list(args), "kwargs": kwargs}
        if at is not None:
            cmd["at"] = at
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float = 60) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(wait_line(self.proc, "{", timeout))
        return out

    def call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        self.send(op, *args, **kwargs)
        out = self.recv()
        assert out["ok"], out
        return out["result"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("exit")
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Return the acknowledged entries (a torn last line was never acknowledged)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def raw_checks(db: Path) -> dict[str, Any]:
    """Open the file with plain sqlite3 and run SQLite's own checks."""
    conn = sqlite3.connect(str(db))
    try:
        integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        records = conn.execute("SELECT count(*) FROM records").fetchone()[0]
        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        fts = conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
        texts = {
            r[0]: (r[1], r[2])
            for r in conn.execute("SELECT id, text, json_extract(metadata, '$.batch') FROM records")
        }
    finally:
        conn.close()
    return {
        "integrity": integrity,
        "fk": fk,
        "records": records,
        "chunks": chunks,
        "fts": fts,
        "texts": texts,
    }


def assert_doctor_clean(mem: Memory) -> dict[str, Any]:
    report = mem.doctor()
    assert report["ok"], report
    assert report["integrity_check"] == "ok"
    assert report["chunks"] == report["keyword_rows"] == report["vector_rows"], report
    return report
