"""MaxScore over the derived keyword index gives exactly the page that summing every posting
gives: the same rowids, the same doubles, the same ties, whatever the scope, the limit, the
deleted rows, repeated query words, or an average row length that moved since the bounds
were taken."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from engramdb.stores.sqlite import keyword_prune
from engramdb.stores.sqlite.keyword_index import BODY, KeywordIndex

NS = "ns"
USERS = ["u0", "u1", "u2", "u3"]


@pytest.fixture(scope="module", autouse=True)
def kernels() -> None:
    assert keyword_prune.wait_ready(300), "the pruning kernels did not load (is numba installed?)"


@pytest.fixture
def pruned_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many segment searches the kernels answered (not summed in full)."""
    calls: list[int] = []
    real = keyword_prune.top

    def counting(*args: Any, **kwargs: Any) -> Any:
        got = real(*args, **kwargs)
        if got is not None:
            calls.append(len(got[0]))
        return got

    monkeypatch.setattr(keyword_prune, "top", counting)
    yield calls


def _rows(
    rng: np.random.Generator, first: int, n: int, n_terms: int, long: bool = False
) -> tuple[list[tuple[int, str, str]], list[tuple[str, int, str, int]]]:
    """``n`` rows from ``first``: zipf-distributed terms, so some lists are long and cheap
    (common words) and some short and dear; every third row repeats one of the first rows,
    in another user's scope, so scores tie and the page must break them by rowid."""
    metas, vocab = [], []
    bodies: list[list[int]] = []
    for r in range(first, first + n):
        if bodies and r % 3 == 0:
            terms = bodies[int(rng.integers(min(len(bodies), 50)))]
        else:
            length = int(rng.integers(40, 120) if long else rng.integers(2, 25))
            terms = [int(t) % n_terms for t in rng.zipf(1.3, length)]
        bodies.append(terms)
        metas.append((r, NS, USERS[int(rng.integers(len(USERS)))]))
        for t in set(terms):
            vocab.append((f"t{t}", r, BODY, terms.count(t)))
        vocab.append((f"u{r % 4}", r, "scope", 1))
    return metas, vocab


