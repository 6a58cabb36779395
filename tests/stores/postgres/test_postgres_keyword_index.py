"""PostgreSQL's process-local keyword index (``stores/postgres/keyword_index.py``): the
same page as ranking in SQL, score for score, and every committed write seen by the next
search, whichever process wrote it and in whatever order transactions committed."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from pg_store_helpers import count_calls, open_memory
from test_postgres_replica import Pair, _add, _memory, _store, pair, urls, wait_caught_up

from engramdb import Memory
from engramdb.engine.keyword import match_expression
from engramdb.query.filters import Bool, Cmp, Live, Node
from engramdb.stores.postgres import keyword_index
from engramdb.stores.postgres.keyword_index import SHARES, KeywordIndexes

pytestmark = pytest.mark.postgres

WORDS = [f"word{i}" for i in range(50)]
USERS = ["ann", "bob", "cyd"]
NOW = 1_900_000_000_000_000  # microseconds; records expiring before it are hidden
__all__ = ["pair", "urls"]  # the replica fixtures, used by the last test


def _text(rng: random.Random, i: int) -> str:
    # Words from the head of the list are common; repeats give lexemes several positions.
    pool = WORDS[: rng.randint(3, len(WORDS))]
    return " ".join(rng.choice(pool) for _ in range(rng.randint(1, 40))) + f" n{i}"


def _node(user: str | None) -> Node:
    live = Live(NOW)
    return live if user is None else Bool("and", (Cmp("str", "user_id", "$eq", user), live))


def _index(store: Any) -> KeywordIndexes:
    ki = store._search.keyword_index
    assert ki is not None
    return ki


def _built(store: Any) -> KeywordIndexes:
    """The store's keyword index, built (a first search starts the build)."""
    ki = _index(store)
    store.keyword_candidates("default", match_expression("word1"), None, 5)
    assert ki.wait_built(60)
    return ki


def _page(store: Any, query: str, node: Node | None, limit: int, indexed: bool | None) -> list[Any]:
    """The keyword side's page, through the index (``True``: and it must answer; ``None``:
    and it must not) or ranked in SQL (``False``)."""
    search = store._search
    ki = search.keyword_index
    calls = [0]
    real = search._indexed

    def counted(*args: Any, **kwargs: Any) -> Any:
        got = real(*args, **kwargs)
        calls[0] += got is not None
        return got

    search._indexed = counted
    if indexed is False:
        search.keyword_index = None
    try:
        hits = store.keyword_candidates("default", match_expression(query), node, limit)
    finally:
        search.keyword_index = ki
        del search._indexed
    assert calls[0] == (1 if indexed else 0), "the index answered" if calls[0] else "it did not"
    return _located(store, hits, node)


def _located(store: Any, hits: list[Any], node: Node | None) -> list[Any]:
    """(chunk id, score, location) of each hit; a hit that came unlocated (the filter is
    the scope and nothing expired) is located as the engine does, with the whole filter."""
    unread = [h.chunk_id for h in hits if h.located is None]
    where = store.locate("default", unread, node) if unread else {}
    out = []
    for h in hits:
        loc = h.located if h.located is not None else where.get(h.chunk_id)
        if loc is not None:
            out.append((h.chunk_id, h.score, loc))
    return out


@pytest.fixture
def store_mem(postgres_url: str) -> Iterator[tuple[Memory, Any]]:
    """900 records over three users, with the keyword index on from the first row."""
    rng = random.Random(5)
    m = open_memory(postgres_url, keyword_index_min_rows=0)
    items = [{"text": _text(rng, i), "user_id": USERS[i % 3]} for i in range(900)]
    m.add(items)
    yield m, m._engine.store
    m.close()


