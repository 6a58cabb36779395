"""Child processes for the fault tests (run as ``python child.py MODE ...``).

Modes:
- ``batches``: add deterministic batches and append each acknowledged batch to an fsynced
  ledger *after* the call returns (the Jepsen-style ack ledger of the test plan).
- ``repl``: read JSON commands on stdin, run them on one ``Memory``, answer JSON on stdout.
- ``bulk``: add N records one by one, then (after every peer is done) search for the peers'.
- ``lock``: hold ``BEGIN EXCLUSIVE`` (or a read transaction) with plain ``sqlite3``.

Every mode uses the deterministic hash embedder. Errors are reported, never swallowed: an
engramdb error prints ``ERR <class> <message>``, anything else prints ``RAW <class> ...``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any


def text_for(seed: int, batch: int, item: int) -> str:
    """The deterministic text of one item (unique per seed, batch and item)."""
    return f"seed {seed} batch {batch} item {item} zq{seed}b{batch}i{item} durable memory text"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def open_memory(db: str, sync: str = "FULL", busy_ms: int = 10_000, dim: int = 64) -> Any:
    from engramdb import HashEmbedder, Memory, Settings

    settings = Settings(
        url=f"sqlite:///{db}", synchronous=sync, busy_timeout_ms=busy_ms, embedder="hash"
    )
    return Memory(embedder=HashEmbedder(dim), settings=settings)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def append_ledger(fd: int, obj: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(obj) + "\n").encode())
    os.fsync(fd)


def mode_batches(a: argparse.Namespace) -> int:
    from engramdb.errors import EngramError

    if a.fsize_limit:
        # "Disk full" without root: the kernel refuses to grow files past the limit (EFBIG).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (a.fsize_limit, a.fsize_limit))
    try:
        mem = open_memory(a.db, a.sync, dim=a.dim)
    except EngramError as exc:
        say(f"ERR {type(exc).__name__} batch=-1 {exc.message}")
        return 0
    fd = os.open(a.ledger, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    say("READY")
    errors = 0
    writers: list[Any] = []
    for b in range(a.start, a.start + a.batches):
        texts = [text_for(a.seed, b, i) + (" pad" * a.pad) for i in range(a.size)]
        items = [{"text": t, "metadata": {"batch": b, "seed": a.seed}} for t in texts]
        t0 = time.time()
        try:
            res = mem.add(items)
        except EngramError as exc:
            say(f"ERR {type(exc).__name__} batch={b} {exc.message}")
            errors += 1
            if errors > a.max_errors:
                break
            continue
        except Exception as exc:  # a raw error reaching the caller is a test failure
            say(f"RAW {type(exc).__module__}.{type(exc).__name__} batch={b} {exc}")
            return 3
        append_ledger(
            fd,
            {
                "batch": b,
                "ids": [r.id for r in res],
                "sha": [sha(t) for t in texts],
                "t_invoke": t0,
                "t_ack": time.time(),
            },
        )
        writer = mem.engine.store._db._writer
        if not any(w is writer for w in writers):
            writers.append(writer)  # kept alive, so each handle gets its own number
        say(f"ACK {b} w{next(n for n, w in enumerate(writers) if w is writer)}")
    mem.close()
    say("DONE")
    return 0


def _result(value: Any) -> Any:
    from engramdb.models import SearchPage

    if isinstance(value, list):
        return [getattr(r, "id", None) for r in value]
    if isinstance(value, SearchPage):
        return [h.record.id for h in value.hits]
    if hasattr(value, "id"):
        return value.id
    return value


def mode_repl(a: argparse.Namespace) -> int:
    from engramdb.errors import EngramError

    mem = open_memory(a.db, a.sync, a.busy_ms, dim=a.dim)
    say(json.dumps({"ready": True, "pid": os.getpid()}))
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "exit":
            break
        if "at" in cmd:  # a cross-process barrier: every child starts at the same instant
            while time.time() < cmd["at"]:
                time.sleep(0.0002)
        out: dict[str, Any]
        try:
            if op == "add_round":
                # Identical content in one scope, once per round (the dedup race).
                text = cmd["kwargs"]["text"]
                value = [r.id for r in mem.add(text, user_id="race")]
            else:
                value = _result(getattr(mem, op)(*cmd.get("args", []), **cmd.get("kwargs", {})))
            out = {"ok": True, "result": value}
        except EngramError as exc:
            out = {"ok": False, "error": type(exc).__name__, "message": exc.message}
        except Exception as exc:
            out = {"ok": False, "error": f"RAW {type(exc).__name__}", "message": str(exc)}
        say(json.dumps(out))
    mem.close()
    return 0


def mode_bulk(a: argparse.Namespace) -> int:
    from engramdb.errors import EngramError

    mem = open_memory(a.db, busy_ms=a.busy_ms, dim=a.dim)
    mem.search("warm up the index", mode="vector")
    workdir = Path(a.workdir)
    (workdir / f"ready.{a.tag}").touch()
    while not (workdir / "go").exists():
        time.sleep(0.001)
    errors: list[str] = []
    ids: list[str] = []
    for start in range(0, a.n, a.batch):
        texts = [
            f"{a.tag} record {i} zq{a.tag}n{i}" for i in range(start, min(a.n, start + a.batch))
        ]
        try:
            ids.extend(r.id for r in mem.add(texts))
        except EngramError as exc:
            errors.append(f"{type(exc).__name__}: {exc.message}")
        except Exception as exc:
            errors.append(f"RAW {type(exc).__name__}: {exc}")
    (workdir / f"done.{a.tag}").touch()
    while len(list(workdir.glob("done.*"))) < a.peers:
        time.sleep(0.005)
    seen: dict[str, dict[str, bool]] = {}
    for peer in a.peer_tags.split(","):
        if peer == a.tag:
            continue
        i = a.n - 1  # the peer's last record: the newest, so the freshest check
        want = f"{peer} record {i} zq{peer}n{i}"
        vec = mem.search(want, mode="vector", top_k=1)
        kw = mem.search(f"zq{peer}n{i}", mode="keyword", top_k=1)
        seen[peer] = {
            "vector": bool(vec.hits) and vec.hits[0].record.text == want,
            "keyword": bool(kw.hits) and kw.hits[0].record.text == want,
        }
    print(json.dumps({"tag": a.tag, "ids": ids, "errors": errors, "seen": seen}))
    mem.close()
    return 0


def mode_lock(a: argparse.Namespace) -> int:
    conn = sqlite3.connect(a.db, isolation_level=None, timeout=10)
    if a.kind == "exclusive":
        conn.execute("BEGIN EXCLUSIVE")
    else:
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM records").fetchone()
    say("LOCKED")
    time.sleep(a.hold)
    conn.execute("COMMIT")
    say("RELEASED")
    conn.close()
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("batches")
    b.add_argument("--db", required=True)
    b.add_argument("--ledger", required=True)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--start", type=int, default=0)
    b.add_argument("--batches", type=int, default=100)
    b.add_argument("--size", type=int, default=100)
    b.add_argument("--pad", type=int, default=0)
    b.add_argument("--sync", default="FULL")
    b.add_argument("--dim", type=int, default=64)
    b.add_argument("--max-errors", type=int, default=0)
    b.add_argument("--fsize-limit", type=int, default=0)
    r = sub.add_parser("repl")
    r.add_argument("--db", required=True)
    r.add_argument("--sync", default="FULL")
    r.add_argument("--busy-ms", type=int, default=10_000)
    r.add_argument("--dim", type=int, default=64)
    k = sub.add_parser("bulk")
    k.add_argument("--db", required=True)
    k.add_argument("--workdir", required=True)
    k.add_argument("--tag", required=True)
    k.add_argument("--n", type=int, required=True)
    k.add_argument("--peers", type=int, required=True)
    k.add_argument("--peer-tags", required=True)
    k.add_argument("--batch", type=int, default=1)
    k.add_argument("--busy-ms", type=int, default=10_000)
    k.add_argument("--dim", type=int, default=64)
    lk = sub.add_parser("lock")
    lk.add_argument("--db", required=True)
    lk.add_argument("--kind", choices=["exclusive", "read"], default="exclusive")
    lk.add_argument("--hold", type=float, default=3.0)
    a = p.parse_args()
    return {"batches": mode_batches, "repl": mode_repl, "bulk": mode_bulk, "lock": mode_lock}[
        a.mode
    ](a)


if __name__ == "__main__":
    sys.exit(main())
