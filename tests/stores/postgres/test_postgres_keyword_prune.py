"""PostgreSQL keyword search that skips the chunks that cannot reach the page
(``stores/postgres/keyword_prune.py``): the same page as ranking every match, score for
score, with writes visible at once and the user filter exact."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pg_store_helpers import open_memory
from test_postgres_replica import Pair, _add, _memory, _store, pair, urls, wait_caught_up

from engramdb import Memory
from engramdb.engine.keyword import match_expression
from engramdb.query.filters import Bool, Cmp, Live, Node
from engramdb.stores.postgres.keyword_prune import (
    BOUND,
    Term,
    allowed_out,
    first_out,
    scope_only,
)

pytestmark = pytest.mark.postgres

COMMON = ["river", "garden", "window", "coffee"]  # in most records
MEDIUM = [f"medium{i}" for i in range(12)]
RARE = [f"rare{i}" for i in range(60)]
USERS = ["ann", "bob", "cyd"]
NOW = 1_900_000_000_000_000  # microseconds; records expiring before it are hidden
__all__ = ["pair", "urls"]  # the replica fixtures, used by the last test


def _text(rng: random.Random) -> str:
    words = [w for w in COMMON if rng.random() < 0.7]
    words += rng.sample(MEDIUM, rng.randint(0, 3)) + rng.sample(RARE, rng.randint(0, 2))
    words += [rng.choice(COMMON)] * rng.randint(0, 3)  # repeated words: ranks beyond 1 hit
    rng.shuffle(words)
    return " ".join(words) or "river"


@pytest.fixture
def store_mem(postgres_url: str) -> Iterator[tuple[Memory, Any]]:
    """A store of 900 records over three users, analysed (the pruning needs statistics)."""
    rng = random.Random(7)
    m = open_memory(postgres_url)
    items = [
        {"text": f"{_text(rng)} n{i}", "user_id": USERS[i % 3]} for i in range(900)
    ]  # unique texts: nothing is deduplicated
    m.add(items)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ANALYZE chunks")
    yield m, m._engine.store
    m.close()


def _page(store: Any, query: str, node: Node | None, limit: int, prune: bool) -> list[Any]:
    """The keyword side's page, pruning on or off."""
    store._search.prune_keywords = prune
    hits = store.keyword_candidates("default", match_expression(query), node, limit)
    return [(h.chunk_id, h.score, h.located) for h in hits]