def _index(rng: np.random.Generator, rows: int, n_terms: int = 300) -> KeywordIndex:
    index = KeywordIndex("test")
    for first in range(1, rows + 1, rows // 3):
        index.add_rows(*_rows(rng, first, min(rows // 3, rows + 1 - first), n_terms))
    return index


def _pages(
    index: KeywordIndex, tids: list[int], user: str | None, limit: int
) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    index.prune_min_postings = None
    full = index.search(tids, NS, user, user is not None, limit)
    index.prune_min_postings = 0
    pruned = index.search(tids, NS, user, user is not None, limit)
    return full, pruned


def _query(rng: np.random.Generator, index: KeywordIndex, n_terms: int = 300) -> list[int]:
    words = [f"t{int(t) % n_terms}" for t in rng.zipf(1.2, int(rng.integers(1, 12)))]
    return [index.term_id.get(w, -1) for w in words]


def test_the_page_is_the_full_sums_over_random_queries(pruned_calls: list[int]) -> None:
    rng = np.random.default_rng(3)
    index = _index(rng, 6000)
    for i in range(400):
        tids = _query(rng, index)
        user = None if i % 2 else USERS[i % len(USERS)]
        limit = [1, 5, 10, 40, 133, 5000][i % 6]
        full, pruned = _pages(index, tids, user, limit)
        assert pruned == full, (tids, user, limit)
    assert len(pruned_calls) > 300, "the kernels answered too few searches to prove anything"
    assert max(pruned_calls) < 5000, "no search was cut below its number of matches"


def test_a_known_last_score_gives_the_same_page_with_fewer_candidates(
    pruned_calls: list[int],
) -> None:
    """``theta0`` (the page's last score, known in advance: the keyword floor of
    ``bench keyword-floor``) lets the cuts apply from the first row. Rows tying the last
    score stay; a value above it, which no caller may pass, shows the cut is real."""
    rng = np.random.default_rng(9)
    index = _index(rng, 6000)
    index.prune_min_postings = 0
    shorter = 0
    for i in range(200):
        tids = _query(rng, index)
        user = None if i % 2 else USERS[i % len(USERS)]
        limit = [1, 10, 40][i % 3]
        page = index.search(tids, NS, user, user is not None, limit)
        if len(page) < limit:
            continue
        last = page[-1][1]
        assert index.search(tids, NS, user, user is not None, limit, theta0=last) == page
        above = index.search(tids, NS, user, user is not None, limit, theta0=last * 1.000001)
        assert above == [hit for hit in page if hit[1] >= last * 1.000001]
        shorter += len(above) < len(page)
    assert shorter > 50, "too few pages were full to prove anything"
    assert pruned_calls


def test_repeated_words_unknown_words_and_empty_lists(pruned_calls: list[int]) -> None:
    rng = np.random.default_rng(4)
    index = _index(rng, 3000)
    common, rare = index.term_id["t1"], index.term_id["t37"]
    for tids in ([common, common], [rare, -1, common, rare], [-1], [common], [rare, rare, rare]):
        for user in (None, "u2"):
            for limit in (1, 10, 100):
                full, pruned = _pages(index, tids, user, limit)
                assert pruned == full, (tids, user, limit)
    assert pruned_calls


def test_deleted_rows_never_come_back(pruned_calls: list[int]) -> None:
    rng = np.random.default_rng(5)
    index = _index(rng, 4000)
    queries = [_query(rng, index) for _ in range(60)]
    index.prune_min_postings = None
    best = {r for q in queries for r, _ in index.search(q, NS, None, False, 20)}
    for rowid in sorted(best)[::2]:
        index.remove(rowid)
    for q in queries:
        full, pruned = _pages(index, q, None, 20)
        assert pruned == full
        assert not {r for r, _ in pruned} & set(sorted(best)[::2])
    assert pruned_calls


def test_bounds_hold_after_the_average_length_grows() -> None:
    """Bounds are taken once per segment at the average length of that time; longer rows
    added later raise the average, which raises every row's share of a term."""
    rng = np.random.default_rng(6)
    index = _index(rng, 3000)
    queries = [_query(rng, index) for _ in range(80)]
    for q in queries:
        _pages(index, q, None, 10)
    before = index.n_tokens / index.n_rows
    assert all(seg.term_bounds is not None for seg in index.segments)
    index.add_rows(*_rows(rng, 10_000, 3000, 300, long=True))
    assert index.n_tokens / index.n_rows > 2 * before
    for i, q in enumerate(queries):
        for user in (None, USERS[i % len(USERS)]):
            full, pruned = _pages(index, q, user, 10)
            assert pruned == full, (q, user)


def test_small_lists_are_summed_in_full(pruned_calls: list[int]) -> None:
    rng = np.random.default_rng(7)
    index = _index(rng, 600)
    index.prune_min_postings = keyword_prune.PRUNE_MIN_POSTINGS
    for _ in range(20):
        index.search(_query(rng, index), NS, None, False, 10)
    assert pruned_calls == []


def test_only_an_index_large_enough_loads_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """numba costs a process ~90 MB: a small index neither loads it at its hand-over nor on a
    search, while a large one gets its segments' bounds ready before any search."""
    index = _index(np.random.default_rng(8), 3000)
    postings = max(len(seg.p_row) for seg in index.segments)
    index.prune_min_postings = 0
    with monkeypatch.context() as mp:
        asked: list[int] = []
        real = keyword_prune.kernels
        mp.setattr(keyword_prune, "kernels", lambda: asked.append(1) or real())
        mp.setattr(keyword_prune, "_kernels", None)  # as in a process yet to load them
        keyword_prune.prepare(index, lambda: False)
        index.search([index.term_id["t1"], index.term_id["t2"]], NS, None, False, 10)
        assert asked == [] and all(seg.term_bounds is None for seg in index.segments)
    monkeypatch.setattr(keyword_prune, "LOAD_MIN_POSTINGS", postings)
    monkeypatch.setattr(keyword_prune, "PRUNE_MIN_POSTINGS", postings)
    keyword_prune.prepare(index, lambda: False)
    big = [seg for seg in index.segments if len(seg.p_row) >= postings]
    small = [seg for seg in index.segments if len(seg.p_row) < postings]
    assert big and all(seg.term_bounds is not None for seg in big)
    assert all(seg.term_bounds is None for seg in small)
