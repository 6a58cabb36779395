"""PostgreSQL faults against a real server: D1 (restart, dropped and hung connections), C3
(crash during writes), the lost-COMMIT outcome, and K5 (concurrent compare-and-set with
forced serialization failures and deadlocks).

The module runs its own server (``postgres_server.start_local``), so restarting or crashing
it cannot disturb the session server the rest of the suite shares; each test gets a fresh
schema on it. Network faults go through :class:`fault.proxy.FaultProxy`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from engramdb import (
    BusyError,
    CommitUnknownError,
    ConflictError,
    HashEmbedder,
    Memory,
    NotFoundError,
    QuotaExceededError,
    Settings,
    StoreUnavailableError,
)
from engramdb.stores.postgres.faults import OPEN_WINDOW_S

from .proxy import FaultProxy

pytestmark = [pytest.mark.postgres, pytest.mark.fault, pytest.mark.timeout(300)]

DIM = 64
# Generous correctness margin on top of the configured bounds (a loaded CI machine).
MARGIN_S = 10.0


@pytest.fixture(scope="module")
def pg() -> Iterator[Any]:
    """A PostgreSQL server of this module's own (restarted and crashed by the tests)."""
    import postgres_server

    server = postgres_server.start_local()
    try:
        yield server
    finally:
        postgres_server.remove(server)


@pytest.fixture
def url(pg: Any) -> Iterator[str]:
    """A fresh schema on the module's server (started again if a test left it down)."""
    import postgres_server

    try:
        psycopg.connect(pg.admin_url, connect_timeout=2).close()
    except psycopg.OperationalError:
        pg.start()
    db = postgres_server.prepare_test_database(pg.admin_url)
    with postgres_server.fresh_schema(db) as schema_url:
        yield schema_url


@pytest.fixture
def proxy(pg: Any) -> Iterator[FaultProxy]:
    """A fault proxy in front of the module's server."""
    p = FaultProxy(pg.port)
    yield p
    p.close()


def open_mem(url: str, **settings: Any) -> Memory:
    """A Memory over ``url`` with the hash embedder and tight fault bounds."""
    base = {"store_retry_s": 15.0, "store_io_timeout_s": 5.0, "store_connect_timeout_s": 2.0}
    return Memory(url, embedder=HashEmbedder(DIM), settings=Settings(**{**base, **settings}))


