"""The derived vector index: exact blocks, the ANN graph, its tail, deletes and the sidecar."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from engramdb import Memory, Settings
from engramdb.stores.sqlite import SQLiteStore
from engramdb.stores.sqlite.vector_index import VectorIndex

DIM = 64
N = 3000
NS = "default"
_OUT: dict[str, object] = {"capture_output": True, "text": True, "check": True}


class TableEmbedder:
    """Texts of the form ``v<i>`` map to row i of a fixed random matrix (no model needed)."""

    name = "table-64"
    dim = DIM
    max_tokens = 256

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        vecs = rng.standard_normal((N + 500, DIM)).astype(np.float32)
        self.vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    def count_tokens(self, text: str) -> int:
        return 1

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        return self.vecs[[int(t[1:]) for t in texts]]


def _settings(url: str, **more: int) -> Settings:
    return Settings(url=url, ann_min_rows=500, ann_ef_search=160, **more)


def _open(path: Path, **more: int) -> Memory:
    settings = _settings(str(path), **more)
    return Memory(f"sqlite:///{path}", embedder=TableEmbedder(), settings=settings)


def _store(mem: Memory) -> SQLiteStore:
    store = mem.engine.store
    assert isinstance(store, SQLiteStore)
    return store


def _wait_ann(mem: Memory, timeout: float = 30.0, user: str | None = None) -> VectorIndex:
    """Search once (which starts the worker) and wait until the graph of the scope (the
    namespace, or ``user``) is ready and drained."""
    q = TableEmbedder().vecs[0]
    deadline = time.monotonic() + timeout
    while True:
        mem.search("q", query_vector=q, mode="vector", top_k=1, user_id=user)
        index = _store(mem)._vectors.index()
        graph = index.ann.get((NS, user))
        if graph is not None and graph.ready and not graph.pending:
            return index
        assert time.monotonic() < deadline, "the ANN graph was not built in time"
        time.sleep(0.05)


def _fill(mem: Memory, n: int = N) -> None:
    for start in range(0, n, 1000):
        mem.add([f"v{i}" for i in range(start, min(n, start + 1000))], user_id="u")


def _exact_top(vecs: np.ndarray, q: np.ndarray, k: int) -> list[str]:
    return [f"v{i}" for i in np.argsort(-(vecs @ q), kind="stable")[:k]]


def _hits(mem: Memory, q: np.ndarray, k: int = 10) -> list[str]:
    return [h.record.text for h in mem.search("q", query_vector=q, mode="vector", top_k=k).hits]


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A file with N records whose ANN graph is built and saved in the sidecar."""
    path = tmp_path / "ann.db"
    mem = _open(path)
    _fill(mem)
    _wait_ann(mem)
    mem.close()
    return path


