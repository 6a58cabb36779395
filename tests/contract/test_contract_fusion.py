"""Contract: hybrid search ranks as the convex fusion of every candidate, though the engine
locates only the candidates that can reach the page (ties broken by record id)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from contract_helpers import CORPUS

from engramdb import Memory
from engramdb.embedders import HashEmbedder

QUERIES = ["cat garden", "monday morning bakery", "fresh fish weekend", "rain over the garden"]


def add_twins(mem: Memory) -> list[str]:
    """Each text held by two users: every score ties with its twin's. The "b" records are
    written first, so row order is the reverse of record id order."""
    for user, prefix in (("u1", "b"), ("u2", "a")):
        mem.add(
            [{"id": f"{prefix}{i:02d}", "text": t, "user_id": user} for i, t in enumerate(CORPUS)]
        )
    return sorted(f"{p}{i:02d}" for p in "ab" for i in range(len(CORPUS)))


@pytest.fixture
def twins(mem: Memory) -> list[str]:
    return add_twins(mem)


def expected(mem: Memory, query: str, hidden: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The whole hybrid ranking, computed from each side's exact scores over every record
    (the corpus is smaller than the candidate pool): the vector side min-max scaled, the
    keyword side scaled by its best score, fused convexly, ties by record id, and each
    side's rank by score then record id."""
    n = 2 * len(CORPUS)
    vec = {h.record.id: h.parts.vector for h in mem.search(query, mode="vector", top_k=n).hits}
    kw = {h.record.id: h.parts.keyword for h in mem.search(query, mode="keyword", top_k=n).hits}
    vec = {r: s for r, s in vec.items() if r not in hidden}
    kw = {r: s for r, s in kw.items() if r not in hidden}

    def scaled(side: dict[str, Any]) -> dict[str, float]:
        lo, hi = min(side.values()), max(side.values())
        return {r: 1.0 if hi == lo else (s - lo) / (hi - lo) for r, s in side.items()}

    def by_best(side: dict[str, Any]) -> dict[str, float]:
        hi = max(side.values())
        return {r: s / hi for r, s in side.items()}

    w = mem.settings.hybrid_vector_weight
    nv, nk = scaled(vec), by_best(kw)
    fused = {r: w * nv[r] + (1 - w) * nk.get(r, 0.0) for r in vec}
    vrank = {r: i + 1 for i, r in enumerate(sorted(vec, key=lambda r: (-vec[r], r)))}
    krank = {r: i + 1 for i, r in enumerate(sorted(kw, key=lambda r: (-kw[r], r)))}
    order = sorted(fused, key=lambda r: (-fused[r], r))
    return [
        {
            "id": r,
            "fused": fused[r],
            "vector_rank": vrank[r],
            "keyword_rank": krank.get(r),
            "scores": (vec[r], kw.get(r)),
        }
        for r in order
    ]


def got(mem: Memory, query: str, **kwargs: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": h.record.id,
            "fused": h.score,
            "vector_rank": h.parts.vector_rank,
            "keyword_rank": h.parts.keyword_rank,
        }
        for h in mem.search(query, mode="hybrid", **kwargs).hits
    ]


def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert [x["id"] for x in a] == [x["id"] for x in b]
    for x, y in zip(a, b, strict=True):
        assert x["fused"] == pytest.approx(y["fused"], abs=1e-9)
        assert (x["vector_rank"], x["keyword_rank"]) == (y["vector_rank"], y["keyword_rank"])


@pytest.mark.parametrize("query", QUERIES)
def test_every_page_is_the_fusion_of_every_candidate(
    mem: Memory, twins: list[str], query: str
) -> None:
    whole = expected(mem, query)
    assert len(whole) == len(twins)
    same(got(mem, query, top_k=len(twins)), whole)
    # Pages of three cut through tied twins: the one with the smaller record id comes first,
    # and its ranks on each side count its twin after it.
    for offset in range(0, len(twins), 3):
        same(got(mem, query, top_k=3, offset=offset), whole[offset : offset + 3])


@pytest.fixture
def sqlite_twins(tmp_path: Path) -> Iterator[Memory]:
    """The twins in a SQLite store, whose vector and keyword-index candidates come
    unlocated (PostgreSQL's statements locate their candidates as they find them)."""
    m = Memory(f"sqlite:///{tmp_path / 'twins.db'}", embedder=HashEmbedder(384))
    add_twins(m)
    yield m
    m.close()


def test_a_candidate_that_cannot_be_located_is_ranked_as_never_found(
    sqlite_twins: Memory,
) -> None:
    """A record deleted (or no longer passing the filter) between reading the candidates and
    locating them leaves the ranking; the rest is fused and scaled without it."""
    mem = sqlite_twins
    query = QUERIES[0]
    whole = expected(mem, query)
    # The best record found by the vector side alone: only the read after fusion
    # (``locate_whole``) says where it is.
    gone = next(h["id"] for h in whole if h["keyword_rank"] is None)
    store = mem.engine.store
    real = store.locate_whole

    def whole_hiding(namespace: str, chunk_ids: list[int], node: Any) -> dict[int, Any]:
        found = real(namespace, chunk_ids, node)
        return {c: w for c, w in found.items() if w.located[0] != gone}

    store.locate_whole = whole_hiding  # type: ignore[method-assign]
    try:
        page = got(mem, query, top_k=len(whole))
    finally:
        del store.locate_whole
    assert gone not in [h["id"] for h in page]
    same(page, expected(mem, query, hidden=frozenset({gone})))


def test_only_the_candidates_that_can_reach_the_page_are_read(sqlite_twins: Memory) -> None:
    mem = sqlite_twins
    query = QUERIES[3]  # its records found by the vector side alone score apart
    whole = expected(mem, query)
    store = mem.engine.store
    real = store.locate_whole
    asked: list[str] = []

    def recording(namespace: str, chunk_ids: list[int], node: Any) -> dict[int, Any]:
        found = real(namespace, chunk_ids, node)
        asked.extend(w.located[0] for w in found.values())
        return found

    # A page that takes some records the vector side alone found, but not all of them.
    vector_only = [h["id"] for h in whole if h["keyword_rank"] is None]
    first = next(i for i, h in enumerate(whole) if h["keyword_rank"] is None)
    top_k = first + 2
    assert len(vector_only) > 4 and top_k < len(whole) - 2
    store.locate_whole = recording  # type: ignore[method-assign]
    try:
        page = got(mem, query, top_k=top_k)
    finally:
        del store.locate_whole
    same(page, whole[:top_k])
    # Located: the page, and the candidates tied with one of its records on a side (a rank
    # breaks ties by record id); not the other records the vector side alone found.
    on_page = whole[:top_k]
    vec_ties = {h["scores"][0] for h in on_page}
    kw_ties = {h["scores"][1] for h in on_page} - {None}
    allowed = {h["id"] for h in whole if h["scores"][0] in vec_ties or h["scores"][1] in kw_ties}
    assert asked and set(asked) <= allowed
    assert len(set(asked) & set(vector_only)) < len(vector_only)
