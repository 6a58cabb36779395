"""C4: I/O errors and a full disk, injected into a real child with strace and RLIMIT_FSIZE.

The Nth ``pwrite64`` / ``fdatasync`` of the child fails with EIO or ENOSPC (``when=N+``: and
every later one, so the fault persists until the process ends). The call must raise
``StoreError`` (never a raw ``sqlite3`` error) and write no ack; a new process then finds an
intact file holding every acknowledged record. With a one-shot fault (``when=N``) the same
process recovers: the writer connection is discarded and the next write, on a new connection,
succeeds and is durable (fsyncgate: never retry a failed sync on the same handle).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from .child import sha, text_for
from .helpers import DIM, ENV, child_cmd, open_mem, raw_checks, read_ledger

pytestmark = [
    pytest.mark.fault,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed"),
]

SIZE = 20


def seed_store(db: Path) -> dict[str, str]:
    """Acknowledged data written before any fault: id -> sha256 of its text."""
    with open_mem(db) as mem:
        texts = [f"old acknowledged memory {i}" for i in range(50)]
        res = mem.add(texts)
    return {r.id: sha(t) for r, t in zip(res, texts, strict=True)}


def run_child(db: Path, ledger: Path, prefix: list[str], *extra: str) -> tuple[int, str, str]:
    cmd = prefix + child_cmd(
        "batches",
        *("--db", str(db), "--ledger", str(ledger), "--seed", "7", "--size", str(SIZE)),
        *("--dim", str(DIM)),
        *extra,
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=100)
    return proc.returncode, proc.stdout, proc.stderr


def strace(spec: str) -> list[str]:
    syscall = spec.split(":", 1)[0]
    return ["strace", "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null"] + [
        "-e",
        f"trace={syscall}",
        "-e",
        f"inject={spec}",
    ]


def check_after(db: Path, ledger: Path, old: dict[str, str], out: str) -> Counter[int]:
    """A new process's view: intact file, old data intact, acks present, batches whole."""
    assert "RAW" not in out, out
    checks = raw_checks(db)
    assert checks["integrity"] == ["ok"], checks["integrity"]
    assert checks["fk"] == []
    texts = checks["texts"]
    for rid, digest in old.items():
        assert sha(texts[rid][0]) == digest
    acked = read_ledger(ledger)
    for entry in acked:
        for rid, digest in zip(entry["ids"], entry["sha"], strict=True):
            assert sha(texts[rid][0]) == digest, f"acknowledged {rid} lost"
    per_batch = Counter(b for _, b in texts.values() if b is not None)
    assert all(n == SIZE for n in per_batch.values()), per_batch
    failed = {int(line.split("batch=")[1].split()[0]) for line in out.splitlines() if "ERR" in line}
    assert not failed & {e["batch"] for e in acked}, "a failed call was acknowledged"
    for rid, (text, b) in texts.items():
        if b is not None:
            i = int(text.split(" item ")[1].split()[0])
            assert text.split(" pad")[0] == text_for(7, b, i), rid
    with open_mem(db) as mem:
        report = mem.doctor()
        assert report["ok"], report
        mem.add("the store writes again after the fault cleared")
    return per_batch


@pytest.mark.parametrize(
    "spec",
    [
        # The first ~10 pwrite64 and 2 fdatasync calls happen while opening (shm, WAL
        # header); later ones inside the first and second batch's commit.
        "pwrite64:error=EIO:when=1+",
        "pwrite64:error=EIO:when=12+",
        "pwrite64:error=EIO:when=40+",
        "pwrite64:error=EIO:when=75+",
        "pwrite64:error=ENOSPC:when=30+",
        "fdatasync:error=EIO:when=1+",
        "fdatasync:error=EIO:when=3+",
        "fdatasync:error=EIO:when=4+",
        "fdatasync:error=ENOSPC:when=3+",
    ],
)
def test_persistent_io_error_raises_store_error(tmp_path: Path, spec: str) -> None:
    db, ledger = tmp_path / "io.db", tmp_path / "io.ledger"
    old = seed_store(db)
    rc, out, err = run_child(db, ledger, strace(spec), "--batches", "6", "--max-errors", "1")
    assert rc == 0, out + err
    errs = [line for line in out.splitlines() if line.startswith("ERR")]
    assert errs, f"the injected fault never surfaced: {out}"
    assert all(line.startswith("ERR StoreError") for line in errs), errs
    per_batch = check_after(db, ledger, old, out)
    if spec.startswith("pwrite64"):
        # The WAL frames never reached the file: the failed batch is simply absent.
        failed = int(errs[0].split("batch=")[1].split()[0])
        assert failed not in per_batch


@pytest.mark.parametrize(
    "spec",
    # Each fault lands in the second batch's commit, after one batch on the first handle
    # (measured: batch 0 makes pwrite64 calls 1-67 since migration 0002, batch 1 68-~125).
    ["pwrite64:error=EIO:when=80", "pwrite64:error=EIO:when=100", "fdatasync:error=EIO:when=4"],
)
def test_one_shot_io_error_reopens_writer(tmp_path: Path, spec: str) -> None:
    """After one failed write the same process continues on a new writer connection."""
    db, ledger = tmp_path / "once.db", tmp_path / "once.ledger"
    old = seed_store(db)
    rc, out, err = run_child(db, ledger, strace(spec), "--batches", "4", "--max-errors", "1")
    assert rc == 0, out + err
    lines = out.splitlines()
    errs = [line for line in lines if line.startswith("ERR")]
    assert len(errs) == 1 and errs[0].startswith("ERR StoreError"), out
    failed = int(errs[0].split("batch=")[1].split()[0])
    acks = {int(line.split()[1]): line.split()[2] for line in lines if line.startswith("ACK")}
    later = [b for b in acks if b > failed]
    assert later, f"no write succeeded after the fault: {out}"
    # The writer handle that saw the error was replaced by a new one.
    earlier = [acks[b] for b in acks if b < failed]
    assert earlier, out
    assert all(acks[b] != w for b in later for w in earlier), out
    per_batch = check_after(db, ledger, old, out)
    assert all(b in per_batch for b in later)


def test_file_size_limit_is_disk_full(tmp_path: Path) -> None:
    """RLIMIT_FSIZE (ulimit -f) makes writes fail with EFBIG: StoreError, then recovery."""
    db, ledger = tmp_path / "full.db", tmp_path / "full.ledger"
    old = seed_store(db)
    limit = db.stat().st_size + 256 * 1024
    rc, out, err = run_child(
        db,
        ledger,
        [],
        *("--batches", "40", "--pad", "60", "--max-errors", "1"),
        *("--fsize-limit", str(limit)),
    )
    assert rc == 0, out + err
    errs = [line for line in out.splitlines() if line.startswith("ERR")]
    assert errs and all(line.startswith("ERR StoreError") for line in errs), out
    assert any(line.startswith("ACK") for line in out.splitlines()), out
    check_after(db, ledger, old, out)