def test_ann_recall_against_exact(built: Path) -> None:
    mem = _open(built)
    try:
        index = _wait_ann(mem)
        assert index.ann[(NS, None)].size == N
        emb = TableEmbedder()
        queries = np.random.default_rng(3).standard_normal((50, DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        recall = np.mean(
            [len(set(_hits(mem, q)) & set(_exact_top(emb.vecs[:N], q, 10))) / 10 for q in queries]
        )
        assert recall >= 0.98
    finally:
        mem.close()


def test_sidecar_round_trip_keeps_the_graph(built: Path) -> None:
    sidecar = built.with_name(built.name + ".vindex")
    assert list(sidecar.glob("ann-*.usearch"))
    mem = _open(built)
    try:
        index = _store(mem)._vectors.index()
        graph = index.ann[(NS, None)]
        assert graph.file is not None and graph.size == N and not graph.pending
        index = _wait_ann(mem)
        assert index.ann[(NS, None)].size == N  # loaded, not rebuilt
        q = TableEmbedder().vecs[17]
        assert _hits(mem, q, 1) == ["v17"]
    finally:
        mem.close()


def test_graph_is_quantised_and_scores_are_exact(built: Path) -> None:
    """The graph's copy of the vectors is int8; hits are rescored in float32 exactly."""
    mem = _open(built)
    try:
        index = _wait_ann(mem)
        assert index.ann[(NS, None)].dtype == "i8"
        emb = TableEmbedder()
        q = np.random.default_rng(11).standard_normal(DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        hits = mem.search("q", query_vector=q, mode="vector", top_k=10).hits
        rows = [int(h.record.text[1:]) for h in hits]
        exact = emb.vecs[rows] @ q
        assert [h.score for h in hits] == pytest.approx(exact.tolist(), abs=1e-6)
    finally:
        mem.close()


def test_float32_graph_of_an_older_sidecar_still_loads(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sidecar saved before quantised graphs (no dtype in its header) keeps its float32 graph."""
    import json

    from engramdb.stores.sqlite import ann

    shutil.rmtree(built.with_name(built.name + ".vindex"))
    monkeypatch.setattr(ann, "GRAPH_DTYPE", "f32")
    mem = _open(built)
    _wait_ann(mem)
    mem.close()
    header_path = built.with_name(built.name + ".vindex") / "index.json"
    header = json.loads(header_path.read_text())
    for entry in header["ann"]:
        assert entry.pop("dtype") == "f32"
    header_path.write_text(json.dumps(header))
    monkeypatch.setattr(ann, "GRAPH_DTYPE", "i8")
    mem = _open(built)
    try:
        graph = _store(mem)._vectors.index().ann[(NS, None)]
        assert graph.dtype == "f32" and graph.file is not None
        index = _wait_ann(mem)
        graph = index.ann[(NS, None)]
        assert graph.size == N and graph.dtype == "f32"  # loaded as float32, not rebuilt
        assert _hits(mem, TableEmbedder().vecs[17], 1) == ["v17"]
    finally:
        mem.close()


def test_a_sidecar_saved_without_record_rowids_is_completed_in_place(built: Path) -> None:
    """A format-2 sidecar (before each chunk's record rowid was kept) still loads, graphs
    and all: the rowids come from the store once, and the next save writes them."""
    import json

    sidecar = built.with_name(built.name + ".vindex")
    header = json.loads((sidecar / "index.json").read_text())
    header["format"] = 2
    (sidecar / "index.json").write_text(json.dumps(header))
    (sidecar / "rids.npy").unlink()
    with sqlite3.connect(built) as conn:
        want = dict(conn.execute("SELECT id, rid FROM chunks"))
    assert len(want) == N
    mem = _open(built)
    try:
        index = _store(mem)._vectors.index()
        assert index.ann[(NS, None)].file is not None  # the graph was loaded, not dropped
        ids = sorted(want)
        absent = max(ids) + 1
        with index.lock:
            assert index.rids_of([*ids, absent]) == [*(want[c] for c in ids), None]
        assert _store(mem).chunk_rids(NS, [ids[0], absent]) == {ids[0]: want[ids[0]]}
    finally:
        mem.close()
    header = json.loads((sidecar / "index.json").read_text())
    assert header["format"] == 3 and (sidecar / "rids.npy").exists()


CHILD = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_sqlite_vector_index import _open
mem = _open({path!r})
mem.add(["v{n}", "v{n1}"], user_id="other")
for rec in mem.list(filters={{"user_id": "u"}}, limit=5).records:
    mem.delete(rec.id)
    print(rec.text)
mem.close()
"""


def test_tail_and_deletes_from_another_process(built: Path) -> None:
    mem = _open(built)
    try:
        _wait_ann(mem)
        code = textwrap.dedent(
            CHILD.format(tests=str(Path(__file__).parent), path=str(built), n=N, n1=N + 1)
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout.split()
        assert len(out) == 5
        emb = TableEmbedder()
        # Written by the other process: not in the graph yet, found by the exact tail.
        assert _hits(mem, emb.vecs[N], 1) == [f"v{N}"]
        assert _hits(mem, emb.vecs[N + 1], 1) == [f"v{N + 1}"]
        # Deleted by the other process: still in the graph, never returned.
        for text in out:
            hits = _hits(mem, emb.vecs[int(text[1:])], 20)
            assert text not in hits
            assert len(hits) == 20
    finally:
        mem.close()


def test_missing_or_stale_sidecar_is_rebuilt(built: Path) -> None:
    emb = TableEmbedder()
    queries = [emb.vecs[i] for i in (0, 5, 99, 2999)]
    sidecar = built.with_name(built.name + ".vindex")
    shutil.rmtree(sidecar)
    mem = _open(built)
    try:
        assert [_hits(mem, q, 1) for q in queries] == [["v0"], ["v5"], ["v99"], ["v2999"]]
        _wait_ann(mem)
        assert [_hits(mem, q, 1) for q in queries] == [["v0"], ["v5"], ["v99"], ["v2999"]]
    finally:
        mem.close()
    assert sidecar.exists()
    # A sidecar from another epoch (e.g. after a restore) must be ignored, not trusted.
    conn = sqlite3.connect(built)
    with conn:
        conn.execute("UPDATE meta SET value = 'another-epoch' WHERE key = 'index_epoch'")
        conn.execute(
            "DELETE FROM chunks_fts WHERE rowid IN (SELECT c.id FROM chunks c JOIN records r "
            "ON r.rid = c.rid WHERE r.text = 'v5')"
        )
        conn.execute("DELETE FROM records WHERE text = 'v5'")
    conn.close()
    mem = _open(built)
    try:
        index = _store(mem)._vectors.index()
        assert index.epoch == "another-epoch"
        assert len(index) == N - 1
        assert _hits(mem, emb.vecs[5], 1) != ["v5"]
        assert _hits(mem, emb.vecs[99], 1) == ["v99"]
    finally:
        mem.close()


def test_large_user_gets_its_own_graph(tmp_path: Path) -> None:
    """A user above ann_min_user_rows is searched through its own graph: recall, scope,
    the exact tail, deletes and the sidecar round trip hold as for a namespace graph."""
    path = tmp_path / "users.db"
    emb = TableEmbedder()
    mem = _open(path, ann_min_user_rows=500)
    try:
        _fill(mem, 2000)  # user "u"
        mem.add([f"v{i}" for i in range(2000, 2400)], user_id="small")
        index = _wait_ann(mem, user="u")
        assert index.ann[(NS, "u")].size == 2000
        assert (NS, "small") not in index.ann  # below the threshold: exact
        queries = np.random.default_rng(5).standard_normal((40, DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        recall = []
        for q in queries:
            got = mem.search("q", query_vector=q, mode="vector", top_k=10, user_id="u")
            assert all(h.record.user_id == "u" for h in got)
            want = set(_exact_top(emb.vecs[:2000], q, 10))
            recall.append(len({h.record.text for h in got} & want) / 10)
        assert np.mean(recall) >= 0.99

        def user_hits(i: int, k: int = 1) -> list[str]:
            page = mem.search("q", query_vector=emb.vecs[i], mode="vector", top_k=k, user_id="u")
            return [h.record.text for h in page]

        mem.add(f"v{N + 7}", user_id="u")  # after the build: found through the exact tail
        assert user_hits(N + 7) == [f"v{N + 7}"]
        gone = [h.record.id for h in mem.search("q", query_vector=emb.vecs[11], top_k=1)]
        mem.delete(gone[0])  # "v11": still in the graph, never returned
        assert "v11" not in user_hits(11, 20) and len(user_hits(11, 20)) == 20
    finally:
        mem.close()
    mem = _open(path, ann_min_user_rows=500)
    try:
        graph = _store(mem)._vectors.index().ann[(NS, "u")]
        assert graph.file is not None and graph.size >= 2000  # loaded from the sidecar
        _wait_ann(mem, user="u")
        q = emb.vecs[1234]
        assert [h.record.text for h in mem.search("q", query_vector=q, top_k=1, user_id="u")] == [
            "v1234"
        ]
    finally:
        mem.close()


def test_small_namespace_uses_exact_scan(tmp_path: Path) -> None:
    mem = _open(tmp_path / "small.db")
    try:
        _fill(mem, 300)
        emb = TableEmbedder()
        assert _hits(mem, emb.vecs[42], 1) == ["v42"]
        assert (NS, None) not in _store(mem)._vectors.index().ann
    finally:
        mem.close()


def test_namespace_scan_matches_brute_force_through_adds_and_removes() -> None:
    """The contiguous namespace copy never serves a deleted row nor misses an added one."""
    rng = np.random.default_rng(3)
    index = VectorIndex(dim=DIM)
    live: dict[int, np.ndarray] = {}
    next_id = 1
    for step in range(6):
        for _ in range(200):  # appends spread over 40 users and two namespaces
            vec = rng.standard_normal(DIM).astype(np.float32)
            ns = "a" if next_id % 5 else "b"
            index.add((ns, f"u{next_id % 40}"), next_id, next_id, vec)
            if ns == "a":
                live[next_id] = vec
            next_id += 1
        if step % 2:
            for cid in rng.choice(sorted(live), size=50, replace=False).tolist():
                index.remove(cid)
                del live[cid]
        q = rng.standard_normal(DIM).astype(np.float32)
        ids, scores = index.scan("a", None, q)
        assert sorted(ids.tolist()) == sorted(live)
        want = {cid: float(vec @ q) for cid, vec in live.items()}
        got = dict(zip(ids.tolist(), scores.tolist(), strict=True))
        assert all(abs(got[c] - want[c]) < 1e-4 for c in want)


def test_a_loaded_namespace_is_scanned_in_place_until_it_changes(tmp_path: Path) -> None:
    """After a load, a whole-namespace scan reads the mapped sidecar in place (no second
    copy of the namespace's vectors in memory); a write drops that view, and every scan,
    in place or copied, answers as a brute-force scan of the live rows."""
    rng = np.random.default_rng(5)
    index = VectorIndex(dim=DIM)
    live: dict[str, dict[int, np.ndarray]] = {"a": {}, "b": {}}
    for cid in range(1, 601):  # the namespaces' users interleave in insertion order
        ns = "a" if cid % 3 else "b"
        vec = rng.standard_normal(DIM).astype(np.float32)
        index.add((ns, f"u{cid % 7}"), cid, cid, vec)
        live[ns][cid] = vec
    index.save(tmp_path / "side")
    loaded = VectorIndex.load(tmp_path / "side", DIM, "")
    assert loaded is not None and loaded.loaded is not None

    def check(ns: str) -> None:
        q = rng.standard_normal(DIM).astype(np.float32)
        ids, scores = loaded.scan(ns, None, q)
        got = dict(zip(ids.tolist(), scores.tolist(), strict=True))
        assert sorted(got) == sorted(live[ns])
        assert all(abs(got[c] - float(v @ q)) < 1e-4 for c, v in live[ns].items())

    for ns in ("a", "b"):
        check(ns)
        flat = loaded.flat[ns]
        assert not flat.owned and np.shares_memory(flat.mat, loaded.loaded[0]), ns
    vec = rng.standard_normal(DIM).astype(np.float32)
    loaded.add(("a", "u-new"), 1000, 1000, vec)
    live["a"][1000] = vec
    check("a")
    assert loaded.flat["a"].owned  # a copy now: the file no longer holds every row
    assert not loaded.flat["b"].owned  # the other namespace is still read in place
    loaded.remove(3)  # a row of "b" (3 % 3 == 0)
    del live["b"][3]
    check("b")
    assert loaded.flat["b"].owned
    # Loaded again: a user's whole block removed leaves the other blocks untouched (still
    # in place), but the namespace's run in the file still holds the removed rows.
    index.remove(3)
    index.save(tmp_path / "side")
    loaded = VectorIndex.load(tmp_path / "side", DIM, "")
    assert loaded is not None
    gone = [c for c in live["b"] if c % 7 == 3]  # the first block of the run
    for cid in gone:
        loaded.remove(cid)
        del live["b"][cid]
    assert ("b", "u3") not in loaded.blocks
    check("b")


def test_sidecar_runs_of_a_namespace_are_found_only_when_gapless() -> None:
    """Sidecars saved before blocks were grouped by namespace interleave them: such a
    namespace has no run (its scans copy, as before); a grouped one has its span."""
    from engramdb.stores.sqlite.vector_index import namespace_runs

    grouped = [(("a", "u1"), 0, 5), (("a", "u2"), 5, 3), (("b", "u1"), 8, 4)]
    assert namespace_runs(grouped) == {"a": (0, 8), "b": (8, 12)}
    interleaved = [(("a", "u1"), 0, 5), (("b", "u1"), 5, 4), (("a", "u2"), 9, 3)]
    assert namespace_runs(interleaved) == {"b": (5, 9)}


def test_orphaned_sidecar_copies_of_dead_processes_are_removed(tmp_path: Path) -> None:
    """A kill during a sidecar save leaves temp folders; the next open removes them."""
    path = tmp_path / "orph.db"
    mem = _open(path)
    _fill(mem, 50)
    mem.close()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_OUT)
    dead_pid = int(dead.stdout)
    orphans = [
        tmp_path / f"orph.db.vindex.tmp{dead_pid}-abc",
        tmp_path / f"orph.db.vindex.old{dead_pid}",
    ]
    live = tmp_path / f"orph.db.vindex.tmp{os.getpid()}-xyz"
    for folder in [*orphans, live]:
        folder.mkdir()
        (folder / "vectors.npy").write_bytes(b"partial")
    mem = _open(path)
    assert len(_hits(mem, TableEmbedder().vecs[3], k=3)) == 3
    mem.close()
    assert not any(p.exists() for p in orphans)
    assert live.exists()  # a save in progress in a live process is left alone


def test_filtered_search_of_a_large_scope_uses_the_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter that most of a large namespace passes is checked on the graph's best
    candidates (no exact scan of the namespace); one too narrow for them falls back to the
    exact scan, so its page is still the exact best passing records."""
    mem = _open(tmp_path / "f.db")
    try:
        items = [
            {"text": f"v{i}", "user_id": "u", "tags": ["all"], "metadata": {"n": i}}
            for i in range(N)
        ]
        for start in range(0, N, 1000):
            mem.add(items[start : start + 1000])
        _wait_ann(mem)
        scans: list[int] = []
        real_scan = VectorIndex.scan

        def spy(self: VectorIndex, *args: object) -> object:
            scans.append(1)
            return real_scan(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(VectorIndex, "scan", spy)
        emb = TableEmbedder()
        for i in (5, 250, 499):
            q = emb.vecs[N + i]
            broad = mem.search("q", query_vector=q, mode="vector", top_k=10, tags=["all"])
            assert [h.record.text for h in broad.hits] == _hits(mem, q)
            assert scans == []
            # A range no index answers, passed by 1% of the namespace.
            flt = {"metadata.n": {"$lt": 30}}
            narrow = mem.search("q", query_vector=q, mode="vector", top_k=5, filters=flt)
            best = np.argsort(-(emb.vecs[:30] @ q), kind="stable")[:5]
            assert [h.record.text for h in narrow.hits] == [f"v{j}" for j in best]
            assert scans == [1]
            scans.clear()
    finally:
        mem.close()


def test_sidecar_blocks_are_the_mapped_file_as_plain_arrays(tmp_path: Path) -> None:
    """A loaded sidecar's blocks read the mapped file (nothing copied into the process
    until a block changes) through plain ndarrays, whose slices skip np.memmap's
    Python-level indexing; searches over them answer as over the rows they were saved
    from."""
    import mmap

    path = tmp_path / "side.db"
    mem = _open(path)
    _fill(mem, 40)
    q = TableEmbedder().vecs[5]
    before = _hits(mem, q, k=5)
    mem.close()
    with sqlite3.connect(path) as conn:
        epoch = conn.execute("SELECT value FROM meta WHERE key = 'index_epoch'").fetchone()[0]
    conn.close()
    index = VectorIndex.load(path.with_name(path.name + ".vindex"), DIM, epoch or "")
    assert index is not None and index.blocks
    for block in index.blocks.values():
        assert not block.owned and type(block.mat) is np.ndarray
        base = block.mat
        while base.base is not None and not isinstance(base.base, mmap.mmap):
            base = base.base
        assert isinstance(base.base, mmap.mmap)
    mem = _open(path)
    assert _hits(mem, q, k=5) == before
    mem.close()


def test_large_products_run_on_one_blas_thread_and_restore_it() -> None:
    """Inside a scan every BLAS library runs one thread; after it (an error included) each
    has the count it had before, so the host application's setting is left alone."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from engramdb.stores.sqlite.vector_index import one_blas_thread

    def counts() -> list[int]:
        return [int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]

    assert counts(), "numpy links a BLAS library"
    with threadpool_limits(limits=2, user_api="blas"):
        before = counts()
        with one_blas_thread():
            assert set(counts()) == {1}
        assert counts() == before
        with pytest.raises(RuntimeError), one_blas_thread():
            raise RuntimeError("a failed scan")
        assert counts() == before


def test_overlapping_scans_leave_the_blas_thread_counts_as_they_found_them() -> None:
    """Scans in two threads overlap: one enters, the other enters, the first leaves while
    the second still runs. The second keeps one thread until it leaves, and then every
    library has its count from before the first (entered and left in this order here, as
    two threads would)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from engramdb.stores.sqlite.vector_index import one_blas_thread

    def counts() -> list[int]:
        return [int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        before = counts()
        assert set(before) == {2}
        first, second = one_blas_thread(), one_blas_thread()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert set(counts()) == {1}
        second.__exit__(None, None, None)
        assert counts() == before


def test_a_child_forked_during_a_scan_gets_its_blas_thread_counts_back() -> None:
    import os

    from threadpoolctl import threadpool_info, threadpool_limits

    from engramdb.stores.sqlite.vector_index import one_blas_thread

    def counts() -> list[int]:
        return [int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]

    read, write = os.pipe()
    with threadpool_limits(limits=2, user_api="blas"):
        with one_blas_thread():
            pid = os.fork()
            if pid == 0:  # child: report and leave without running the parent's cleanup
                os.write(write, b"1" if set(counts()) == {2} else b"0")
                with one_blas_thread():
                    one = set(counts()) == {1}
                os.write(write, b"1" if one and set(counts()) == {2} else b"0")
                os._exit(0)
            assert set(counts()) == {1}
        os.waitpid(pid, 0)
        os.close(write)
        assert os.read(read, 2) == b"11"
        os.close(read)
        assert set(counts()) == {2}
