"""The derived keyword index ranks exactly as FTS5's bm25 on a real store file, and nothing
written is invisible to it: new rows, deletes and in-place re-indexing (thread context)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engramdb import HashEmbedder, Memory, Settings
from engramdb.engine.keyword import match_expression
from engramdb.query.filters import Bool, Cmp, Live, Node
from engramdb.stores.prepared import ChunkHit
from engramdb.stores.sqlite import keyword_prune
from engramdb.stores.sqlite.keyword_index import SIDE_FORMAT, MergePlan, merge, save
from engramdb.stores.sqlite.keyword_search import KeywordSearch, match_words

WORDS = [
    "run",
    "running",
    "runs",
    "ran",
    "runner",
    "café",
    "cafe",
    "naïve",
    "résumé",
    "bakery",
    "gym",
    "office",
    "airport",
    "station",
    "library",
    "beach",
    "park",
    "clinic",
    "market",
    "museum",
    "garage",
    "school",
    "stadium",
    "hotel",
    "harbour",
    "cinema",
    "bicycle",
    "lasagna",
    "report",
    "passport",
    "tickets",
    "camera",
    "contract",
    "starter",
    "boots",
    "cake",
    "offsite",
    "piano",
    "lessons",
    "flight",
    "Lisbon",
    "dentist",
    "appointment",
    "hose",
    "laptop",
    "playlist",
    "insurance",
    "yoga",
    "tax",
    "chess",
    "keys",
    "puppy",
    "talk",
    "knitting",
    "budget",
    "shoes",
    "deadline",
    "sofa",
    "honey",
    "Spanish",
    "bill",
    "album",
    "surfboard",
    "2023",
    "May",
    "8",
    "42",
    "3rd",
    "the",
    "and",
    "of",
    "to",
    "a",
    "in",
    "is",
    "it",
    "you",
    "that",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "I",
    "his",
    "they",
]
USERS = ["alice", "bob", "carla", "dmitri", "elena"]


def _text(rng: np.random.Generator, n: int) -> str:
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), n))


def _query(rng: np.random.Generator) -> str:
    return _text(rng, int(rng.integers(1, 9)))


@pytest.fixture
def mem(tmp_path: Path) -> Iterator[Memory]:
    m = Memory(f"sqlite:///{tmp_path / 'kw.db'}", embedder=HashEmbedder(32))
    rng = np.random.default_rng(11)
    for b in range(6):
        m.add(
            [
                {"text": _text(rng, int(rng.integers(3, 30))), "user_id": USERS[i % 5]}
                for i in range(b * 100, b * 100 + 100)
            ]
        )
    yield m
    m.close()


def _derived(m: Memory, prune: bool = False) -> KeywordSearch:
    """A second keyword reader over the same store, using the derived index from row 0;
    with ``prune``, every search of it goes through MaxScore (keyword_prune), however
    few its postings."""
    ks = KeywordSearch(m._engine.store._db, min_rows=0)  # type: ignore[attr-defined]
    ks.keyword_candidates(m.namespace, '"cafe"', None, 10)  # kicks the builder
    _wait(ks)
    if prune:
        assert keyword_prune.wait_ready(300), "the pruning kernels did not load"
        assert ks._index is not None
        ks._index.prune_min_postings = 0
    return ks


def _pruned_throughout(ks: KeywordSearch, prune: bool) -> None:
    """The index that answered is still the one set to prune (no rebuild replaced it)."""
    assert ks._index is not None
    assert ks._index.prune_min_postings == (0 if prune else keyword_prune.PRUNE_MIN_POSTINGS)


def _wait(ks: KeywordSearch) -> None:
    deadline = time.monotonic() + 60
    while ks._index is None:
        assert time.monotonic() < deadline, "the keyword index was never built"
        time.sleep(0.02)


def _record_ids(m: Memory, hits: list[ChunkHit]) -> list[str]:
    where = m._engine.store.locate(m.namespace, [h.chunk_id for h in hits], None)  # type: ignore[attr-defined]
    return [where[h.chunk_id][0] for h in hits]


def _as_located(
    m: Memory, hits: list[ChunkHit], node: Node | None
) -> list[tuple[int, float, tuple[str, int, int, int]]]:
    """Each hit as (chunk, score, where its record is), locating the hits that came
    without it as the engine does (under the same filter), which must find every one."""
    store = m._engine.store  # type: ignore[attr-defined]
    missing = [h.chunk_id for h in hits if h.located is None]
    where = store.locate(m.namespace, missing, node) if missing else {}
    assert set(where) == set(missing), "a hit left to locate does not pass the filter"
    return [(h.chunk_id, h.score, h.located or where[h.chunk_id]) for h in hits]


def _both(
    m: Memory, ks: KeywordSearch, query: str, node: Node | None, limit: int, fallback: bool = False
) -> None:
    match = match_expression(query)
    store = m._engine.store  # type: ignore[attr-defined]
    want = _as_located(m, store.keyword_candidates(m.namespace, match, node, limit), node)
    before = ks.answered
    got = _as_located(m, ks.keyword_candidates(m.namespace, match, node, limit), node)
    assert got == want, query
    if match_words(match) is not None and "_" not in query and not fallback:
        assert ks.answered == before + 1, "the derived index did not answer"


@pytest.mark.parametrize("prune", [False, True], ids=["summed", "pruned"])
def test_same_ranking_as_fts5_over_random_queries(mem: Memory, prune: bool) -> None:
    ks = _derived(mem, prune)
    rng = np.random.default_rng(5)
    for i in range(300):
        q = _query(rng)
        user = USERS[i % 5]
        _both(mem, ks, q, None, 10)
        _both(mem, ks, q, Cmp("str", "user_id", "$eq", user), 10)
        _both(mem, ks, q, Cmp("str", "user_id", "$eq", user), 100)
    _pruned_throughout(ks, prune)
    ks.stop()


@pytest.mark.parametrize("prune", [False, True], ids=["summed", "pruned"])
def test_writes_are_visible_at_once(mem: Memory, prune: bool) -> None:
    ks = _derived(mem, prune)
    rng = np.random.default_rng(9)
    queries = [_query(rng) for _ in range(40)]
    new = mem.add("zanzibar quokka running café", user_id="bob")[0]
    hits = ks.keyword_candidates(
        mem.namespace, match_expression("quokka"), Cmp("str", "user_id", "$eq", "bob"), 10
    )
    assert _record_ids(mem, hits) == [new.id]
    # Deletes, and thread messages whose context re-indexes their neighbours in place.
    doomed = mem.search("bakery museum", top_k=20, mode="keyword").hits
    for h in doomed:
        mem.delete(h.record.id)
    for j in range(12):
        mem.add_messages("t1", [{"role": "user", "content": _text(rng, 8)}], user_id="alice")
        if j % 3 == 0:
            for q in queries[:10]:
                _both(mem, ks, q, None, 10)
    store = mem._engine.store  # type: ignore[attr-defined]
    assert store._db.query("t", "SELECT count(*) FROM keyword_log", ())[0][0] > 0
    for q in queries:
        _both(mem, ks, q, None, 10)
        _both(mem, ks, q, Cmp("str", "user_id", "$eq", "alice"), 20)
    gone = ks.keyword_candidates(mem.namespace, match_expression("bakery museum"), None, 50)
    dead = {h.record.id for h in doomed}
    assert gone and not set(_record_ids(mem, gone)) & dead
    _pruned_throughout(ks, prune)
    ks.stop()


def _merged(ks: KeywordSearch) -> None:
    """Wait for the builder's thread to merge what catch-ups left."""
    deadline = time.monotonic() + 120
    while ks._index is None or ks._index.merge_due:
        assert time.monotonic() < deadline, "the segments were never merged"
        time.sleep(0.02)


