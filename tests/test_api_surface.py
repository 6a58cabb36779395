"""The public surface: exports, sync/async parity, docstrings, the generator, event-loop guard."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import engramdb
from engramdb import AsyncMemory, HashEmbedder, Memory, Settings, WrongContextError
from engramdb import errors as errors_module
from engramdb import models as models_module

ROOT = Path(__file__).resolve().parent.parent
FACE_ONLY = {"close", "aclose"}


def _public_methods(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member) and name not in FACE_ONLY
    }


def test_all_is_complete_and_resolvable() -> None:
    assert len(engramdb.__all__) == len(set(engramdb.__all__))
    for name in engramdb.__all__:
        assert hasattr(engramdb, name), name
    for module in (errors_module, models_module):
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and obj.__module__ == module.__name__
                and not name.startswith("_")
            ):
                assert name in engramdb.__all__, f"{module.__name__}.{name} is not exported"
    for name in ("Memory", "AsyncMemory", "Settings", "HashEmbedder", "Embedder"):
        assert name in engramdb.__all__


def test_every_error_is_an_engram_error_with_a_status() -> None:
    for name in engramdb.__all__:
        obj = getattr(engramdb, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, engramdb.EngramError)
            assert obj in errors_module.ERROR_TABLE, name
    assert issubclass(engramdb.ValidationError, ValueError)
    assert issubclass(engramdb.NotFoundError, LookupError)


def test_an_error_resolves_by_its_class_hierarchy_not_by_table_order() -> None:
    class Narrower(engramdb.QuotaExceededError):
        pass

    class Unlisted(engramdb.BusyError):
        pass

    # Reversing the table's order must not change what any class resolves to.
    saved = dict(errors_module.ERROR_TABLE)
    try:
        for table in (saved, dict(reversed(list(saved.items())))):
            errors_module.ERROR_TABLE.clear()
            errors_module.ERROR_TABLE.update(table)
            assert errors_module.status_for(engramdb.LimitExceededError("x")) == 413
            assert errors_module.status_for(engramdb.ValidationError("x")) == 422
            assert errors_module.status_for(Narrower("x")) == 409
            assert errors_module.exit_code_for(Unlisted("x")) == 8
            assert errors_module.status_for(engramdb.WrongContextError("x")) == 500
            assert errors_module.exit_code_for(engramdb.WrongContextError("x")) == 9
    finally:
        errors_module.ERROR_TABLE.clear()
        errors_module.ERROR_TABLE.update(saved)


def test_memory_and_async_memory_have_the_same_methods_and_signatures() -> None:
    sync, asyn = _public_methods(Memory), _public_methods(AsyncMemory)
    assert set(sync) == set(asyn)
    for name, fn in sync.items():
        afn = asyn[name]
        if isinstance(inspect.getattr_static(Memory, name), property):
            continue
        s_sig, a_sig = inspect.signature(fn), inspect.signature(afn)  # type: ignore[arg-type]
        assert s_sig.parameters.keys() == a_sig.parameters.keys(), name
        for p in s_sig.parameters:
            sp, ap = s_sig.parameters[p], a_sig.parameters[p]
            assert (sp.kind, sp.default) == (ap.kind, ap.default), f"{name}({p})"
            assert str(sp.annotation) == str(ap.annotation), f"{name}({p})"
        if name == "with_namespace":
            continue
        assert inspect.iscoroutinefunction(afn), f"AsyncMemory.{name} must be async"
        assert not inspect.iscoroutinefunction(fn), f"Memory.{name} must be sync"
    assert inspect.iscoroutinefunction(AsyncMemory.aclose)


def test_every_public_callable_has_a_docstring() -> None:
    missing = []
    for name in engramdb.__all__:
        obj = getattr(engramdb, name)
        if not (callable(obj) or inspect.isclass(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (callable(member) or isinstance(member, property)):
                    continue
                if not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    for cls in (Memory, AsyncMemory):
        for attr, member in _public_methods(cls).items():
            if not inspect.getdoc(member):
                missing.append(f"{cls.__name__}.{attr}")
    assert missing == []


def test_async_face_is_generated_and_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_async.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def sync_mem(store_url: str) -> Memory:
    m = Memory(store_url, embedder=HashEmbedder(64), settings=Settings())
    yield m  # type: ignore[misc]
    m.close()


async def test_sync_call_on_event_loop_thread_names_the_async_method(sync_mem: Memory) -> None:
    for call, method in (
        (lambda: sync_mem.add("from the loop"), "add"),
        (lambda: sync_mem.search("loop"), "search"),
        (lambda: sync_mem.count(), "count"),
        (lambda: sync_mem.get_slots("t"), "get_slots"),
    ):
        with pytest.raises(WrongContextError) as err:
            call()
        assert f"AsyncMemory.{method}" in str(err.value)
        assert err.value.details["method"] == method
    # The same calls from a worker thread work (and the refused add stored nothing).
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as pool:
        assert await loop.run_in_executor(pool, sync_mem.count) == 0
        res = await loop.run_in_executor(pool, lambda: sync_mem.add("from a worker"))
        assert res[0].outcome == "written"
        hits = await loop.run_in_executor(pool, lambda: sync_mem.search("worker"))
        assert hits.hits[0].record.text == "from a worker"


def test_sync_face_works_from_many_threads(sync_mem: Memory) -> None:
    def work(i: int) -> str:
        return sync_mem.add(f"thread note {i}")[0].id or ""

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(work, range(20)))
    assert len(set(ids)) == 20 and sync_mem.count() == 20


class SlowEmbedder(HashEmbedder):
    """A hash embedder that takes a while, to show the loop keeps running meanwhile."""

    def embed(self, texts, *, query=False):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        return super().embed(texts, query=query)


async def test_async_round_trip_does_not_block_the_loop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'async.db'}"
    async with AsyncMemory(url, embedder=SlowEmbedder(64), settings=Settings()) as amem:
        ticks = 0
        stop = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(heartbeat())
        loop_thread = threading.get_ident()
        res = await amem.add("async memories are stored off the loop", user_id="u")
        rid = res[0].id or ""
        assert res[0].outcome == "written"
        hits = await amem.search("stored off the loop", user_id="u")
        rec = await amem.get(rid)
        stop.set()
        await beat
        assert rec.text == "async memories are stored off the loop"
        assert [h.record.id for h in hits] == [rid]
        assert ticks >= 20, f"the loop only ticked {ticks} times during 0.6 s of embedding"
        assert threading.get_ident() == loop_thread
        other = amem.with_namespace("other")
        assert await other.count() == 0
        await asyncio.gather(*(amem.add(f"concurrent {i}") for i in range(5)))
        assert await amem.count() == 6


def test_url_without_password_drops_or_masks_only_the_password() -> None:
    from engramdb.config import url_without_password

    url = "postgresql://app:p%40ss@db.internal:5432/engram?sslmode=require"
    assert url_without_password(url) == "postgresql://app@db.internal:5432/engram?sslmode=require"
    assert url_without_password(url, "***") == (
        "postgresql://app:***@db.internal:5432/engram?sslmode=require"
    )
    for plain in ("postgresql://app@db/engram", "sqlite:///./engram.db", ":memory:"):
        assert url_without_password(plain) == plain == url_without_password(plain, "***")


class SlowToOpen(HashEmbedder):
    """A hash embedder whose first use (the store checks it while opening) takes a while."""

    def __init__(self, dim: int) -> None:
        self.first_use_thread: int | None = None
        super().__init__(dim)

    @property  # type: ignore[override]
    def name(self) -> str:
        if self.first_use_thread is None:
            self.first_use_thread = threading.get_ident()
            time.sleep(0.3)
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value


async def test_async_open_keeps_the_loop_running_and_returns_a_ready_memory(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'opened.db'}"
    embedder = SlowToOpen(64)
    ticks = 0
    stop = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(heartbeat())
    amem = await AsyncMemory.open(url, namespace="opened", embedder=embedder, settings=Settings())
    stop.set()
    await beat
    try:
        assert isinstance(amem, AsyncMemory) and amem.namespace == "opened"
        assert embedder.first_use_thread not in (None, threading.get_ident())
        assert ticks >= 10, f"the loop only ticked {ticks} times during a 0.3 s open"
        res = await amem.add("opened off the loop", user_id="u")
        assert (await amem.get(res[0].id or "")).text == "opened off the loop"
    finally:
        await amem.aclose()
    # A real file: opened again, it holds what the first one wrote.
    again = await AsyncMemory.open(url, namespace="opened", embedder=HashEmbedder(64))
    try:
        assert await again.count() == 1
    finally:
        await again.aclose()


async def test_a_cancelled_async_open_closes_the_store_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engramdb.engine.core import Engine

    closed = threading.Event()
    real_close = Engine.close

    def close(self: Engine) -> None:
        real_close(self)
        closed.set()

    monkeypatch.setattr(Engine, "close", close)
    url = f"sqlite:///{tmp_path / 'cancelled.db'}"
    opening = asyncio.create_task(AsyncMemory.open(url, embedder=SlowToOpen(64)))
    await asyncio.sleep(0.05)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert await asyncio.to_thread(closed.wait, 10)


def test_memory_open_is_the_constructor(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sync.db'}"
    with Memory.open(url, namespace="n", embedder=HashEmbedder(64), settings=Settings()) as mem:
        assert isinstance(mem, Memory) and mem.namespace == "n"
        mem.add("opened the sync way")
        assert mem.count() == 1


async def test_memory_open_on_the_loop_names_the_async_opener(tmp_path: Path) -> None:
    path = tmp_path / "refused.db"
    with pytest.raises(WrongContextError) as err:
        Memory.open(f"sqlite:///{path}", embedder=HashEmbedder(64))
    assert "AsyncMemory.open" in str(err.value)
    assert not path.exists()