def test_shares_are_what_ts_rank_adds_per_lexeme(postgres_url: str) -> None:
    """Each number of positions adds, over a one-lexeme query, what the server's ts_rank
    returns for it (float4, read as text)."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for n in (1, 2, 3, 7, 40, 254, 255, 256, 300):
            doc = " ".join(["otter"] * n)
            got = conn.execute(
                "SELECT ts_rank(to_tsvector('simple', %s), to_tsquery('simple', 'otter'))",
                (doc,),
            ).fetchone()
            assert got is not None
            assert (
                keyword_index.score_text(np.float32(SHARES[min(n, keyword_index.MAX_POSITIONS)]))
                == got[0]
            ), n


def test_random_queries_give_the_sql_ranking(store_mem: tuple[Memory, Any]) -> None:
    """Same chunks, scores, locations and order (ties by id) as ranking in SQL, for random
    queries per user and over the namespace, small and large pages."""
    _, store = store_mem
    _built(store)
    rng = random.Random(9)
    full = 0
    for _ in range(40):
        query = " ".join(rng.sample(WORDS, rng.randint(1, 10)))
        for user in (None, *USERS):
            for limit in (5, 60):
                node = _node(user)
                indexed = _page(store, query, node, limit, indexed=True)
                assert indexed == _page(store, query, node, limit, indexed=False), query
                full += len(indexed) == limit
    assert full > 200  # most pages are full: the comparisons are of real rankings


def test_writes_are_visible_to_the_next_search(store_mem: tuple[Memory, Any]) -> None:
    """A new, changed or deleted record shows in the very next indexed search."""
    mem, store = store_mem
    _built(store)
    query = "word1 word2 word3 zebra"
    before = _page(store, query, _node(None), 5, indexed=True)
    rec = _add(mem, "zebra zebra word1 word2 word3", user_id="ann")
    top = _page(store, query, _node(None), 5, indexed=True)
    assert top[0][2][0] == rec
    assert top == _page(store, query, _node(None), 5, indexed=False)
    assert all(h[2][0] != rec for h in _page(store, query, _node("bob"), 5, indexed=True))
    mem.update(rec, text="nothing of the query left here")
    gone = _page(store, query, _node(None), 5, indexed=True)
    assert all(h[2][0] != rec for h in gone)
    assert gone == _page(store, query, _node(None), 5, indexed=False)
    mem.update(rec, text="zebra zebra zebra word1 word2 word3")
    assert _page(store, query, _node(None), 5, indexed=True)[0][2][0] == rec
    mem.delete(rec)
    assert _page(store, query, _node(None), 5, indexed=True) == before


def test_another_process_writes_are_seen(store_mem: tuple[Memory, Any], postgres_url: str) -> None:
    """Records written through another Memory (another process's pool) are in the first
    one's next search, and records it deletes are gone from it."""
    _, store = store_mem
    _built(store)
    other = open_memory(postgres_url)
    try:
        rec = _add(other, "quokka quokka word7", user_id="bob")
        page = _page(store, "quokka", _node("bob"), 5, indexed=True)
        assert [h[2][0] for h in page] == [rec]
        other.delete(rec)
        assert _page(store, "quokka", _node("bob"), 5, indexed=True) == []
    finally:
        other.close()


def test_a_transaction_committing_after_a_younger_one_is_not_missed(
    store_mem: tuple[Memory, Any], postgres_url: str
) -> None:
    """Transaction ids are not commit order: a writer that took its id first and commits
    after a younger one whose write a search already applied is still caught up."""
    mem, store = store_mem
    _built(store)
    victim = _add(mem, "plain words only", user_id="cyd")
    with psycopg.connect(postgres_url) as old:
        old.execute("SELECT pg_current_xact_id()")  # the older transaction id
        old.execute(
            "UPDATE chunks SET fts = to_tsvector('engram', 'narwhal narwhal') "
            "WHERE rid = (SELECT rid FROM records WHERE id = %s)",
            (victim,),
        )
        young = _add(mem, "narwhal word3", user_id="cyd")  # commits first
        page = _page(store, "narwhal", _node("cyd"), 5, indexed=True)
        assert [h[2][0] for h in page] == [young]
        old.commit()
    page = _page(store, "narwhal", _node("cyd"), 5, indexed=True)
    assert [h[2][0] for h in page] == [victim, young]
    assert page == _page(store, "narwhal", _node("cyd"), 5, indexed=False)


def test_restore_and_pruned_feed_rows_rebuild_the_index(
    store_mem: tuple[Memory, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore (TRUNCATE) and feed rows pruned before this process read them both make
    the index rebuild: searches rank in SQL meanwhile, and the rebuilt index has it all."""
    mem, store = store_mem
    ki = _built(store)
    query = "word2 word4 word6"  # the records added below repeat them more than any other
    mem.backup(tmp_path / "b.dump")
    saved = _page(store, query, _node(None), 10, indexed=True)
    rec = _add(mem, "word2 word4 word6 " * 50, user_id="ann")
    assert _page(store, query, _node(None), 10, indexed=True)[0][2][0] == rec
    mem.restore(tmp_path / "b.dump")
    first = store.keyword_candidates("default", match_expression(query), _node(None), 10)
    assert _located(store, first, _node(None)) == saved
    assert ki.wait_built(60)
    assert _page(store, query, _node(None), 10, indexed=True) == saved

    # A write this process has not read yet, whose feed row is then pruned.
    rec = _add(mem, "word2 word4 word6 " * 50, user_id="bob")
    monkeypatch.setattr(keyword_index, "FEED_KEEP_S", 0)
    ki._prune()
    hits = store.keyword_candidates("default", match_expression(query), _node(None), 10)
    page = _located(store, hits, _node(None))
    assert page[0][2][0] == rec
    assert not ki.ready or ki.wait_built(60)
    assert ki.wait_built(60)
    assert _page(store, query, _node(None), 10, indexed=True) == page


def test_concurrent_writers_leave_the_index_equal_to_sql(store_mem: tuple[Memory, Any]) -> None:
    """Searches catching up while two threads add, update and delete records end with the
    same pages as SQL's."""
    mem, store = store_mem
    _built(store)
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(40):
                rec = _add(mem, _text(rng, 10_000 * seed + i), user_id=rng.choice(USERS))
                if i % 3 == 0:
                    mem.update(rec, text=_text(rng, 20_000 * seed + i))
                if i % 5 == 0:
                    mem.delete(rec)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    rng = random.Random(4)
    while any(t.is_alive() for t in threads):
        _page(store, " ".join(rng.sample(WORDS, 4)), _node(rng.choice(USERS)), 10, indexed=True)
    for t in threads:
        t.join()
    assert not errors
    for _ in range(20):
        query = " ".join(rng.sample(WORDS, rng.randint(1, 8)))
        for user in (None, *USERS):
            node = _node(user)
            assert _page(store, query, node, 30, indexed=True) == _page(
                store, query, node, 30, indexed=False
            )


def test_segments_merge_and_stay_exact(
    store_mem: tuple[Memory, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catch-ups add segments; past the limit the small ones merge at once and, once they
    hold a quarter of the first one's rows, all of them merge in the background, with
    removals made meanwhile kept out. Pages stay SQL's throughout."""
    mem, store = store_mem
    monkeypatch.setattr(keyword_index, "MERGE_SEGMENTS", 2)
    ki = _built(store)
    index = ki._index
    assert index is not None and len(index.segments) == 1
    rng = random.Random(8)
    for i in range(120):
        added = mem.add(
            [
                {"text": _text(rng, 50_000 + 3 * i + k), "user_id": rng.choice(USERS)}
                for k in (0, 1, 2)
            ]
        )
        mem.delete(str(added[0].id))
        query = " ".join(rng.sample(WORDS, 3))
        node = _node(rng.choice((None, *USERS)))
        assert _page(store, query, node, 20, indexed=True) == _page(
            store, query, node, 20, indexed=False
        )
    assert ki.wait_built(60) and ki._index is index
    assert len(index.segments) <= 3
    assert len(index.segments[0]) > 900  # a whole merge ran: the first segment took new rows
    with store._db.read("test") as c:
        table = {int(r[0]) for r in c.execute("SELECT id FROM chunks").fetchall()}
    held = [seg.ids[seg.alive].tolist() for seg in index.segments]
    assert sorted(i for ids in held for i in ids) == sorted(table)  # each once, none deleted
    for _ in range(20):
        query = " ".join(rng.sample(WORDS, rng.randint(1, 6)))
        for user in (None, *USERS):
            assert _page(store, query, _node(user), 30, indexed=True) == _page(
                store, query, _node(user), 30, indexed=False
            )


def test_filters_beyond_the_scope_are_checked_on_the_ranked_chunks(
    store_mem: tuple[Memory, Any],
) -> None:
    """Expired records never reach the page; a filter most chunks fail falls back to SQL."""
    mem, store = store_mem
    _built(store)
    query = "word1 word2 word3 word4"
    first = _page(store, query, _node(None), 10, indexed=True)
    for _, _, loc in first[:3]:
        mem.update(loc[0], expires_at="2030-01-01T00:00:00Z")  # before NOW
    page = _page(store, query, _node(None), 10, indexed=True)
    assert not {loc[0] for _, _, loc in first[:3]} & {loc[0] for _, _, loc in page}
    assert page == _page(store, query, _node(None), 10, indexed=False)
    tagged = _add(mem, "word1 word2 word3 word4", user_id="ann", tags=["rare"])
    node = Bool("and", (Cmp("tags", "tags", "$contains", "rare"), Live(NOW)))
    hits = store.keyword_candidates("default", match_expression(query), node, 10)
    assert [loc[0] for _, _, loc in _located(store, hits, node)] == [tagged]


def test_small_stores_rank_in_sql(postgres_url: str) -> None:
    """Below ``keyword_index_min_rows`` no index is built."""
    m = open_memory(postgres_url)  # the default minimum, 5,000 chunks
    try:
        m.add([{"text": f"kelp forest {i}", "user_id": "ann"} for i in range(20)])
        store = m._engine.store
        ki = _index(store)
        hits = store.keyword_candidates("default", match_expression("kelp"), None, 5)
        assert len(hits) == 5 and not ki.wait_built(5)
    finally:
        m.close()


def test_a_word_of_two_lexemes_ranks_in_sql(store_mem: tuple[Memory, Any]) -> None:
    """A word the configuration splits in two is a phrase to ts_rank: SQL ranks it."""
    mem, store = store_mem
    _built(store)
    rid = _add(mem, "snake_case word1", user_id="ann")  # 'snake_case': 'snake' <-> 'case'
    page = _page(store, "snake_case", _node("ann"), 5, indexed=None)
    assert [h[2][0] for h in page] == [rid]


def test_without_its_feed_triggers_no_index_is_built(
    store_mem: tuple[Memory, Any], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing feed trigger would let the index miss writes: no process builds it then,
    searches rank in SQL, and doctor names the trigger (repair cannot bring it back)."""
    mem, store = store_mem
    calls = count_calls(monkeypatch, keyword_index, ["build"])
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE chunks DISABLE TRIGGER chunks_keyword_feed_delete")
    ki = _index(store)
    page = _page(store, "word1 word2", _node(None), 10, indexed=None)
    assert not ki.wait_built(60)
    assert page == _page(store, "word1 word2", _node(None), 10, indexed=None)
    assert calls["build"] == 1  # a failed build is not retried by every search
    report = mem.doctor(repair=True)
    assert not report["ok"]
    assert any("chunks_keyword_feed_delete" in p for p in report["problems"])
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE chunks ENABLE TRIGGER chunks_keyword_feed_delete")
    assert mem.doctor()["ok"]
    monkeypatch.setattr(keyword_index, "BUILD_RETRY_S", 0.0)
    assert _built(store).ready


@pytest.mark.slow
def test_searches_routed_to_a_replica_give_the_sql_ranking(
    pair: Pair, urls: tuple[str, str]
) -> None:
    """The index catches up on the primary while the hits' rows are read on the replica:
    the pages equal SQL's on the replica, and a writer sees its own write at once."""
    rng = random.Random(6)
    with (
        _memory(urls, keyword_index_min_rows=0) as writer,
        _memory(urls, keyword_index_min_rows=0) as reader,
    ):
        writer.add([{"text": _text(rng, i), "user_id": USERS[i % 3]} for i in range(600)])
        wait_caught_up(pair)
        store = _store(reader)
        _built(store)
        before = store.stats()["replica"]["replica_reads"]
        for query in ("word1 word2 word9", "word3 word30 word31 word40"):
            for user in (None, "ann"):
                node = _node(user)
                assert _page(store, query, node, 20, indexed=True) == _page(
                    store, query, node, 20, indexed=False
                )
        assert store.stats()["replica"]["replica_reads"] >= before + 8
        _built(_store(writer))
        rid = _add(writer, "word1 word2 word9 " * 20, user_id="ann")
        hits = writer.search("word1 word2 word9", user_id="ann", mode="keyword")
        assert hits[0].record.id == rid


def test_memory_search_matches_sql_in_keyword_and_hybrid_modes(
    store_mem: tuple[Memory, Any],
) -> None:
    """Through the engine (unlocated hits located within reach of the page), keyword and
    hybrid pages are those of the SQL ranking, record for record and score for score."""
    mem, store = store_mem
    ki = _built(store)
    queries = ("word1 word7 word33", "word2 word4 word8 word16 word32", "word49 n17")
    pages = {}
    for on in (True, False):
        store._search.keyword_index = ki if on else None
        pages[on] = [
            [(h.record.id, h.score) for h in mem.search(q, user_id=u, mode=m, top_k=8)]
            for q in queries
            for u in (None, "bob")
            for m in ("keyword", "hybrid")
        ]
    store._search.keyword_index = ki
    assert pages[True] == pages[False]
    assert sum(len(p) == 8 for p in pages[True]) >= 8


def test_a_bulk_change_rebuilds_instead_of_catching_up(
    store_mem: tuple[Memory, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """More new feed rows than a catch-up takes (a quarter of the index here) make the
    index rebuild in the background: SQL answers meanwhile, then the index with them all."""
    mem, store = store_mem
    monkeypatch.setattr(keyword_index, "CATCH_UP_MAX_ROWS", 10)
    ki = _built(store)
    built = ki._index
    rng = random.Random(12)
    mem.add([{"text": _text(rng, 70_000 + i), "user_id": "bob"} for i in range(300)])
    query = "word1 word2 word5"
    during = _page(store, query, _node("bob"), 20, indexed=None)
    assert ki.wait_built(60) and ki._index is not built
    assert _page(store, query, _node("bob"), 20, indexed=True) == during
    small = _add(mem, "word1 word2 word5 " * 40, user_id="bob")  # a few rows: caught up
    assert _page(store, query, _node("bob"), 20, indexed=True)[0][2][0] == small