def test_many_small_writes_merge_segments_off_the_search_path(mem: Memory) -> None:
    """Each catch-up adds a segment and never merges: a merge rewrites up to every
    posting (seconds at a million rows), so the builder's thread does it."""
    ks = _derived(mem)
    ks._builder.stopped = True  # no merges: what a search does alone
    rng = np.random.default_rng(3)
    for i in range(30):
        mem.add(_text(rng, 10), user_id=USERS[i % 5])
        _both(mem, ks, _query(rng), None, 10)
    index = ks._index
    assert index is not None and len(index.segments) == 31 and index.merge_due
    ks._builder.stopped = False
    ks._builder.kick()
    _merged(ks)
    assert ks._index is index and len(index.segments) <= 9
    for _ in range(20):
        q = _query(rng)
        _both(mem, ks, q, None, 10)
        _both(mem, ks, q, Cmp("str", "user_id", "$eq", "carla"), 20)
    ks.stop()


def test_rows_removed_or_rewritten_during_a_merge_stay_out_of_it(mem: Memory) -> None:
    """A merge reads the segments without the lock while searches catch up: a row deleted,
    or re-indexed in place (a thread's context), meanwhile is masked in the merged segment,
    and rows added meanwhile stay in their own segments."""
    ks = _derived(mem)
    ks._builder.stopped = True  # the merge's steps are taken by hand below
    rng = np.random.default_rng(8)
    turns = [
        mem.add_messages("t1", [{"role": "user", "content": _text(rng, 8)}], user_id="bob")
        for _ in range(4)
    ]
    for i in range(10):
        mem.add(f"quokka {_text(rng, 6)}", user_id=USERS[i % 5])
        _both(mem, ks, "quokka bakery", None, 10)
    index = ks._index
    assert index is not None and index.merge_due
    with ks._lock:
        plan = index.plan_merge()
    # The small segments (the base of 600 rows is four times theirs and stays).
    base = index.segments[0]
    assert plan is not None and [id(g) for g in plan.group] == [id(g) for g in index.segments[1:]]
    merged = plan.merge()
    # Meanwhile: a delete, a thread turn that re-indexes its neighbours, a new record.
    quokkas = mem.search("quokka", top_k=20, mode="keyword").hits
    mem.delete(quokkas[0].record.id)
    mem.add_messages("t1", [{"role": "user", "content": "quokka zanzibar"}], user_id="bob")
    late = mem.add("quokka zanzibar latecomer", user_id="alice")[0]
    _both(mem, ks, "quokka zanzibar", None, 20)  # the catch-up journals what it removed
    with ks._lock:
        index.finish_merge(plan, merged)
    assert index.segments[0] is base and index.segments[1] is merged[0]
    assert len(index.segments) < 1 + len(plan.group)
    assert not index.merge_due
    for q in ("quokka", "quokka zanzibar", "zanzibar latecomer", _text(rng, 5), _text(rng, 3)):
        _both(mem, ks, q, None, 20)
        _both(mem, ks, q, Cmp("str", "user_id", "$eq", "bob"), 20)
    found = _record_ids(mem, ks.keyword_candidates(mem.namespace, '"latecomer"', None, 5))
    assert found == [late.id]
    # A row of the merged segment deleted after the merge leaves it too.
    mem.delete(quokkas[1].record.id)
    _both(mem, ks, "quokka", None, 20)
    assert quokkas[1].record.id not in _record_ids(
        mem, ks.keyword_candidates(mem.namespace, '"quokka"', None, 20)
    )
    assert turns  # the thread's first turns were in the merged segments
    ks.stop()


