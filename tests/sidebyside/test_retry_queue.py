"""The dual-write retry queue: durable through kill -9, strictly ordered, and a write the
secondary can never take is set aside (dead letter) so the ones behind it can go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engramdb import HashEmbedder, Memory, ValidationError
from engramdb.sidebyside import DualWriteMemory, RetryQueue

CHILD = """
import sys
from engramdb.sidebyside import RetryQueue
q = RetryQueue(sys.argv[1])
i = 0
while True:
    seq = q.push("delete", {"id": f"r{i}"})
    print(seq, flush=True)
    i += 1
"""


@pytest.mark.fault
@pytest.mark.timeout(120)
def test_every_acknowledged_entry_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert child.stdout is not None
    acknowledged = [int(child.stdout.readline()) for _ in range(200)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    q = RetryQueue(path)
    seqs = []
    while (entry := q.peek()) is not None:
        seqs.append(entry.seq)
        assert entry.kwargs == {"id": f"r{entry.seq - 1}"}
        q.done(entry.seq)
    assert seqs[: len(acknowledged)] == acknowledged  # in order, none lost
    q.close()


def test_entries_keep_their_order_and_values(tmp_path: Path) -> None:
    q = RetryQueue(tmp_path / "q.db")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    q.push("add", {"text": [{"text": "a", "occurred_at": when, "tags": ("x",)}]})
    q.push("delete", {"id": "b"})
    q.failed(1, "StoreUnavailableError: down")
    first = q.peek()
    assert first is not None and first.attempts == 1
    assert first.kwargs == {"text": [{"text": "a", "occurred_at": when.isoformat(), "tags": ["x"]}]}
    with pytest.raises(TypeError, match="cannot queue"):
        q.push("add", {"text": object()})
    assert len(q) == 2
    q.close()


def test_a_write_the_secondary_refuses_is_set_aside_after_three_tries(tmp_path: Path) -> None:
    a = Memory(f"sqlite:///{tmp_path / 'a.db'}", embedder=HashEmbedder(32))
    b = Memory(f"sqlite:///{tmp_path / 'b.db'}", embedder=HashEmbedder(32))
    with DualWriteMemory(a, b, tmp_path / "q.db", drain=False) as dual:
        # b holds another text under the id the next add will use: a conflict there
        rid = "rec-1"
        b.add("something else", id=rid)
        dual.add("the real text", id=rid)
        assert dual.pending == 1
        dual.delete(rid)  # queued behind it
        dual.add("later", user_id="u")
        assert dual.drain() == 3 and dual.drain() == 3  # tries 2 and 3 of the first entry
        assert dual.drain() == 0  # buried on the third failure, the rest went through
        [dead] = dual.queue.dead_letters()
        assert dead.method == "add" and dead.attempts == 3
        assert b.count() == 1 and b.list().records[0].text == "later"
        with pytest.raises(ValidationError):
            dual.add("   ")  # the primary refuses: nothing goes to the secondary
        assert dual.pending == 0
    a.close()
    b.close()