def _pruned_answers(store: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the searches the pruned ranking answered (the real method still runs)."""
    answered = [0]
    real = store._search._pruned

    def counted(*args: Any, **kwargs: Any) -> Any:
        got = real(*args, **kwargs)
        answered[0] += got is not None
        return got

    monkeypatch.setattr(store._search, "_pruned", counted)
    return answered


def _node(user: str | None) -> Node:
    live = Live(NOW)
    return live if user is None else Bool("and", (Cmp("str", "user_id", "$eq", user), live))


def test_allowed_out_keeps_every_left_out_chunk_below_the_page() -> None:
    # n = 10 lexemes: each adds below 0.01; a page ending at 0.035 lets 3 be left out.
    assert allowed_out(10, 0.035) == 3
    assert allowed_out(10, 0.03) == 2  # 3 * 0.01 is not strictly below 0.03
    assert allowed_out(10, 0.0) == 0
    assert allowed_out(4, 1.0) == 3  # never every lexeme
    assert allowed_out(1, 1.0) == 0
    for n in range(1, 20):
        for kth in (0.001, 0.02, 0.05, 0.0999):
            m = allowed_out(n, kth)
            assert m * BOUND / n < kth or m == 0


def test_first_out_leaves_out_common_lexemes_while_the_rest_fill_the_page() -> None:
    terms = [Term("a", "a", 0.6), Term("b", "b", 0.5), Term("c", "c", 0.1), Term("d", "d", 0.0)]
    # 10,000 rows: without a and b, c and d are expected in 1,000 rows.
    assert first_out(terms, 10_000, 100, 0.5, 2.0) == {"a", "b"}
    assert first_out(terms, 10_000, 100, 0.25, 2.0) == {"a"}
    # 1,000 rows: c alone is expected in 100 rows, fewer than twice the page.
    assert first_out(terms, 1_000, 100, 0.5, 2.0) == {"a"}
    assert first_out(terms, 100, 100, 0.5, 2.0) == set()
    assert first_out(terms, 100, 100, 0.5, 0.0) == {"a", "b"}  # no estimate asked


def test_scope_only_accepts_users_and_expiry_alone() -> None:
    assert scope_only(None)
    assert scope_only(_node("ann"))
    assert not scope_only(Bool("and", (Cmp("tags", "tags", "$contains", "x"), Live(NOW))))
    assert not scope_only(Bool("or", (Cmp("str", "user_id", "$eq", "a"), Live(NOW))))


@pytest.mark.parametrize("user_min_rows", [10**9, 100])
def test_random_queries_give_the_full_ranking(
    store_mem: tuple[Memory, Any], monkeypatch: pytest.MonkeyPatch, user_min_rows: int
) -> None:
    """Same chunks, scores and order (ties by id) as ranking every match, for random
    queries of common, medium and rare words, per user and over the namespace; a user's
    scope is pruned too once it is larger than ``prune_user_min_rows`` (300 chunks each
    here against 100), and never below it."""
    _, store = store_mem
    store._search.prune_user_min_rows = user_min_rows
    answered = _pruned_answers(store, monkeypatch)
    rng = random.Random(11)
    per_scope = dict.fromkeys((None, *USERS), 0)
    cases = 0
    for _ in range(40):
        words = rng.sample(COMMON, rng.randint(1, 4)) + rng.sample(MEDIUM, rng.randint(0, 4))
        words += rng.sample(RARE, rng.randint(0, 3))
        query = " ".join(words)
        for user in (None, *USERS):
            for limit in (5, 40):
                node = _node(user)
                full = _page(store, query, node, limit, prune=False)
                before = answered[0]
                assert _page(store, query, node, limit, prune=True) == full, (query, user)
                per_scope[user] += answered[0] - before
                cases += 1
    # The pruned ranking answered many of the namespace's searches itself, and of each
    # user's exactly when their scope is above the minimum.
    assert per_scope[None] > cases // 64
    for user in USERS:
        assert (per_scope[user] > cases // 64) == (user_min_rows < 300), per_scope


def test_writes_are_visible_to_the_next_search(
    store_mem: tuple[Memory, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new, changed or deleted record shows in the very next pruned search (no derived
    data: the statistics only choose the words, and a search reads the chunks)."""
    mem, store = store_mem
    answered = _pruned_answers(store, monkeypatch)
    query = "river garden window coffee medium1 medium2"
    before = _page(store, query, _node(None), 5, prune=True)
    assert answered[0] == 1
    text = "river river garden garden window window coffee coffee medium1 medium2 newcomer"
    rec = mem.get(_add(mem, text, user_id="ann"))
    top = _page(store, query, _node(None), 5, prune=True)
    assert answered[0] == 2
    assert top[0][2][0] == rec.id and top != before
    assert top == _page(store, query, _node(None), 5, prune=False)
    assert all(h[2][0] != rec.id for h in _page(store, query, _node("bob"), 5, prune=True))
    mem.update(rec.id, text="nothing of the query left here")
    gone = _page(store, query, _node(None), 5, prune=True)
    assert all(h[2][0] != rec.id for h in gone)
    assert gone == _page(store, query, _node(None), 5, prune=False)
    mem.update(rec.id, text=text + " again")
    assert _page(store, query, _node(None), 5, prune=True)[0][2][0] == rec.id
    mem.delete(rec.id)
    assert _page(store, query, _node(None), 5, prune=True) == before
    assert answered[0] == 5


def test_user_filter_stays_exact(store_mem: tuple[Memory, Any]) -> None:
    mem, store = store_mem
    query = "river garden coffee medium3 medium4 medium5"
    for user in USERS:
        page = _page(store, query, _node(user), 40, prune=True)
        assert len(page) == 40
        ids = [h[2][0] for h in page]
        assert all(mem.get(i).user_id == user for i in ids)
    assert _page(store, query, _node("nobody"), 40, prune=True) == []


def test_expired_records_on_the_page_fall_back_to_the_probe(
    store_mem: tuple[Memory, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records hidden by the expiry check leave the pruned page short: the search then
    ranks as before, and the answer is still the full ranking's."""
    mem, store = store_mem
    query = "river garden window coffee medium6 medium7"
    first = _page(store, query, _node(None), 10, prune=False)
    for _, _, loc in first[:3]:
        mem.update(loc[0], expires_at="2030-01-01T00:00:00Z")  # before NOW
    answered = _pruned_answers(store, monkeypatch)
    page = _page(store, query, _node(None), 10, prune=True)
    assert answered[0] == 0
    assert page == _page(store, query, _node(None), 10, prune=False)
    assert {h[2][0] for h in page}.isdisjoint({h[2][0] for h in first[:3]})


def test_search_through_memory_matches_the_full_ranking(store_mem: tuple[Memory, Any]) -> None:
    mem, store = store_mem
    pages = {}
    for prune in (True, False):
        store._search.prune_keywords = prune
        pages[prune] = [
            [(h.record.id, h.score) for h in mem.search(q, user_id=u, mode="keyword", top_k=8)]
            for q in ("river garden medium1 rare3", "coffee window medium9")
            for u in (None, "bob")
        ]
    assert pages[True] == pages[False]
    assert all(len(p) == 8 for p in pages[True])


@pytest.mark.slow
def test_a_replica_gives_the_full_ranking(
    pair: Pair, urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searches routed to a streaming replica read its chunks and its (replayed)
    statistics: the pruned page is still the full ranking's, and a write shows at once."""
    rng = random.Random(3)
    with _memory(urls) as writer, _memory(urls) as reader:
        writer.add([{"text": f"{_text(rng)} n{i}", "user_id": USERS[i % 3]} for i in range(900)])
        with psycopg.connect(urls[0], autocommit=True) as conn:
            conn.execute("ANALYZE chunks")
        wait_caught_up(pair)
        store = _store(reader)
        answered = _pruned_answers(store, monkeypatch)
        before = store.stats()["replica"]["replica_reads"]
        for query in ("river garden medium1 medium2", "coffee window garden medium5 rare1"):
            for user in (None, "ann"):
                full = _page(store, query, _node(user), 20, prune=False)
                assert _page(store, query, _node(user), 20, prune=True) == full
        assert answered[0] >= 2
        assert store.stats()["replica"]["replica_reads"] >= before + 8
        # The writer reads its own write (the primary serves until the replica replays it).
        text = "river river garden garden coffee coffee window window medium1 medium2"
        rid = _add(writer, text, user_id="ann")
        hits = writer.search("river garden medium1 medium2", user_id="ann", mode="keyword")
        assert hits[0].record.id == rid