def test_only_a_namespace_wide_search_computes_every_rows_length_term(mem: Memory) -> None:
    """bm25's per-row length term changes with every write (the average length moves);
    a user's search computes its own few postings' terms, never the whole segment's."""
    ks = _derived(mem)
    mem.add("a fresh note about the harbour", user_id="bob")
    user = Cmp("str", "user_id", "$eq", "carla")
    _both(mem, ks, "bakery museum park", user, 10)
    index = ks._index
    assert index is not None
    avgdl = index.n_tokens / index.n_rows
    assert all(s._norm_of is None or s._norm_of[0] != avgdl for s in index.segments)
    _both(mem, ks, "bakery museum park", None, 10)
    assert any(s._norm_of is not None and s._norm_of[0] == avgdl for s in index.segments)
    ks.stop()


def test_what_it_does_not_cover_falls_back_to_fts5(mem: Memory) -> None:
    ks = _derived(mem)
    # A word FTS5 splits into a phrase, a thread scope, and a filter narrower than the probe.
    _both(mem, ks, "snake_case bakery", None, 10)
    mem.add([f"bakery museum note {i}" for i in range(30)], user_id="bob", tags=["rare"])
    rare = Cmp("tags", "tags", "$contains", ("rare",))
    for q in ("bakery", "museum park", "note cafe"):
        _both(mem, ks, q, rare, 10, fallback=True)
        _both(mem, ks, q, Bool("and", (Cmp("str", "user_id", "$eq", "bob"), rare)), 5, True)
    thread = Cmp("str", "thread_id", "$eq", "t9")
    mem.add("bakery in a thread", user_id="alice", thread_id="t9")
    assert ks.keyword_candidates(mem.namespace, match_expression("bakery"), thread, 10)
    ks.stop()


