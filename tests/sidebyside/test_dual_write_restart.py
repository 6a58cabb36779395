"""Dual write with the secondary (a real PostgreSQL server) stopped mid-stream, the writing
process "restarted" (the wrapper closed and opened again on its queue file) while it is down,
and the server started again: the queue drains in the background, in order, and
``reconcile`` then finds 0 differences. Before the drain it finds them, so it can fail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engramdb import HashEmbedder, Memory, Settings
from engramdb.sidebyside import DualWriteMemory, RetryQueue, reconcile

pytestmark = [pytest.mark.postgres, pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def pg() -> Iterator[Any]:
    """A PostgreSQL server of this module's own (the test stops and starts it)."""
    import postgres_server

    server = postgres_server.start_local()
    try:
        yield server
    finally:
        postgres_server.remove(server)


@pytest.fixture
def pg_url(pg: Any) -> Iterator[str]:
    import postgres_server

    try:
        psycopg.connect(pg.admin_url, connect_timeout=2).close()
    except psycopg.OperationalError:
        pg.start()
    db = postgres_server.prepare_test_database(pg.admin_url)
    with postgres_server.fresh_schema(db) as url:
        yield url


def _wait(predicate: Any, timeout_s: float = 90.0) -> None:
    """An upper bound for the background drain, never a pace the test relies on."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the queue did not drain"
        time.sleep(0.05)


def test_secondary_down_mid_stream_then_back_reconciles_to_zero(
    pg: Any, pg_url: str, tmp_path: Path
) -> None:
    old = Memory(f"sqlite:///{tmp_path / 'old.db'}", embedder=HashEmbedder(64))
    new = Memory(
        pg_url,
        embedder=HashEmbedder(64),
        settings=Settings(store_retry_s=1.0, store_connect_timeout_s=2, store_io_timeout_s=5),
    )
    queue = tmp_path / "dual.queue"
    fast = Settings(sidebyside_retry_interval_s=0.1)
    dual = DualWriteMemory(old, new, queue, drain=False)
    first = dual.add([f"before the outage {i}" for i in range(20)], user_id="u1")
    dual.update(first[0].record.id, text="before the outage 0, corrected", add_tags=["fixed"])
    assert dual.pending == 0 and dual.secondary_failures == 0
    assert reconcile(old, new)["differences"] == 0

    pg.stop("immediate")  # the secondary dies mid-stream
    during = dual.add([f"during the outage {i}" for i in range(15)], user_id="u2")
    dual.update(during[3].record.id, metadata={"k": 1})  # must not overtake its add
    dual.delete(first[5].record.id)
    dual.add_messages("t1", [{"role": "user", "content": "hello while down"}], user_id="u2")
    dual.set_slots("t1", {"step": 3})
    assert dual.secondary_failures == 1  # one failed write; the rest queued behind it
    pending = dual.pending
    assert pending == 6
    dual.close()  # the application restarts while the secondary is still down

    assert len(RetryQueue(queue)) == pending  # nothing lost on disk
    dual = DualWriteMemory(old, new, queue, settings=fast)  # drains in the background
    dual.add(["after the restart, still down"], user_id="u3")
    assert dual.pending == pending + 1
    pg.start()
    _wait(lambda: dual.pending == 0)
    assert dual.replayed == pending + 1

    report = reconcile(old, new)
    assert report["differences"] == 0, report
    assert report["namespaces"]["default"]["a"] == report["namespaces"]["default"]["b"] == 36
    assert new.get(during[3].record.id).metadata == {"k": 1}
    assert new.get(first[0].record.id).tags == ["fixed"]
    assert new.get_slots("t1").values == {"step": 3}
    assert [e.payload for e in new.events("t1")] == [e.payload for e in old.events("t1")]
    dual.close()
    old.close()
    new.close()


def test_reconcile_sees_what_the_queue_still_holds(pg_url: str, tmp_path: Path) -> None:
    old = Memory(f"sqlite:///{tmp_path / 'old.db'}", embedder=HashEmbedder(64))
    new = Memory(pg_url, embedder=HashEmbedder(64))
    with DualWriteMemory(old, new, tmp_path / "q", drain=False) as dual:
        dual.add(["one", "two"], user_id="u")
        dual.queue.push("add", {"text": [{"text": "never sent"}]})  # behind it: queued
        r = dual.add(["three"], user_id="u")
        report = reconcile(old, new)
        assert report["differences"] == 1
        assert report["namespaces"]["default"]["ids"]["missing_in_b"] == [r[0].record.id]
        assert dual.drain() == 0
    assert reconcile(old, new)["namespaces"]["default"]["missing_in_a"] == 1  # the pushed one
    old.close()
    new.close()
