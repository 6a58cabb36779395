"""The exact vector index's chunk map: loaded chunks in sorted arrays, changes in a dict.

Every answer must be the one a plain dict of the same history would give, whether a chunk
was loaded, added after the load, moved by a swap-remove or removed (and added again), and
whether the loaded chunks are looked up through the id -> row table or by binary search.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engramdb.stores.sqlite import chunk_map
from engramdb.stores.sqlite.chunk_map import ChunkMap, Location
from engramdb.stores.sqlite.vector_index import VectorIndex

DIM = 8


@pytest.fixture(params=["table", "binary search"])
def lookup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the loaded chunks found through the id -> row table, then with the
    table never built (ids as sparse as many deletes leave them)."""
    if request.param == "binary search":
        monkeypatch.setattr(chunk_map, "DENSE_SPREAD", 0)
        monkeypatch.setattr(chunk_map, "DENSE_SLACK", 0)
    return str(request.param)


def _loaded(rng: np.random.Generator) -> tuple[ChunkMap, dict[int, Location]]:
    """A map of 300 loaded chunks in 5 blocks of shuffled ids, and the dict it stands for."""
    ids = rng.permutation(np.arange(1, 1200, 4, dtype=np.int64))[:300]
    sizes = [100, 1, 0, 120, 79]  # an empty block too: the loader skips none it is given
    table, model, off = [], {}, 0
    for b, n in enumerate(sizes):
        key = ("ns", f"user{b}")
        table.append((key, off, n))
        for pos in range(n):
            model[int(ids[off + pos])] = (key, pos)
        off += n
    return ChunkMap.loaded(ids, table), model


def _same(chunks: ChunkMap, model: dict[int, Location], probe: list[int]) -> None:
    assert len(chunks) == len(model)
    assert sorted(chunks) == sorted(model)
    assert chunks.locate(probe) == [model.get(c) for c in probe]
    for cid in probe:
        assert (cid in chunks) == (cid in model)
        assert chunks.get(cid) == model.get(cid)


def test_the_table_is_built_only_while_the_loaded_ids_are_dense() -> None:
    compact = ChunkMap.loaded(np.arange(10, 0, -1, dtype=np.int64), [(("ns", "u"), 0, 10)])
    assert compact._dense is not None and compact._dense.tolist() == [-1, *range(9, -1, -1)]
    spread = chunk_map.DENSE_SPREAD * 10 + chunk_map.DENSE_SLACK
    sparse = ChunkMap.loaded(
        np.array([1, 2, spread], dtype=np.int64), [(("ns", "u"), 0, 2), (("ns", "v"), 2, 1)]
    )
    assert sparse._dense is None
    assert sparse.locate([spread, 2, 3, -1]) == [(("ns", "v"), 0), (("ns", "u"), 1), None, None]


def test_a_map_answers_as_a_dict_of_the_same_history(lookup: str) -> None:
    rng = np.random.default_rng(11)
    chunks, model = _loaded(rng)
    assert (chunks._dense is not None) == (lookup == "table")
    probe = list(range(0, 1300))  # loaded ids, ids between them, beyond both ends
    _same(chunks, model, probe)
    next_id = 2000
    for step in range(400):
        op = rng.integers(4)
        if op == 0 or not model:  # add a new chunk
            loc = (("ns", f"user{rng.integers(7)}"), int(rng.integers(500)))
            chunks[next_id] = model[next_id] = loc
            next_id += 1
        elif op == 1:  # remove one (loaded or not)
            cid = int(rng.choice(sorted(model)))
            assert chunks.pop(cid) == model.pop(cid)
        elif op == 2:  # move one, as a swap-remove does
            cid = int(rng.choice(sorted(model)))
            loc = (model[cid][0], int(rng.integers(500)))
            chunks[cid] = model[cid] = loc
        else:  # remove a missing id; add back a removed loaded one
            assert chunks.pop(-5) is None
            back = next((c for c in range(1, 1200, 4) if c not in model), None)
            if back is not None:
                chunks[back] = model[back] = (("ns", "back"), 0)
        if step % 50 == 0:
            _same(chunks, model, probe + list(range(2000, next_id)))
    _same(chunks, model, probe + list(range(2000, next_id)))


def _rid(chunk_id: int) -> int:
    """The record rowid the tests give a chunk (distinct from every chunk id)."""
    return 50_000 + chunk_id // 2


def test_a_loaded_index_serves_the_vectors_it_saved_through_later_changes(
    tmp_path: Path, lookup: str
) -> None:
    rng = np.random.default_rng(5)
    index = VectorIndex(dim=DIM, epoch="e")
    live: dict[int, np.ndarray] = {}
    for cid in rng.permutation(np.arange(1, 801)).tolist():
        vec = rng.standard_normal(DIM).astype(np.float32)
        index.add(("ns", f"u{cid % 9}"), cid, _rid(cid), vec)
        live[cid] = vec
    index.save(tmp_path / "side")
    loaded = VectorIndex.load(tmp_path / "side", DIM, "e")
    assert loaded is not None and isinstance(loaded.where, ChunkMap)
    assert (loaded.where._dense is not None) == (lookup == "table")
    for cid in rng.choice(sorted(live), size=300, replace=False).tolist():  # swap-removes
        loaded.remove(cid)
        del live[cid]
    for cid in range(801, 901):
        vec = rng.standard_normal(DIM).astype(np.float32)
        loaded.add(("ns", f"u{cid % 9}"), cid, _rid(cid), vec)
        live[cid] = vec
    assert len(loaded) == len(live) and loaded.chunk_ids() == set(live)
    order = sorted(live)
    assert np.array_equal(loaded.vectors(order), np.stack([live[c] for c in order]))
    # Each chunk's record rowid follows its row through the swap-removes and the reload.
    assert loaded.rids_of([*order, 10_000]) == [*(_rid(c) for c in order), None]
    # Rows read from the mapped sidecar in one step and rows copied one by one agree.
    asked = [10_000, *rng.permutation(order).tolist()]
    slots, mat = loaded.fetch(asked)
    assert sorted(slots.tolist()) == list(range(1, len(asked)))
    assert np.array_equal(mat, np.stack([live[asked[i]] for i in slots.tolist()]))
    unchanged, rows, rest = loaded.where.split(asked)
    assert len(unchanged) and len(rest) > 1  # both paths were taken
    kept, vecs = loaded.indexed_vectors([*order[:50], 10_000, order[-1]])
    assert kept == [*order[:50], order[-1]]
    assert np.array_equal(vecs, np.stack([live[c] for c in kept]))
    q = rng.standard_normal(DIM).astype(np.float32)
    for user in range(9):
        ids, scores = loaded.scan("ns", f"u{user}", q)
        want = sorted(c for c in live if c % 9 == user)
        assert sorted(ids.tolist()) == want
        assert np.allclose(scores, np.stack([live[int(c)] for c in ids]) @ q)