def test_hits_are_left_to_locate_only_when_every_row_of_the_scope_passes(mem: Memory) -> None:
    """Without a clause beyond the user scope and the expiry check, and with nothing
    expired, the derived index's best are the answer and the engine locates them; once a
    record has expired, or the filter asks more, the index's hits are checked first, so
    the answer still holds ``limit`` passing hits."""
    ks = _derived(mem)
    soon = datetime.now(UTC) + timedelta(seconds=30)
    mem.add(
        [
            {"text": f"bakery museum bakery {i}", "user_id": "bob", "expires_at": soon}
            for i in range(25)
        ]
    )
    later = int((soon + timedelta(seconds=1)).timestamp() * 1_000_000)
    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    bob = Cmp("str", "user_id", "$eq", "bob")
    match = match_expression("bakery museum")
    for node, unchecked in (
        (None, True),
        (Live(now), True),
        (Bool("and", (bob, Live(now))), True),
        (Live(later), False),
        (Bool("and", (bob, Live(later))), False),
        (Bool("and", (bob, Cmp("str", "agent_id", "$eq", ""))), False),
    ):
        hits = ks.keyword_candidates(mem.namespace, match, node, 10)
        assert len(hits) == 10
        assert all((h.located is None) == unchecked for h in hits), node
        _both(mem, ks, "bakery museum", node, 10)
    # "No user" is no scope token: the index cannot hold just those rows, FTS5 answers.
    _both(mem, ks, "bakery museum", Cmp("str", "user_id", "$eq", ""), 10, fallback=True)
    # Past the expiry, none of the expired records is a hit; the answer is still full.
    got = _as_located(mem, ks.keyword_candidates(mem.namespace, match, Live(later), 10), None)
    assert len(got) == 10
    expired = {r.id for r in mem.list(user_id="bob", limit=100).records if r.expires_at}
    assert not {where[0] for _, _, where in got} & expired
    ks.stop()


def test_match_words_reads_only_its_own_shape() -> None:
    assert match_words('"a" OR "b""c"') == ["a", 'b"c']
    assert match_words('"a" AND "b"') is None
    assert match_words("a") is None
    assert match_words("") is None