def table_facts(url: str) -> dict[str, int]:
    """Counts straight from the tables: rows, distinct ids, distinct texts."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT id), count(DISTINCT text) FROM records"
        ).fetchone()
    assert row is not None
    return {"rows": row[0], "ids": row[1], "texts": row[2]}


@dataclass
class Ledger:
    """What the workers were told: acknowledged ids, surely-failed ids, every failure."""

    acked: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    errors: list[tuple[str, float, BaseException]] = field(default_factory=list)
    calls: list[tuple[float, float, bool]] = field(default_factory=list)  # start, end, ok
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, start: float, ok: bool, exc: BaseException | None = None, op: str = "") -> None:
        end = time.monotonic()
        with self.lock:
            self.calls.append((start, end, ok))
            if exc is not None:
                self.errors.append((op, end - start, exc))


def add_resolving(mem: Memory, items: list[dict[str, Any]], ledger: Ledger) -> None:
    """Add a batch; on an unknown outcome retry with the same ids (the documented recovery)."""
    ids = [it["id"] for it in items]
    for _ in range(5):
        start = time.monotonic()
        try:
            results = mem.add(items)
        except CommitUnknownError as exc:
            ledger.note(start, False, exc, "add")
            assert exc.details["outcome"] == "unknown"
            assert exc.details["ids"] == ids
            continue  # retry: idempotent by id
        except StoreUnavailableError as exc:
            ledger.note(start, False, exc, "add")
            with ledger.lock:
                ledger.failed.update(ids)
            return
        ledger.note(start, True)
        assert all(r.outcome in ("written", "unchanged") for r in results), results
        with ledger.lock:
            ledger.acked.update(ids)
            ledger.failed.difference_update(ids)
        return
    raise AssertionError(f"batch {ids[0]}… never resolved")


def run_workers(mem: Memory, ledger: Ledger, stop: threading.Event, batch: int = 1) -> list[Any]:
    """Two threads: one adding (batches of ``batch``), one adding and searching."""
    failures: list[BaseException] = []

    def work(name: str, search: bool) -> None:
        i = 0
        try:
            while not stop.is_set():
                items = [
                    {"id": f"{name}-{i}-{j}", "text": f"note {name} {i} {j} about topic {i % 7}"}
                    for j in range(batch)
                ]
                add_resolving(mem, items, ledger)
                if search:
                    start = time.monotonic()
                    try:
                        mem.search(f"topic {i % 7}", top_k=3)
                        ledger.note(start, True)
                    except StoreUnavailableError as exc:
                        ledger.note(start, False, exc, "search")
                i += 1
        except BaseException as exc:  # an unexpected error type fails the test
            failures.append(exc)

    threads = [
        threading.Thread(target=work, args=(n, s), daemon=True)
        for n, s in (("w0", False), ("w1", True))
    ]
    for t in threads:
        t.start()
    return [threads, failures]


def stop_workers(handle: list[Any], stop: threading.Event) -> None:
    stop.set()
    threads, failures = handle
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a worker hung"
    assert not failures, failures


def check_ledger(mem: Memory, url: str, ledger: Ledger, bound_s: float) -> None:
    """No acknowledged write lost, no write applied twice, failures only within the bound."""
    for op, took, exc in ledger.errors:
        assert isinstance(exc, StoreUnavailableError), (op, exc)
        assert took < bound_s, f"{op} failed after {took:.1f}s, bound {bound_s}s: {exc}"
        if not isinstance(exc, CommitUnknownError):
            assert exc.details.get("server", "").startswith("127.0.0.1:"), exc.details
    acked = sorted(ledger.acked)
    got = {r.id for i in range(0, len(acked), 500) for r in mem.get_many(acked[i : i + 500])}
    assert got == ledger.acked, f"lost acknowledged ids: {sorted(ledger.acked - got)[:5]}"
    for rid in sorted(ledger.failed)[:50]:  # surely not committed: never there
        with pytest.raises(NotFoundError):
            mem.get(rid)
    facts = table_facts(url)
    assert facts["rows"] == facts["ids"] == facts["texts"] == mem.count()
    assert facts["rows"] == len(ledger.acked)


def first_success_after(ledger: Ledger, t: float) -> float:
    """Seconds from ``t`` to the end of the first successful call that started after ``t``."""
    ends = [end for start, end, ok in ledger.calls if ok and start >= t]
    assert ends, "no call succeeded after the outage"
    return min(ends) - t


# ---------------------------------------------------------------------- which calls retry


def test_retry_covers_single_transaction_methods_only() -> None:
    """Reads and one-transaction writes retry; multi-transaction and streaming ones do not."""
    from engramdb.stores.postgres import PostgresStore
    from engramdb.stores.postgres.faults import RETRIED

    # The store's class and the mixins it is built from (its search calls).
    classes = {c.__name__ for c in PostgresStore.__mro__ if c is not object}
    retried = {n.split(".", 1)[1] for n in RETRIED if n.split(".", 1)[0] in classes}
    must = {
        "add_records", "update_record", "delete_records", "set_slots", "append_events",
        "get_records", "list_records", "count_records", "history", "vector_candidates",
        "keyword_candidates", "thread_turns", "list_events", "get_slots", "check_embedder",
    }  # fmt: skip
    never = {
        "forget", "doctor", "backup", "restore", "iter_all", "iter_events_and_slots",
        "import_records", "import_events_and_slots", "exclusive", "close", "load_records",
    }  # fmt: skip
    assert must <= retried, must - retried
    assert not (never & retried), never & retried
    assert retried <= set(dir(PostgresStore))
    assert {"locate", "locate_whole", "hybrid_candidates", "vector_scores"} <= retried


# ---------------------------------------------------------------------- D1


def test_d1_restart_under_load_reconnects(pg: Any, url: str) -> None:
    """`pg_ctl restart -m fast` under 2 threads of adds and searches: calls retry through."""
    mem = open_mem(url)
    ledger, stop = Ledger(), threading.Event()
    handle = run_workers(mem, ledger, stop)
    try:
        time.sleep(1.0)
        down = time.monotonic()
        pg.stop("fast")
        time.sleep(1.0)  # a real outage: nothing listens
        pg.start()
        up = time.monotonic()
        time.sleep(3.0)
    finally:
        stop_workers(handle, stop)
    recovery = first_success_after(ledger, up)
    # Calls in flight across the outage that succeeded: they retried through it.
    through = [end - start for start, end, ok in ledger.calls if ok and start < up and end > up]
    print(
        f"\nD1 restart: outage {up - down:.2f}s, first success {recovery:.3f}s after start, "
        f"{len(through)} calls retried through (longest {max(through, default=0):.2f}s)"
    )
    assert through, "no call spanned the outage"
    assert recovery < 10.0
    # The outage is shorter than store_retry_s: every call made during it retried through.
    assert [e for e in ledger.errors if not isinstance(e[2], CommitUnknownError)] == []
    check_ledger(mem, url, ledger, 15.0 + MARGIN_S)
    mem.close()


def test_d1_proxy_drops_and_latency(url: str, proxy: FaultProxy) -> None:
    """Connections reset under load (proxy `drop`), then latency: calls go on, nothing lost."""
    mem = open_mem(proxy.url(url))
    ledger, stop = Ledger(), threading.Event()
    handle = run_workers(mem, ledger, stop)
    dropped = 0
    try:
        for _ in range(8):
            time.sleep(0.3)
            dropped += proxy.drop()
        proxy.latency(0.05)
        time.sleep(1.0)
        proxy.pass_()
        time.sleep(0.5)
    finally:
        stop_workers(handle, stop)
    assert dropped >= 8
    check_ledger(mem, url, ledger, 15.0 + MARGIN_S)
    assert len(ledger.acked) > 10
    mem.close()


def test_d1_outage_longer_than_the_window_fails_within_the_bound(pg: Any, url: str) -> None:
    """Server down longer than store_retry_s: StoreUnavailableError naming the server, in time."""
    secret = url.replace("postgresql://postgres@", "postgresql://postgres:s3cr3t-pw@", 1)
    assert secret != url  # trust auth: the password is never asked for, only carried
    mem = open_mem(secret, store_retry_s=2.0)
    mem.add("before the outage", id="before")
    pg.stop("fast")
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            mem.add("during the outage", id="during")
        took = time.monotonic() - start
        assert not isinstance(info.value, CommitUnknownError)
        # Two correctness bounds, not a speed target: the call kept retrying through the
        # whole store_retry_s window (2 s; the backoff's jitter may end it up to 0.5 s early)
        # instead of giving up at the first refused connection, and it did not hang past
        # the window (generous margin for a loaded machine).
        assert 1.5 <= took < 2.0 + MARGIN_S, took
        assert f"127.0.0.1:{pg.port}" in info.value.message
        assert "adding records" in info.value.message
        assert "s3cr3t" not in str(info.value.to_dict())
        assert info.value.code == "store_unavailable"
        with pytest.raises(StoreUnavailableError):
            mem.search("anything")
    finally:
        pg.start()
    up = time.monotonic()
    assert mem.get("before").text == "before the outage"
    print(f"\nD1 first call after start: {time.monotonic() - up:.3f}s")
    with pytest.raises(NotFoundError):
        mem.get("during")
    mem.close()


def test_d1_breaker_shortens_the_window_while_the_server_is_known_down(pg: Any, url: str) -> None:
    """After one call used its whole window and failed, the breaker is open: health says so,
    and later calls fail within OPEN_WINDOW_S instead of store_retry_s; the first call after
    the server is back succeeds and closes it."""
    mem = open_mem(url, store_retry_s=OPEN_WINDOW_S + 3.0)
    mem.add("before the outage", id="before")
    assert mem.health()["store"]["breaker"]["state"] == "closed"
    pg.stop("fast")
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            mem.add("during", id="during")
        assert time.monotonic() - start >= OPEN_WINDOW_S + 2.0  # the whole 8 s window first
        report = mem.health()
        assert report["status"] == "degraded"
        breaker = report["store"]["breaker"]
        assert breaker["state"] == "open" and breaker["failed_calls"] >= 1
        assert "unavailable" in breaker["last_error"]
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            mem.search("anything")
        # A correctness bound: the full window ends after at least 7.5 s (jitter), the
        # shortened one after 5 s; 1.5 s of slack for a loaded machine.
        assert time.monotonic() - start < OPEN_WINDOW_S + 1.5
        assert "shortened to 5 s" in info.value.message
    finally:
        pg.start()
    assert mem.get("before").text == "before the outage"  # goes through while open
    assert mem.health()["store"]["breaker"] == {
        "state": "closed",
        "opened_at": None,
        "failed_calls": 0,
        "last_error": None,
    }
    mem.close()


def test_open_waits_for_a_server_that_is_starting(pg: Any, url: str) -> None:
    """Opening a store while the server is down succeeds once it comes up (within bounds)."""
    open_mem(url).close()  # schema in place
    pg.stop("fast")
    starter = threading.Timer(1.5, pg.start)
    starter.start()
    try:
        start = time.monotonic()
        mem = open_mem(url)
        took = time.monotonic() - start
    finally:
        starter.join()
    assert took < 30.0, took
    mem.add("after the start", id="a")
    assert mem.count() == 1
    mem.close()


def test_blackhole_fails_within_the_bound(url: str, proxy: FaultProxy) -> None:
    """A server that accepts but never answers: StoreUnavailableError in bounded time."""
    mem = open_mem(proxy.url(url), store_retry_s=3.0, store_io_timeout_s=2.0)
    mem.add("reachable", id="r1")
    proxy.blackhole()
    for call in (lambda: mem.search("reachable"), lambda: mem.add("lost", id="r2")):
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            call()
        took = time.monotonic() - start
        assert took < 3.0 + 2.0 + MARGIN_S, took
        assert f"127.0.0.1:{proxy.port}" in info.value.message
    proxy.pass_()
    assert mem.get("r1").text == "reachable"
    with pytest.raises(NotFoundError):
        mem.get("r2")
    mem.close()


def test_hung_reply_mid_transaction_is_cut_by_the_io_timeout(url: str, proxy: FaultProxy) -> None:
    """A reply that never comes on a checked-out connection: the watchdog ends the wait."""
    mem = open_mem(proxy.url(url), store_retry_s=2.0, store_io_timeout_s=1.0)
    mem.add("warm", id="w")
    # Every chunk delayed 0.6 s: the checkout check's round trip (1.2 s) passes the 2 s
    # connect bound, the transaction's statements do not finish within 1 s.
    proxy.latency(0.6)
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        mem.add("slow", id="s")
    assert time.monotonic() - start < 2.0 + 2.0 + MARGIN_S
    assert "store_io_timeout_s=1" in info.value.message
    proxy.pass_()
    with pytest.raises(NotFoundError):
        mem.get("s")
    mem.close()


# ---------------------------------------------------------------------- lost COMMIT


@pytest.mark.parametrize("forward", [True, False], ids=["committed", "not-committed"])
def test_commit_outcome_unknown_then_retry_by_id(
    url: str, proxy: FaultProxy, forward: bool
) -> None:
    """The connection drops after COMMIT was sent: the error says so; retrying is exact."""
    mem = open_mem(proxy.url(url))
    items = [{"id": "c1", "text": "first of the batch"}, {"id": "c2", "text": "second one"}]
    proxy.cut_at_commit(forward=forward)
    with pytest.raises(CommitUnknownError) as info:
        mem.add(items)
    assert proxy.commits_cut == 1
    err = info.value
    assert err.details["outcome"] == "unknown"
    assert err.details["ids"] == ["c1", "c2"]
    assert "outcome is unknown" in err.message and "COMMIT" in err.message
    assert err.code == "commit_unknown"
    assert table_facts(url)["rows"] == (2 if forward else 0)
    results = mem.add(items)
    assert [r.outcome for r in results] == (["unchanged"] * 2 if forward else ["written"] * 2)
    assert table_facts(url) == {"rows": 2, "ids": 2, "texts": 2}
    assert mem.count() == 2
    mem.close()


def test_commit_unknown_without_caller_ids(url: str, proxy: FaultProxy) -> None:
    """Engine-made ids come back in the error, so the caller can retry with them."""
    mem = open_mem(proxy.url(url))
    proxy.cut_at_commit(forward=True)
    with pytest.raises(CommitUnknownError) as info:
        mem.add("a memory whose id the engine chose")
    (rid,) = info.value.details["ids"]
    again = mem.add("a memory whose id the engine chose", id=rid)
    assert again[0].outcome == "unchanged" and again[0].record is not None
    assert again[0].record.id == rid
    assert table_facts(url)["rows"] == 1
    mem.close()


# ---------------------------------------------------------------------- C3


def test_c3_crash_during_writes(pg: Any, url: str) -> None:
    """`pg_ctl stop -m immediate` during batched writes: acks survive, nothing twice, no
    partial batch, and the store opens clean afterwards."""
    mem = open_mem(url, store_retry_s=20.0)
    ledger, stop = Ledger(), threading.Event()
    handle = run_workers(mem, ledger, stop, batch=10)
    try:
        time.sleep(1.5)
        pg.stop("immediate")
        time.sleep(0.5)
        pg.start()  # crash recovery
        up = time.monotonic()
        time.sleep(2.0)
    finally:
        stop_workers(handle, stop)
    through = [end - start for start, end, ok in ledger.calls if ok and start < up and end > up]
    unknown = sum(isinstance(e, CommitUnknownError) for _, _, e in ledger.errors)
    print(
        f"\nC3 crash: first success {first_success_after(ledger, up):.3f}s after start, "
        f"{len(through)} calls retried through, {unknown} unknown outcomes resolved, "
        f"{len(ledger.acked)} records acknowledged"
    )
    assert through, "no call spanned the crash"
    mem.close()
    again = open_mem(url)
    check_ledger(again, url, ledger, 20.0 + MARGIN_S)
    with psycopg.connect(url) as conn:  # batches are atomic: all 10 of a batch or none
        partial = conn.execute(
            "SELECT split_part(id, '-', 1) || split_part(id, '-', 2), count(*) FROM records "
            "GROUP BY 1 HAVING count(*) <> 10"
        ).fetchall()
    assert partial == []
    assert again.doctor()["problems"] == []
    again.close()


def test_c3_lost_ack_then_crash_resolves_by_id(pg: Any, url: str, proxy: FaultProxy) -> None:
    """The COMMIT reached the server, its reply was lost, then the server crashed: the
    retry by id after recovery finds the batch (durable), and stores no second copy."""
    mem = open_mem(proxy.url(url), store_retry_s=20.0)
    items = [{"id": f"d{i}", "text": f"durable {i}"} for i in range(5)]
    proxy.cut_at_commit(forward=True)
    with pytest.raises(CommitUnknownError):
        mem.add(items)
    pg.stop("immediate")
    pg.start()
    results = mem.add(items)
    assert [r.outcome for r in results] == ["unchanged"] * 5
    assert table_facts(url) == {"rows": 5, "ids": 5, "texts": 5}
    mem.close()


# ---------------------------------------------------------------------- K5


def test_k5_concurrent_compare_and_set_loses_no_update(url: str) -> None:
    """4 threads over 2 Memory objects: slot CAS and update(expected_version) on one row."""
    mems = [open_mem(url), open_mem(url)]
    mems[0].add("counter record", id="k")
    rounds, wins, conflicts = 15, [0] * 4, [0] * 4
    failures: list[BaseException] = []

    def work(n: int) -> None:
        mem = mems[n % 2]
        try:
            done = 0
            while done < rounds:
                s = mem.get_slots("t")
                try:
                    mem.set_slots("t", {"n": s.values.get("n", 0) + 1}, expected_version=s.version)
                except ConflictError:
                    conflicts[n] += 1
                    continue
                rec = mem.get("k")
                try:
                    mem.update("k", text=rec.text + f" w{n}r{done}", expected_version=rec.version)
                except ConflictError:
                    conflicts[n] += 1
                    continue  # the slot win stands; the record update is retried next round
                wins[n] += 1
                done += 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    slots = mems[1].get_slots("t")
    record = mems[1].get("k")
    tokens = record.text.split()[2:]
    assert record.version == 1 + sum(wins) == 1 + len(tokens) == 1 + len(set(tokens))
    assert {f"w{n}r{r}" for n in range(4) for r in range(rounds)} == set(tokens)
    assert slots.values["n"] == slots.version >= sum(wins)
    assert sum(conflicts) > 0  # the race really happened
    for m in mems:
        m.close()


def force_failures(url: str, sqlstate: str, times: int) -> None:
    """Make the next ``times`` slot writes fail with ``sqlstate`` (a sequence survives the
    rollback that a trigger's error causes; a counter table would not)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SEQUENCE IF EXISTS k5_faults")
        conn.execute("CREATE SEQUENCE k5_faults")
        conn.execute(
            "CREATE OR REPLACE FUNCTION k5_fail() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF nextval('k5_faults') <= {int(times)} THEN "
            f"RAISE EXCEPTION 'forced {sqlstate}' USING ERRCODE = '{sqlstate}'; END IF; "
            "RETURN NULL; END $$"
        )
        conn.execute("DROP TRIGGER IF EXISTS k5_fail ON slot_versions")
        conn.execute(
            "CREATE TRIGGER k5_fail BEFORE UPDATE ON slot_versions "
            "FOR EACH STATEMENT EXECUTE FUNCTION k5_fail()"
        )


def sequence_value(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT last_value FROM k5_faults").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_k5_serialization_failures_are_retried(url: str, sqlstate: str) -> None:
    """Forced 40001 / 40P01: retried transparently (bounded), then BusyError, never Conflict."""
    mem = open_mem(url)
    mem.set_slots("t", {"n": 0})
    force_failures(url, sqlstate, 2)
    slots = mem.set_slots("t", {"n": 1}, expected_version=1)
    assert (slots.version, slots.values) == (2, {"n": 1})
    assert sequence_value(url) == 3  # two rolled-back attempts, then the one that stuck

    force_failures(url, sqlstate, 100)
    with pytest.raises(BusyError) as info:
        mem.set_slots("t", {"n": 2}, expected_version=2)
    assert not isinstance(info.value, StoreUnavailableError)
    assert info.value.details["attempts"] == 5
    assert sequence_value(url) == 5
    assert mem.get_slots("t").version == 2  # nothing of the failed attempts stuck
    mem.close()


def test_k5_namespace_quota_holds_under_concurrent_writers(url: str) -> None:
    """K5 write-skew bait: 6 writers race to fill a 60-record quota, one record per add,
    while forced serialization failures make some attempts roll back and retry. Each add
    counts the namespace under a lock on its generation row, so the quota is met exactly,
    never passed, and every acknowledged add is stored once."""
    quota = 60
    mems = [open_mem(url, namespace_max_records=quota) for _ in range(6)]
    warm = mems[0].add("warm up")[0].id  # the namespace's generation row exists from here
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SEQUENCE IF EXISTS k5_quota_faults")
        conn.execute("CREATE SEQUENCE k5_quota_faults")
        conn.execute(
            "CREATE OR REPLACE FUNCTION k5_quota_fail() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF nextval('k5_quota_faults') % 7 = 0 THEN "
            "RAISE EXCEPTION 'forced 40001' USING ERRCODE = '40001'; END IF; "
            # At the boundary, hold each add between its count and its commit: without the
            # lock, every writer then counts one free place and they all take it.
            f"IF (SELECT count(*) FROM records) >= {quota - 1} THEN PERFORM pg_sleep(0.2); "
            "END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER k5_quota_fail BEFORE INSERT ON records "
            "FOR EACH STATEMENT EXECUTE FUNCTION k5_quota_fail()"
        )
    acked: list[list[str]] = [[] for _ in mems]
    refused = [0] * len(mems)
    busy: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(mems))

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(40):
            text = f"writer {n} record {i}"
            try:
                acked[n].append(mems[n].add(text)[0].id or "")
            except QuotaExceededError:
                refused[n] += 1
                return
            except BusyError:
                # The faults fall on every 7th insert of all writers together, so one add
                # can meet them on every retry: it is refused, not acknowledged, and the
                # writer goes on. Such an add must have left nothing behind.
                busy.append(text)
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(len(mems))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        stored = {r.id for r in mems[0].list(limit=1000).records}
        written = [rid for ids in acked for rid in ids]
        assert len(written) == len(set(written)) == quota - 1  # "warm up" took one place
        assert stored == set(written) | {warm} and mems[0].count() == quota
        stored_texts = {r.text for r in mems[0].list(limit=1000).records}
        assert not stored_texts & set(busy)
        assert refused == [1] * len(mems)  # each writer stopped at its first refusal
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT last_value FROM k5_quota_faults").fetchone()
            assert row is not None and int(row[0]) > quota  # failures were forced and retried
    finally:
        for m in mems:
            m.close()
