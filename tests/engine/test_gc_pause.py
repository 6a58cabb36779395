"""The collector pause around a batch add: held over our own code, never over outside code,
and the collector left as it was found (errors, threads, an application's own choice, fork).
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engramdb import HashEmbedder, Memory, ValidationError
from engramdb.engine.gc_pause import gc_paused


@pytest.fixture(autouse=True)
def _collector_enabled() -> Iterator[None]:
    gc.enable()
    yield
    assert gc.isenabled(), "a test left the collector disabled"
    gc.enable()


class WatchingEmbedder(HashEmbedder):
    """The hash embedder, noting whether the collector was on while it ran."""

    def __init__(self) -> None:
        super().__init__(dim=32)
        self.collector_on: list[bool] = []

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        self.collector_on.append(gc.isenabled())
        return super().embed(texts, query=query)


def _watch_store(mem: Memory, seen: list[bool], fail: bool = False) -> None:
    store = mem.engine.store
    inner = store.add_records

    def add_records(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        if fail:
            raise RuntimeError("store down")
        return inner(*args, **kwargs)

    store.add_records = add_records  # type: ignore[method-assign]


def test_add_pauses_the_collector_for_the_store_but_not_for_the_embedder(tmp_path: Path) -> None:
    emb = WatchingEmbedder()
    with Memory(f"sqlite:///{tmp_path / 'm.db'}", embedder=emb) as mem:
        seen: list[bool] = []
        _watch_store(mem, seen)
        out = mem.add([f"fact number {i}" for i in range(50)], user_id="u")
        assert [r.outcome for r in out] == ["written"] * 50
        assert seen == [False]  # paused while the records were stored
        assert emb.collector_on and all(emb.collector_on)  # outside code ran with it on
        assert gc.isenabled()
        assert mem.count() == 50


def test_the_collector_comes_back_after_a_failed_batch(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'm.db'}", embedder=HashEmbedder(dim=32)) as mem:
        with pytest.raises(ValidationError):
            mem.add(["fine", {"text": "bad", "importance": "high"}])
        assert gc.isenabled()
        seen: list[bool] = []
        _watch_store(mem, seen, fail=True)
        with pytest.raises(RuntimeError, match="store down"):
            mem.add(["fine"])
        assert seen == [False] and gc.isenabled()


def test_a_collector_the_application_disabled_stays_disabled(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'm.db'}", embedder=HashEmbedder(dim=32)) as mem:
        gc.disable()
        try:
            mem.add(["one", "two"])
            assert not gc.isenabled()
        finally:
            gc.enable()


def test_overlapping_pauses_on_two_threads_enable_it_only_when_both_are_done() -> None:
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            entered.set()
            release.wait(10)

    t = threading.Thread(target=other)
    with gc_paused():
        t.start()
        assert entered.wait(10)
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's batch is still running
    release.set()
    t.join(10)
    assert gc.isenabled()


def test_a_child_forked_during_a_pause_gets_its_collector_back() -> None:
    read, write = os.pipe()
    with gc_paused():
        pid = os.fork()
        if pid == 0:  # child: report and leave without running the parent's cleanup
            os.write(write, b"1" if gc.isenabled() else b"0")
            with gc_paused():
                paused_again = not gc.isenabled()
            os.write(write, b"1" if paused_again and gc.isenabled() else b"0")
            os._exit(0)
        assert not gc.isenabled()
    os.waitpid(pid, 0)
    os.close(write)
    assert os.read(read, 2) == b"11"
    os.close(read)
    assert gc.isenabled()