def test_saved_on_close_and_caught_up_after_writes_by_another_opener(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'side.db'}"
    rng = np.random.default_rng(21)
    on = Settings(url=url, keyword_index_min_rows=0)
    m = Memory(settings=on, embedder=HashEmbedder(32))
    m.add([{"text": _text(rng, 12), "user_id": USERS[i % 5]} for i in range(300)])
    ks = m._engine.store._keywords  # type: ignore[attr-defined]
    ks.keyword_candidates(m.namespace, '"cafe"', None, 10)
    _wait(ks)
    m.close()
    side = tmp_path / "side.db.kindex"
    assert side.exists()
    # Writes while no opener keeps the derived index: it must catch up from the logs.
    off = Memory(
        settings=Settings(url=url, keyword_index_min_rows=10**9), embedder=HashEmbedder(32)
    )
    off.add([{"text": _text(rng, 12), "user_id": "bob"} for _ in range(40)])
    for h in off.search("bakery museum cafe", top_k=15, mode="keyword").hits:
        off.delete(h.record.id)
    off.add_messages("t2", [{"role": "user", "content": _text(rng, 9)} for _ in range(6)])
    off.close()
    m = Memory(settings=on, embedder=HashEmbedder(32))
    ks = m._engine.store._keywords  # type: ignore[attr-defined]
    reference = KeywordSearch(m._engine.store._db, min_rows=10**9)  # type: ignore[attr-defined]
    ks.keyword_candidates(m.namespace, '"cafe"', None, 10)
    _wait(ks)
    assert ks._sidecar_tried and ks._index.max_rowid <= 300 + 10  # loaded, not rebuilt
    for i in range(60):
        q = match_expression(_query(rng))
        for node in (None, Cmp("str", "user_id", "$eq", USERS[i % 5])):
            want = [
                (h.chunk_id, h.score)
                for h in reference.keyword_candidates(m.namespace, q, node, 10)
            ]
            before = ks.answered
            got = [(h.chunk_id, h.score) for h in ks.keyword_candidates(m.namespace, q, node, 10)]
            assert got == want
            assert ks.answered == before + 1
    m.close()


def _read_without_rebuild(mem: Memory, monkeypatch: pytest.MonkeyPatch) -> KeywordSearch:
    """A fresh derived index of ``mem`` that must read the saved file (a rebuild fails)."""
    from engramdb.stores.sqlite import keyword_search

    def no_build(*_: Any) -> None:
        raise AssertionError("the saved index was rebuilt instead of read")

    monkeypatch.setattr(keyword_search, "build", no_build)
    return _derived(mem)


def _ranks_as_fts5(mem: Memory, ks: KeywordSearch, seed: int) -> None:
    """100 random queries rank as FTS5 ranks them, namespace-wide and in a user's scope."""
    rng = np.random.default_rng(seed)
    for i in range(100):
        q = _query(rng)
        _both(mem, ks, q, None, 10)
        _both(mem, ks, q, Cmp("str", "user_id", "$eq", USERS[i % 5]), 20)
    ks.stop()


