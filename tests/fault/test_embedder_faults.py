"""D3: a misbehaving embedder (slow, raising, garbage output) and a changed model."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from engramdb import EmbedderMismatchError, EmbeddingError, HashEmbedder, Memory, Settings

from .helpers import open_mem

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]


class FaultyEmbedder:
    """Implements the Embedder protocol; ``mode`` says how it misbehaves (``ok``: it doesn't)."""

    max_tokens = 256

    def __init__(self, mode: str = "ok", dim: int = 64, name: str | None = None) -> None:
        self.mode = mode
        self.dim = dim
        self.name = name or f"hash-{dim}"  # the children's name: the store accepts it
        self.inner = HashEmbedder(dim)
        self.calls = 0

    def count_tokens(self, text: str) -> int:
        if self.mode == "tokenizer_raises":
            raise RuntimeError("tokenizer crashed")
        if self.mode == "tokenizer_garbage":
            return None  # type: ignore[return-value]
        return self.inner.count_tokens(text)

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        self.calls += 1
        good = self.inner.embed(texts, query=query)
        n = len(texts)
        if self.mode in ("ok", "tokenizer_raises", "tokenizer_garbage"):
            return good
        if self.mode == "slow":
            time.sleep(1.5)
            return good
        if self.mode == "raises":
            raise ConnectionError("embedding service unavailable (HTTP 500)")
        if self.mode == "wrong_dim":
            return np.ones((n, self.dim + 1), np.float32)
        if self.mode == "nan":
            good[-1, 0] = np.nan
            return good
        if self.mode == "inf":
            good[0, 1] = np.inf
            return good
        if self.mode == "zero":
            return np.zeros((n, self.dim), np.float32)
        if self.mode == "empty":
            return np.empty((0, self.dim), np.float32)
        if self.mode == "wrong_count":
            return good[:-1] if n > 1 else np.vstack([good, good])
        if self.mode == "not_numbers":
            return [["a"] * self.dim for _ in texts]  # type: ignore[return-value]
        if self.mode == "none":
            return None  # type: ignore[return-value]
        raise AssertionError(self.mode)


BAD_MODES = ["raises", "wrong_dim", "nan", "inf", "zero", "empty", "wrong_count", "not_numbers"]
BAD_MODES += ["none", "tokenizer_raises", "tokenizer_garbage"]


def table_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(str(db))
    try:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("records", "chunks", "chunks_fts", "history", "events")
        }
    finally:
        conn.close()


@pytest.mark.parametrize("mode", BAD_MODES)
def test_bad_embedder_fails_atomically(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "d3.db"
    with open_mem(db) as good:
        keep = good.add("stored before the embedder broke")[0].id
    before = table_counts(db)
    emb = FaultyEmbedder(mode)
    mem = Memory(f"sqlite:///{db}", embedder=emb)
    try:
        for call in (
            lambda: mem.add("one text"),
            lambda: mem.add([f"batch item {i}" for i in range(5)]),
            lambda: mem.add([{"text": "skip mode", "tags": ["x"]}], on_error="skip"),
            lambda: mem.add_messages("t1", [{"role": "user", "content": "hello there"}]),
            lambda: mem.update(keep, text="a new text needs a new vector"),
        ):
            with pytest.raises(EmbeddingError):
                call()
        assert table_counts(db) == before, "a failed embedding left rows behind"
        assert mem.get(keep).text == "stored before the embedder broke"
        if mode.startswith("tokenizer"):
            # Only the write path counts tokens: search still works.
            assert mem.search("stored before", mode="vector").hits[0].record.id == keep
            assert mem.doctor()["ok"]
            return
        for search_mode in ("hybrid", "vector"):
            with pytest.raises(EmbeddingError):
                mem.search("stored before", mode=search_mode)
        with pytest.raises(EmbeddingError):
            mem.search("stored before", mode="keyword", threshold=0.1)
        # Keyword search needs no embedding: it keeps answering while the embedder is down.
        hits = mem.search("stored before", mode="keyword")
        assert [h.record.id for h in hits.hits] == [keep]
        assert mem.health()["embedder"]["status"] == "error"
        assert mem.doctor()["ok"]
    finally:
        mem.close()


def test_slow_embedder_holds_no_lock(tmp_path: Path) -> None:
    """Embedding happens before the write transaction: a slow model blocks no other writer."""
    db = tmp_path / "slow.db"
    slow = Memory(f"sqlite:///{db}", embedder=FaultyEmbedder("slow"))
    fast = open_mem(db, busy_timeout_ms=200)
    try:
        started = threading.Event()
        out: list[object] = []

        def run() -> None:
            started.set()
            out.append(slow.add("slowly embedded text")[0].id)

        t = threading.Thread(target=run)
        t.start()
        started.wait()
        time.sleep(0.2)  # the slow add is inside embed() now
        t0 = time.monotonic()
        fast.add("a fast writer is not held up")
        assert fast.search("fast writer", mode="keyword").hits
        assert time.monotonic() - t0 < 1.0
        t.join(timeout=30)
        assert out and fast.get(out[0]).text == "slowly embedded text"  # type: ignore[arg-type]
    finally:
        fast.close()
        slow.close()


def test_other_dimension_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "dim.db"
    with open_mem(db) as mem:
        mem.add("built with a 64-dimensional model")
    for emb in (FaultyEmbedder(dim=128, name="hash-64"), FaultyEmbedder(dim=64, name="other")):
        with pytest.raises(EmbedderMismatchError) as info:
            Memory(f"sqlite:///{db}", embedder=emb)
        assert "hash-64" in info.value.message
    with pytest.raises(EmbedderMismatchError):
        Memory(f"sqlite:///{db}", embedder="hash", settings=Settings(hash_dim=32))
    # Nothing was dropped: the original embedder still opens it and finds the record.
    with open_mem(db) as mem:
        assert mem.search("64-dimensional model", mode="vector").hits
        assert mem.doctor()["ok"]
