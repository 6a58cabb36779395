"""PostgreSQL connections: a fresh one skips the checkout check, a dead one is retried."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from pg_store_helpers import count_calls

from engramdb import HashEmbedder, Memory, Settings
from engramdb.stores.postgres import PostgresStore

pytestmark_pg = pytest.mark.postgres


@pytestmark_pg
def test_a_fresh_connection_skips_the_check_and_a_dead_one_is_retried(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection used a moment ago is handed out without the empty round trip; if its
    backend died in that moment, the call's statement fails and the call is retried."""
    import engramdb.stores.postgres.connection as pg_module
    from engramdb.engine.core import Engine

    # One pooled connection: every call gets the same one back.
    store = PostgresStore(postgres_url, pool_min=1, pool_max=1)
    pg = Memory(_engine=Engine(Settings(url=postgres_url), HashEmbedder(64), store))
    try:
        pg.add([f"line {i} of the log" for i in range(20)], user_id="u")
        want = [h.record.id for h in pg.search("line 4", mode="vector", top_k=5)]
        calls = count_calls(monkeypatch, store._db, ["_check_connection"])
        assert [h.record.id for h in pg.search("line 4", mode="vector", top_k=5)] == want
        assert calls["_check_connection"] == 0  # used a moment ago: no check
        monkeypatch.setattr(pg_module, "FRESH_S", 0.0)
        pg.search("line 4", mode="vector", top_k=5)
        assert calls["_check_connection"] == 1  # not fresh any more: checked
        monkeypatch.setattr(pg_module, "FRESH_S", 60.0)
        with store._db.read("finding the backend") as c:
            pid = c.info.backend_pid
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        calls["_check_connection"] = 0
        handed: list[int | None] = []
        checkout = store._db._checkout

        def recording(pool: Any) -> Any:
            conn = checkout(pool)
            handed.append(None if conn.closed else conn.info.backend_pid)
            return conn

        monkeypatch.setattr(store._db, "_checkout", recording)
        assert [h.record.id for h in pg.search("line 4", mode="vector", top_k=5)] == want
        # The dead connection went out unchecked, failed, and was replaced (then checked).
        assert handed[0] == pid and len(handed) >= 2 and handed[-1] != pid
        assert calls["_check_connection"] >= 1
    finally:
        store.close()


@pytestmark_pg
def test_store_pool_max_sizes_the_pool_and_is_checked(postgres_url: str) -> None:
    """``store_pool_max`` bounds the pooled connections a Memory's store opens; a hybrid
    search holds two at once and still runs in a pool of two. A pool of none is refused
    before any connection is made."""
    import pydantic

    pg = Memory(postgres_url, embedder=HashEmbedder(64), settings=Settings(store_pool_max=2))
    try:
        store = pg.engine.store
        assert isinstance(store, PostgresStore) and store.pool_max == 2
        pg.add([f"line {i} of the log" for i in range(20)], user_id="u")
        assert pg.search("line 4", user_id="u", top_k=3).hits
        assert store._db._pool_now().get_stats()["pool_size"] <= 2
    finally:
        pg.close()
    with pytest.raises(pydantic.ValidationError, match="store_pool_max"):
        Settings(store_pool_max=0)