def _save_first_format(index: Any, path: Path) -> None:
    """Write ``index`` as format 1 wrote it: rows in rowid order, postings sorted by
    (term, scope key, row), each with its scope key."""
    save(index, path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    seg = merge(index.segments, len(index.term_id))
    order = np.argsort(seg.rowids)
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))
    keys = seg.keys[order]
    tid = np.repeat(np.arange(len(seg.starts) - 1), np.diff(seg.starts))
    p_row = pos[seg.p_row]
    po = np.lexsort((p_row, keys[p_row], tid))
    f_row = pos[np.repeat(np.arange(len(seg)), np.diff(seg.fwd_starts))]
    fo = np.argsort(f_row, kind="stable")
    arrays.update(
        seg_rowids=seg.rowids[order],
        seg_keys=keys,
        seg_doclen=seg.doclen[order],
        seg_p_row=p_row[po],
        seg_p_key=keys[p_row[po]],
        seg_p_tf=seg.p_tf[po],
        seg_fwd_tids=seg.fwd_tids[fo],
        seg_fwd_starts=np.searchsorted(f_row[fo], np.arange(len(seg) + 1)),
    )
    meta = json.loads(bytes(arrays["meta"]).decode())
    assert meta["format"] == SIDE_FORMAT
    meta["format"] = 1
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_an_index_saved_in_the_first_format_is_read_in_scope_order(
    mem: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Format 1 kept rows in rowid order and a scope key per posting; format 2 keeps rows
    in scope order. A format-1 file beside an upgraded store is read, reordered, and ranks
    as FTS5 does, without a rebuild."""

    built = _derived(mem)
    index = built._index
    assert index is not None and len({k for k in index.segments[0].keys.tolist()}) == 5
    built.stop()
    db = mem._engine.store._db  # type: ignore[attr-defined]
    _save_first_format(index, db.path.with_name(db.path.name + ".kindex"))

    ks = _read_without_rebuild(mem, monkeypatch)
    seg = ks._index.segments[0]  # type: ignore[union-attr]
    assert (np.diff(seg.keys) >= 0).all()
    _ranks_as_fts5(mem, ks, seed=17)


def test_an_index_saved_with_64_bit_arrays_is_read_narrowed(
    mem: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Format 2 saved every array in 64 bits; format 3 keeps counts and positions in the
    narrowest types that hold them, and its file is smaller for it. A format-2 file beside
    an upgraded store is read without a rebuild, narrowed, and ranks as FTS5 does."""

    built = _derived(mem)
    index = built._index
    assert index is not None
    built.stop()
    db = mem._engine.store._db  # type: ignore[attr-defined]
    path = db.path.with_name(db.path.name + ".kindex")
    save(index, path)
    narrow_size = path.stat().st_size
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for name in ("doclen", "p_tf"):
        arrays[f"seg_{name}"] = arrays[f"seg_{name}"].astype(np.float64)
    for name in ("p_row", "fwd_tids"):
        arrays[f"seg_{name}"] = arrays[f"seg_{name}"].astype(np.int64)
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta["format"] = 2
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    assert path.stat().st_size > narrow_size * 1.3

    ks = _read_without_rebuild(mem, monkeypatch)
    seg = ks._index.segments[0]  # type: ignore[union-attr]
    assert (seg.p_row.dtype, seg.p_tf.dtype, seg.doclen.dtype, seg.fwd_tids.dtype) == (
        np.int32,
        np.uint32,
        np.uint32,
        np.int32,
    )
    _ranks_as_fts5(mem, ks, seed=23)


def test_fts5_ranks_at_most_its_match_budget(mem: Memory) -> None:
    """Until the derived index is built, an unscoped search that FTS5 answers ranks only
    the words whose matches fit the budget, rarest first (the rarest always); each kept
    word scores as in the full query. Scoped searches stay exact."""
    db = mem._engine.store._db  # type: ignore[attr-defined]
    mem.add([f"zanzibar bakery note {i}" for i in range(4)], user_id="bob")

    def count(word: str) -> int:
        return db.query(
            "t", "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (f'"{word}"',)
        )[0][0]

    rare, common = count("zanzibar"), count("bakery")
    assert rare == 4 and common > 20
    never = 10**9  # the derived index is never built: FTS5 answers every search

    def hits(ks: KeywordSearch, query: str, node: Node | None = None) -> list[tuple]:
        found = ks.keyword_candidates(mem.namespace, match_expression(query), node, 500)
        return [(h.chunk_id, h.score) for h in found]

    exact = KeywordSearch(db, min_rows=never)
    bounded = KeywordSearch(db, min_rows=never, match_budget=rare + common - 1)
    both = hits(exact, "bakery zanzibar")
    assert len(both) >= common > rare
    assert hits(bounded, "bakery zanzibar") == hits(exact, "zanzibar")
    assert hits(bounded, "bakery zanzibar") != both
    # A budget both words fit in, a budget no word fits in, and a scoped search.
    assert hits(KeywordSearch(db, never, rare + common), "bakery zanzibar") == both
    # Over the budget alone, the rarest word is still ranked.
    assert hits(KeywordSearch(db, never, rare - 1), "bakery zanzibar") == hits(exact, "zanzibar")
    bob = Cmp("str", "user_id", "$eq", "bob")
    assert hits(bounded, "bakery zanzibar", bob) == hits(exact, "bakery zanzibar", bob)
    assert len(hits(exact, "bakery zanzibar", bob)) > rare


def test_stopping_interrupts_a_build_in_progress(
    mem: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closing store does not wait for a build (minutes over a million rows): stopping
    the builder interrupts the build's query, and no half-built index is handed over."""
    from engramdb.stores.sqlite import keyword_search

    started, interrupted, held = threading.Event(), threading.Event(), threading.Event()
    real_build = keyword_search.build

    class Interrupts:
        """The build's connection as the builder's stop sees it: tells the test."""

        def __init__(self, conn: Any) -> None:
            self.conn = conn

        def interrupt(self) -> None:
            self.conn.interrupt()
            interrupted.set()

    def held_build(conn: Any, epoch: str) -> Any:
        def hold() -> int:
            started.set()
            if not held.is_set():  # inside SQLite's virtual machine, until stop interrupts
                interrupted.wait(30)
                held.set()
            return 0

        ks._builder._building = Interrupts(conn)  # type: ignore[assignment]
        conn.set_progress_handler(hold, 1000)
        return real_build(conn, epoch)

    monkeypatch.setattr(keyword_search, "build", held_build)
    ks = KeywordSearch(mem._engine.store._db, min_rows=0)  # type: ignore[attr-defined]
    ks.keyword_candidates(mem.namespace, '"cafe"', None, 10)  # kicks the builder
    assert started.wait(60)
    ks.stop()
    assert interrupted.is_set()
    assert ks._index is None
    # FTS5 still answers.
    assert ks.keyword_candidates(mem.namespace, '"cafe"', None, 10)


def test_kicks_during_a_build_do_not_start_another(
    mem: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searches that see new writes while the index is built kick the builder again; once
    the build hands its index over, those kicks must not start a second whole build."""
    from engramdb.stores.sqlite import keyword_search

    started, release = threading.Event(), threading.Event()
    builds: list[int] = []
    real_build = keyword_search.build

    def counted_build(conn: Any, epoch: str) -> Any:
        builds.append(1)
        started.set()
        assert release.wait(60)
        return real_build(conn, epoch)

    monkeypatch.setattr(keyword_search, "build", counted_build)
    ks = KeywordSearch(mem._engine.store._db, min_rows=0)  # type: ignore[attr-defined]
    ks.keyword_candidates(mem.namespace, '"cafe"', None, 10)  # kicks the builder
    assert started.wait(60)
    mem.add("a write during the build", user_id="bob")
    ks.keyword_candidates(mem.namespace, '"cafe"', None, 10)  # a new data version: kicks
    assert ks._builder.wake.is_set()
    release.set()
    _wait(ks)
    thread = ks._builder.thread
    assert thread is not None
    thread.join(60)  # the builder ends once it has waited a while with nothing to do
    assert not thread.is_alive()
    assert len(builds) == 1
    ks.stop()


def test_a_failed_merge_leaves_the_segments_as_they_were(
    mem: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ks = _derived(mem)
    ks._builder.stopped = True  # merges are run by hand below
    rng = np.random.default_rng(4)
    for i in range(10):
        mem.add(_text(rng, 7), user_id=USERS[i % 5])
        _both(mem, ks, _query(rng), None, 10)
    index = ks._index
    assert index is not None and index.merge_due
    before = list(index.segments)

    def out_of_memory(self: MergePlan) -> None:
        raise MemoryError("no room for the merged segment")

    monkeypatch.setattr(MergePlan, "merge", out_of_memory)
    ks.merge_segments(lambda: False)
    assert index.segments == before and index._removed_while_merging is None
    mem.delete(mem.search("bakery", top_k=1, mode="keyword").hits[0].record.id)
    _both(mem, ks, "bakery museum", None, 10)
    monkeypatch.undo()
    ks.merge_segments(lambda: False)
    assert not index.merge_due
    _both(mem, ks, "bakery museum", None, 10)
    ks.stop()
