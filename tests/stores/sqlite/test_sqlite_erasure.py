"""SQLite erasure: ``forget`` leaves no trace of the forgotten text in the file's bytes.

``delete`` keeps a before-image in the history on purpose; ``forget`` promises more, so the
test reads the raw file (and its WAL) rather than asking the store.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from engramdb import HashEmbedder, Memory

SECRET = "zqxw7731"  # one token that neither the tokenizer nor the stemmer changes


def _file_bytes(db: Path) -> bytes:
    wal = db.with_name(db.name + "-wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_forgotten_text_is_gone_from_the_file_bytes(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    mem = Memory(f"sqlite:///{db}", embedder=HashEmbedder(16))
    # Other users' rows share pages with the forgotten ones, so erasing must zero cells
    # inside live pages, not only drop whole pages.
    mem.add([{"text": f"bob note number {i}", "user_id": "bob"} for i in range(300)])
    first = mem.add(f"alice told me the code {SECRET} for the door", user_id="alice")[0]
    assert first.id
    mem.update(first.id, text=f"alice changed the code {SECRET} again")
    mem.add([{"text": f"alice fact {i} mentions {SECRET}", "user_id": "alice"} for i in range(50)])
    mem.log_event("t-alice", "message", {"text": f"remember {SECRET}"}, user_id="alice")
    mem.set_slots("t-alice", {"door": SECRET}, user_id="alice")
    mem.add([{"text": f"bob later note {i}", "user_id": "bob"} for i in range(300)])
    mem.close()
    assert SECRET.encode() in _file_bytes(db)  # the check below can fail

    mem = Memory(f"sqlite:///{db}", embedder=HashEmbedder(16))
    counts = mem.forget(user_id="alice")
    assert counts["records"] == 51 and counts["events"] == 1
    assert mem.count() == 600
    mem.close()
    raw = _file_bytes(db)
    assert SECRET.encode() not in raw
    assert SECRET.upper().encode() not in raw
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_ordinary_writes_do_not_zero_freed_pages(tmp_path: Path) -> None:
    """Every writing connection sets ``secure_delete`` itself (FAST), whatever SQLite's
    compiled default, and ``forget`` puts it back after using it fully on."""
    db = tmp_path / "s.db"
    mem = Memory(f"sqlite:///{db}", embedder=HashEmbedder(16))
    store = mem._engine.store  # type: ignore[attr-defined]
    assert store._db.writer().execute("PRAGMA secure_delete").fetchone()[0] == 2
    mem.add("a fact about carol", user_id="carol")
    mem.forget(user_id="carol")
    assert store._db.writer().execute("PRAGMA secure_delete").fetchone()[0] == 2
    mem.close()
