"""Store speed: engramdb (embedded SQLite) against Chroma, side by side in one run.

Both systems get the same precomputed vectors (see :mod:`bench.data`), so the figures
measure the stores, not the model. engramdb runs at its defaults (``synchronous=FULL``)
with a :class:`LookupEmbedder` that returns each text's precomputed vector; Chroma is a
``chromadb.PersistentClient`` in a temp folder, cosine space, filtering with
``where={"user_id": ...}``. Every phase is interleaved (batch i to one system then the
other, alternating who goes first; searches in blocks of :data:`SEARCH_BLOCK` queries per
system, alternating who goes first) so that load from other processes on the machine falls
on both systems alike.

Figures: batch ingest records/s (batches of 1,000), single-record add latency, top-10
search p50/p95 filtered to the query's user and unfiltered, recall@10 against exact brute
force (numpy), RSS and cold open + first search in a fresh process, size on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    ROOT,
    dir_size_mb,
    finish,
    latency,
    log,
    machine,
    ratio,
    rss_mb,
)
from bench.data import DataConfig, Workload, describe, store_config
from bench.footprint import breakdown
from bench.synthetic import REAL_ROWS, describe_synthetic, result_name, workload

BATCH = 1_000
K = 10
SEARCH_BLOCK = 50  # queries a system runs in a row before the other takes a turn
TIE_EPS = 1e-5


class LookupEmbedder:
    """Returns the precomputed vector of each known text, so ingest measures the store.

    ``name`` and ``dim`` match the model the vectors came from. ``count_tokens`` counts
    words (cheap) instead of running the tokenizer; every text is far below the window.
    """

    max_tokens = 256

    def __init__(self, name: str, texts: list[str], vectors: np.ndarray) -> None:
        self.name = name
        self.dim = int(vectors.shape[1])
        self._row = {t: i for i, t in enumerate(texts)}
        self._vectors = vectors

    def count_tokens(self, text: str) -> int:
        """Count words."""
        return len(text.split())

    def embed(self, texts: list[str], *, query: bool = False) -> np.ndarray:
        """Return the stored vectors of ``texts`` (KeyError for an unknown text)."""
        return self._vectors[[self._row[t] for t in texts]]


def embedder_name(cfg: DataConfig) -> str:
    """The embedder name recorded in the store: the model the vectors came from."""
    if cfg.hash_vectors:
        return "hash-384"
    from engramdb.embedders.minilm import NAME

    return NAME


def recall_at_k(retrieved: list[int], cand_rows: np.ndarray, cand_scores: np.ndarray) -> float:
    """Share of the exact top-k found, counting ties at the k-th score as found."""
    n = min(K, len(cand_rows))
    if n == 0:
        return 1.0
    kth = np.partition(-cand_scores, n - 1)[n - 1] * -1.0
    score_of = dict(zip(cand_rows.tolist(), cand_scores.tolist(), strict=True))
    good = sum(
        1 for r in dict.fromkeys(retrieved[:K]) if r in score_of and score_of[r] >= kth - TIE_EPS
    )
    return min(good, n) / n


def timed_search(
    mem: Any, w: Workload, row_of_text: dict[str, int], i: int, filtered: bool
) -> tuple[float, list[int]]:
    """Run query ``i`` on engramdb (vector mode, precomputed vector; filtered to the asking
    user or not); return its seconds and the workload rows of its hits (-1: unknown)."""
    uid = w.user_name(w.query_users[i]) if filtered else None
    t0 = time.perf_counter()
    page = mem.search(
        w.query_texts[i], top_k=K, user_id=uid, mode="vector", query_vector=w.query_vectors[i]
    )
    dt = time.perf_counter() - t0
    return dt, [row_of_text.get(h.record.text, -1) for h in page.hits]


def hybrid_latencies(
    mem: Any, w: Workload, queries: int | Sequence[int]
) -> tuple[list[float], list[float]]:
    """Seconds of each query in engramdb's default mode (vector + keyword, fused), filtered
    to the asking user and not; the query vector is given, so no embedding is timed. No
    alternative here has a keyword side, so these figures stand alone. ``queries``: how
    many of the workload's first queries, or which."""
    filtered: list[float] = []
    unfiltered: list[float] = []
    for i in range(queries) if isinstance(queries, int) else queries:
        for uid, out in ((w.user_name(w.query_users[i]), filtered), (None, unfiltered)):
            t0 = time.perf_counter()
            mem.search(w.query_texts[i], top_k=K, user_id=uid, query_vector=w.query_vectors[i])
            out.append(time.perf_counter() - t0)
    return filtered, unfiltered


@contextlib.contextmanager
def backlog_paused() -> Iterator[None]:
    """This process's extraction helper frozen (``SIGSTOP``) for the block, if one runs.

    The engine's extraction worker then waits on the helper's pipe, so no part of the
    backlog runs: neither the parsing nor the writing of its results. The library has no
    pause of its own; this reaches into the helper module on purpose, for the benchmark.
    """
    from engramdb.extract import process

    helper = process._helper
    pid = helper.proc.pid if helper is not None and helper.alive() else None
    if pid is not None:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.1)  # a batch being written when the helper stopped is finished
    try:
        yield
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)


def hybrid_beside_backlog(mem: Any, w: Workload, nq: int) -> dict[str, list[float]]:
    """Hybrid search with the extraction backlog running (``h_f``, ``h_u``) and paused
    (``h_f_quiet``, ``h_u_quiet``), block by block.

    Why blocks: timed one phase after the other, the second phase also ran warmer than the
    first, which the comparison would charge to the backlog. Each block of
    :data:`SEARCH_BLOCK` queries runs in both conditions, which one goes first alternating.
    """
    lat: dict[str, list[float]] = {k: [] for k in ("h_f", "h_u", "h_f_quiet", "h_u_quiet")}
    for b, start in enumerate(range(0, nq, SEARCH_BLOCK)):
        block = range(start, min(nq, start + SEARCH_BLOCK))
        for paused in (False, True) if b % 2 == 0 else (True, False):
            with backlog_paused() if paused else contextlib.nullcontext():
                f, u = hybrid_latencies(mem, w, block)
            suffix = "_quiet" if paused else ""
            lat["h_f" + suffix] += f
            lat["h_u" + suffix] += u
    return lat


Search = Callable[[int, bool], tuple[float, list[int]]]


def search_in_blocks(
    first: tuple[str, Search], second: tuple[str, Search], nq: int, log: Callable[[str], None]
) -> tuple[dict[str, list[float]], dict[str, list[list[int]]]]:
    """Run queries ``0..nq-1`` filtered and unfiltered on two systems; times and ids.

    Keys are ``<name>_f`` and ``<name>_u``. Each system runs blocks of
    :data:`SEARCH_BLOCK` queries per mode, and the systems' order swaps from one block to
    the next: load from other processes still falls on both alike, and each system runs
    as it would in use, with its own working set in the CPU caches. (Alternating single
    queries made every query follow the other system's and the numpy truth's full passes
    over 150 MB of vectors, which evicted the caches: engramdb's filtered p50 on SQLite
    measured 1.4 ms that way against 0.6 ms alone.)
    """
    steps = [(n, fn, f) for f in (True, False) for n, fn in (first, second)]
    keys = [f"{n}_{'f' if f else 'u'}" for n, _, f in steps]
    lat: dict[str, list[float]] = {k: [] for k in keys}
    got: dict[str, list[list[int]]] = {k: [] for k in keys}
    for b, start in enumerate(range(0, nq, SEARCH_BLOCK)):
        order = steps if b % 2 == 0 else [steps[1], steps[0], steps[3], steps[2]]
        for name, fn, filtered in order:
            key = f"{name}_{'f' if filtered else 'u'}"
            for i in range(start, min(nq, start + SEARCH_BLOCK)):
                dt, ids = fn(i, filtered)
                lat[key].append(dt)
                got[key].append(ids)
        if start and start % 200 == 0:
            log(f"  {start} queries")
    return lat, got


def wait_for_ann(
    mem: Any, query: np.ndarray, users: Sequence[str] = (), timeout_s: float = 900.0
) -> dict[str, Any]:
    """Wait until the background ANN graphs are built and calibrated.

    Why: the graphs are built off the write path after a bulk load; until one is ready,
    its scope's searches use the exact scan. Chroma builds its graph inside ``add``, so the
    time engramdb's take is reported beside the ingest rate, and searches are measured
    once they are ready (or once the worker gave up, e.g. on random vectors, where the
    calibration's recall target cannot be met and the scan stays exact). One search per
    user in ``users`` creates the graphs of the users above ``ann_min_user_rows``.
    """
    from engramdb.stores.sqlite import SQLiteStore

    store = mem.engine.store
    assert isinstance(store, SQLiteStore)
    t0 = time.perf_counter()
    for user in dict.fromkeys(users):
        mem.search("warm", top_k=K, mode="vector", query_vector=query, user_id=user)
    graphs: dict[Any, Any] = {}
    while time.perf_counter() - t0 < timeout_s:
        mem.search("warm", top_k=K, mode="vector", query_vector=query)
        graphs = dict(store._vectors.index().ann)
        if all(g.failures >= 3 or (g.ready and not g.pending) for g in graphs.values()):
            break
        time.sleep(0.5)
    graph = graphs.get((mem.namespace, None))
    return {
        "ready": bool(graph is not None and graph.ready),
        "build_s": round(time.perf_counter() - t0, 2),
        "ef_search": None if graph is None else graph.ef_search,
        "gave_up": bool(graph is not None and graph.failures >= 3),
        "user_graphs": {
            user: {"ready": g.ready, "size": g.size, "ef_search": g.ef_search}
            for (_, user), g in graphs.items()
            if user is not None
        },
    }


def wait_for_keyword_index(
    mem: Any, text: str, query: np.ndarray, timeout_s: float = 600.0
) -> dict[str, Any]:
    """Wait until the derived keyword index is built (SQLite), like :func:`wait_for_ann`.

    Why: the index is built off the write path once the keyword rows pass
    ``keyword_index_min_rows``; until then FTS5 ranks every match. Hybrid searches are
    measured once it answers, and the time it took is reported beside them. Until then a
    namespace-wide hybrid search over a million rows can outlast ``search_timeout_ms``
    (FTS5 ranks every match): such searches are counted, not fatal.
    """
    from engramdb import QueryTimeoutError
    from engramdb.stores.sqlite import SQLiteStore

    store = mem.engine.store
    assert isinstance(store, SQLiteStore)
    t0 = time.perf_counter()
    if mem.count() < store._keywords._min_rows:
        return {"ready": False, "build_s": 0.0, "why": "fewer rows than keyword_index_min_rows"}
    timed_out = 0
    while time.perf_counter() - t0 < timeout_s:
        try:
            mem.search(text, top_k=K, query_vector=query)  # a hybrid search kicks the build
        except QueryTimeoutError:
            timed_out += 1
        if store._keywords._index is not None:
            break
        time.sleep(0.5)
    from engramdb.stores.sqlite import keyword_prune

    # An index large enough to prune with compiled kernels loads them in a background
    # thread: until they are in, searches sum every posting, which is not the steady state
    # to time. A smaller index never loads them, so the bench waits for nothing there.
    index = store._keywords._index
    pruning = index is not None and any(
        len(seg.p_row) >= keyword_prune.LOAD_MIN_POSTINGS for seg in index.segments
    )
    if pruning:
        pruning = keyword_prune.wait_ready(max(1.0, timeout_s - (time.perf_counter() - t0)))
    return {
        "ready": store._keywords._index is not None,
        "build_s": round(time.perf_counter() - t0, 2),
        "searches_timed_out_while_building": timed_out,
        "pruning": pruning,
    }


def _chroma_client(path: Path) -> Any:
    import chromadb

    return chromadb.PersistentClient(
        path=str(path), settings=chromadb.Settings(anonymized_telemetry=False)
    )


def _files_mb(folder: Path) -> dict[str, float]:
    """The biggest files under ``folder`` (MiB), to show where the space goes."""
    sizes = {
        str(p.relative_to(folder)): round(p.stat().st_size / 2**20, 2)
        for p in folder.rglob("*")
        if p.is_file()
    }
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:8])


def _disk_floors(sizes: dict[str, Any]) -> dict[str, float | None]:
    """The breakdown's floors (``bench.footprint``) as ratios to Chroma's size on disk:
    what the disk ratio could shrink to without the exact float32 copy, and with nothing but
    the float32 vectors, the records and the FTS5 index."""
    parts = sizes["engramdb_breakdown"]
    chroma_bytes = sizes["chroma_mb"] * 2**20
    return {
        f"disk_floor_{name}_vs_chroma": ratio(per_record * parts["records"], chroma_bytes)
        for name, per_record in parts.get("floors", {}).items()  # none without dbstat
    }


def _cold_open(system: str, path: Path, w: Workload, tmp: Path, runs: int) -> dict[str, Any]:
    """Run :mod:`bench.coldopen` ``runs`` times in fresh processes; keep each and the median."""
    n = min(50, len(w.query_texts))
    qfile = tmp / "cold_queries.npy"
    jfile = tmp / "cold_queries.json"
    np.save(qfile, w.query_vectors[:n])
    jfile.write_text(
        json.dumps(
            [{"text": w.query_texts[i], "user": w.user_name(w.query_users[i])} for i in range(n)]
        )
    )
    out = []
    cmd = [sys.executable, "-m", "bench.coldopen", system, str(path), str(qfile), str(jfile)]
    cmd.append(embedder_name(w.config))
    for _ in range(runs):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"cold open of {system} failed:\n{proc.stderr[-2000:]}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    med = {k: float(np.median([o[k] for o in out])) for k in out[0] if out[0][k] is not None}
    return {"median": med, "runs": out}


def run(
    cfg: DataConfig,
    search_queries: int | None = None,
    cold_runs: int = 3,
    real_rows: int = REAL_ROWS,
) -> dict[str, Any]:
    """Run the store benchmark on the workload of ``cfg``; return the report."""
    from engramdb import Memory, Settings

    w = workload(cfg, real_rows)
    info = describe(w)
    log(f"workload: {info}")
    nq = len(w.query_texts) if search_queries is None else min(search_queries, len(w.query_texts))
    tmp = Path(tempfile.mkdtemp(prefix="engramdb-bench-"))
    report: dict[str, Any] = {"benchmark": "store", "machine": machine()}
    try:
        e_path = tmp / "engram" / "bench.db"
        e_path.parent.mkdir()
        c_path = tmp / "chroma"
        all_texts = w.texts + w.add_texts
        all_vecs = np.concatenate([w.vectors, w.add_vectors])
        embedder = LookupEmbedder(embedder_name(cfg), all_texts, all_vecs)
        settings = Settings(synchronous="FULL")
        rss0 = rss_mb()
        mem = Memory(f"sqlite:///{e_path}", embedder=embedder, settings=settings)
        client = _chroma_client(c_path)
        col = client.create_collection(
            "bench", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        users = [w.user_name(u) for u in w.users]
        row_of_text = {t: i for i, t in enumerate(w.texts)}

        # ---------------------------------------------------------------- batch ingest
        log(f"ingest {len(w.texts)} records in batches of {BATCH}")
        e_time = c_time = 0.0
        e_batches: list[float] = []
        c_batches: list[float] = []
        for b, start in enumerate(range(0, len(w.texts), BATCH)):
            sl = slice(start, start + BATCH)
            items = [{"text": t, "user_id": u} for t, u in zip(w.texts[sl], users[sl], strict=True)]
            ids = [str(i) for i in range(start, start + len(items))]
            metas = [{"user_id": u} for u in users[sl]]

            def do_e(items: list[dict[str, str]] = items) -> float:
                t0 = time.perf_counter()
                res = mem.add(items)
                dt = time.perf_counter() - t0
                assert all(r.outcome == "written" for r in res), "unexpected dedup/reject"
                return dt

            def do_c(ids: list[str] = ids, sl: slice = sl, metas: list[Any] = metas) -> float:
                t0 = time.perf_counter()
                col.add(ids=ids, embeddings=w.vectors[sl], documents=w.texts[sl], metadatas=metas)
                return time.perf_counter() - t0

            if b % 2 == 0:
                de, dc = do_e(), do_c()
            else:
                dc, de = do_c(), do_e()
            e_batches.append(de)
            c_batches.append(dc)
            e_time += de
            c_time += dc
            if b % 20 == 0:
                log(f"  batch {b}: engramdb {de * 1000:.0f} ms, chroma {dc * 1000:.0f} ms")
        ingest = {
            "engramdb_rec_per_s": round(len(w.texts) / e_time, 1),
            "chroma_rec_per_s": round(len(w.texts) / c_time, 1),
            "engramdb_batch": latency(e_batches),
            "chroma_batch": latency(c_batches),
        }
        log(f"ingest: {ingest['engramdb_rec_per_s']} vs {ingest['chroma_rec_per_s']} rec/s")

        # ---------------------------------------------------------------- search
        rows_of_user: dict[int, np.ndarray] = {}
        order = np.argsort(w.users, kind="stable")
        bounds = np.searchsorted(w.users[order], np.arange(cfg.users + 1))
        for u in range(cfg.users):
            rows_of_user[u] = order[bounds[u] : bounds[u + 1]]

        def e_search(i: int, filtered: bool) -> tuple[float, list[int]]:
            return timed_search(mem, w, row_of_text, i, filtered)

        def c_search(i: int, filtered: bool) -> tuple[float, list[int]]:
            where = {"user_id": w.user_name(w.query_users[i])} if filtered else None
            t0 = time.perf_counter()
            res = col.query(
                query_embeddings=[w.query_vectors[i]],
                n_results=K,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
            dt = time.perf_counter() - t0
            return dt, [int(x) for x in res["ids"][0]]

        t0 = time.perf_counter()
        e_search(0, True)
        e_first = time.perf_counter() - t0
        ann = wait_for_ann(mem, w.query_vectors[0], [w.user_name(u) for u in w.query_users])
        log(f"ann: {ann}")
        t0 = time.perf_counter()
        c_search(0, True)
        c_first = time.perf_counter() - t0
        warm = min(20, nq)
        for i in range(warm):
            for f in (True, False):
                e_search(i, f)
                c_search(i, f)

        keys = ("e_f", "c_f", "e_u", "c_u", "np_u", "np_f", "np_u1", "np_f1")
        lat: dict[str, list[float]] = {k: [] for k in keys}
        log(f"search: {nq} queries, filtered and unfiltered, both systems")
        lat_sys, got = search_in_blocks(("e", e_search), ("c", c_search), nq, log)
        lat.update(lat_sys)
        blas1: Any = None
        with contextlib.suppress(ImportError):  # optional: only for the reference timings
            from threadpoolctl import threadpool_limits as blas1
        rec: dict[str, list[float]] = {k: [] for k in got}
        all_rows = np.arange(len(w.texts))
        for i in range(nq):
            # Exact truth for recall, and the plain-numpy reference timings (own pass).
            q = w.query_vectors[i]
            cand = rows_of_user[int(w.query_users[i])]
            t0 = time.perf_counter()
            f_scores = w.vectors[cand] @ q
            np.argpartition(-f_scores, min(K, len(cand)) - 1)[:K]
            lat["np_f"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            all_scores = w.vectors @ q
            np.argpartition(-all_scores, K - 1)[:K]
            lat["np_u"].append(time.perf_counter() - t0)
            if blas1 is not None:
                # The same scans with one BLAS thread: on a busy machine OpenBLAS's worker
                # threads, not the arithmetic, dominate the tail of small matrix-vector products.
                with blas1(1):
                    t0 = time.perf_counter()
                    f1 = w.vectors[cand] @ q
                    np.argpartition(-f1, min(K, len(cand)) - 1)[:K]
                    lat["np_f1"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    a1 = w.vectors @ q
                    np.argpartition(-a1, K - 1)[:K]
                    lat["np_u1"].append(time.perf_counter() - t0)
            for key in ("e_f", "c_f"):
                rec[key].append(recall_at_k(got[key][i], cand, f_scores))
            for key in ("e_u", "c_u"):
                rec[key].append(recall_at_k(got[key][i], all_rows, all_scores))
        log("hybrid search: waiting for the keyword index")
        kindex = wait_for_keyword_index(mem, w.query_texts[0], w.query_vectors[0])
        log(f"hybrid search: {nq} queries, filtered and unfiltered, backlog running / paused")
        pending = mem.stats()["entities"].get("pending")
        # The default extraction mode runs the ingest's backlog in a helper process beside
        # every phase above (tens of records/s: the whole run at 100k). The same queries
        # with it paused, block by block, show what the backlog costs the searches here.
        lat.update(hybrid_beside_backlog(mem, w, nq))
        mem._engine._entities.close()
        # The vector phase above ran beside the backlog too (Chroma has none): engramdb's
        # vector searches again, alone, give its steady state beside the figure in the race.
        log("vector search again, entity extraction stopped")
        for i in range(nq):
            for filtered, key in ((True, "e_f_quiet"), (False, "e_u_quiet")):
                lat.setdefault(key, []).append(e_search(i, filtered)[0])
        search = {
            "engramdb_keyword_index": kindex,
            "engramdb_ann": ann,
            "engramdb_first_search_after_ingest_ms": round(e_first * 1000, 2),
            "chroma_first_search_after_ingest_ms": round(c_first * 1000, 2),
            "engramdb_filtered": latency(lat["e_f"]),
            "chroma_filtered": latency(lat["c_f"]),
            "engramdb_unfiltered": latency(lat["e_u"]),
            "chroma_unfiltered": latency(lat["c_u"]),
            "engramdb_hybrid_filtered": latency(lat["h_f"]),
            "engramdb_hybrid_unfiltered": latency(lat["h_u"]),
            "entity_extraction_pending_at_hybrid": pending,
            "engramdb_hybrid_filtered_extraction_stopped": latency(lat["h_f_quiet"]),
            "engramdb_hybrid_unfiltered_extraction_stopped": latency(lat["h_u_quiet"]),
            "engramdb_filtered_extraction_stopped": latency(lat["e_f_quiet"]),
            "engramdb_unfiltered_extraction_stopped": latency(lat["e_u_quiet"]),
            "numpy_exact_filtered": latency(lat["np_f"]),
            "numpy_exact_unfiltered": latency(lat["np_u"]),
            "numpy_exact_filtered_1_blas_thread": latency(lat["np_f1"]),
            "numpy_exact_unfiltered_1_blas_thread": latency(lat["np_u1"]),
            "recall_at_10": {
                "engramdb_filtered": round(float(np.mean(rec["e_f"])), 4),
                "chroma_filtered": round(float(np.mean(rec["c_f"])), 4),
                "engramdb_unfiltered": round(float(np.mean(rec["e_u"])), 4),
                "chroma_unfiltered": round(float(np.mean(rec["c_u"])), 4),
            },
        }
        log(f"search: {json.dumps(search['recall_at_10'])}")

        # ---------------------------------------------------------------- single adds
        log(f"single adds: {len(w.add_texts)} per system")
        e_add: list[float] = []
        c_add: list[float] = []
        for i, (t, u) in enumerate(zip(w.add_texts, w.add_users, strict=True)):
            uid = w.user_name(u)
            vec = w.add_vectors[i : i + 1]

            def one_e(t: str = t, uid: str = uid) -> float:
                t0 = time.perf_counter()
                mem.add(t, user_id=uid)
                return time.perf_counter() - t0

            def one_c(i: int = i, t: str = t, uid: str = uid, vec: np.ndarray = vec) -> float:
                t0 = time.perf_counter()
                col.add(ids=[f"a{i}"], embeddings=vec, documents=[t], metadatas=[{"user_id": uid}])
                return time.perf_counter() - t0

            if i % 2:
                c_add.append(one_c())
                e_add.append(one_e())
            else:
                e_add.append(one_e())
                c_add.append(one_c())
        # Search right after a write: the index catches up with the new tail first.
        after_write: list[float] = []
        for i in range(min(50, nq)):
            mem.add(w.add_texts[i % len(w.add_texts)], user_id=f"u-extra-{i}")
            dt, _ = e_search(i, True)
            after_write.append(dt)
        single = {
            "engramdb": latency(e_add),
            "chroma": latency(c_add),
            "engramdb_search_after_write": latency(after_write),
        }
        rss_end = rss_mb()
        mem.close()
        client.close()
        sizes: dict[str, Any] = {
            "engramdb_mb": dir_size_mb(e_path.parent),
            "chroma_mb": dir_size_mb(c_path),
            "engramdb_files_mb": _files_mb(e_path.parent),
            "chroma_files_mb": _files_mb(c_path),
            "engramdb_breakdown": breakdown(e_path),
        }

        # ---------------------------------------------------------------- cold open
        log("cold open in fresh processes")
        cold_e = _cold_open("engramdb", e_path, w, tmp, cold_runs)
        cold_c = _cold_open("chroma", c_path, w, tmp, cold_runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {
        "records": len(w.texts),
        "queries": nq,
        "engramdb_filtered_p50_ms": search["engramdb_filtered"]["p50_ms"],
        "engramdb_filtered_p95_ms": search["engramdb_filtered"]["p95_ms"],
        "chroma_filtered_p50_ms": search["chroma_filtered"]["p50_ms"],
        "chroma_filtered_p95_ms": search["chroma_filtered"]["p95_ms"],
        "engramdb_unfiltered_p50_ms": search["engramdb_unfiltered"]["p50_ms"],
        "engramdb_unfiltered_p95_ms": search["engramdb_unfiltered"]["p95_ms"],
        "chroma_unfiltered_p50_ms": search["chroma_unfiltered"]["p50_ms"],
        "chroma_unfiltered_p95_ms": search["chroma_unfiltered"]["p95_ms"],
        "engramdb_hybrid_filtered_p95_ms": search["engramdb_hybrid_filtered"]["p95_ms"],
        "engramdb_hybrid_unfiltered_p95_ms": search["engramdb_hybrid_unfiltered"]["p95_ms"],
        "engramdb_hybrid_filtered_extraction_stopped_p95_ms": search[
            "engramdb_hybrid_filtered_extraction_stopped"
        ]["p95_ms"],
        "engramdb_hybrid_unfiltered_extraction_stopped_p95_ms": search[
            "engramdb_hybrid_unfiltered_extraction_stopped"
        ]["p95_ms"],
        "engramdb_filtered_extraction_stopped_p95_ms": search[
            "engramdb_filtered_extraction_stopped"
        ]["p95_ms"],
        "engramdb_unfiltered_extraction_stopped_p95_ms": search[
            "engramdb_unfiltered_extraction_stopped"
        ]["p95_ms"],
        "numpy_exact_unfiltered_p95_ms": search["numpy_exact_unfiltered"]["p95_ms"],
        "numpy_exact_unfiltered_1_blas_thread_p95_ms": search[
            "numpy_exact_unfiltered_1_blas_thread"
        ].get("p95_ms"),
        "numpy_exact_filtered_p95_ms": search["numpy_exact_filtered"]["p95_ms"],
        "numpy_exact_filtered_1_blas_thread_p95_ms": search[
            "numpy_exact_filtered_1_blas_thread"
        ].get("p95_ms"),
        "engramdb_ann_used": search["engramdb_ann"]["ready"],
        "engramdb_ann_build_s": search["engramdb_ann"]["build_s"],
        "engramdb_keyword_index_build_s": search["engramdb_keyword_index"]["build_s"],
        "engramdb_recall_at_10": search["recall_at_10"]["engramdb_filtered"],
        "engramdb_unfiltered_recall_at_10": search["recall_at_10"]["engramdb_unfiltered"],
        "chroma_recall_at_10": search["recall_at_10"]["chroma_filtered"],
        "chroma_unfiltered_recall_at_10": search["recall_at_10"]["chroma_unfiltered"],
        "engramdb_ingest_rec_per_s": ingest["engramdb_rec_per_s"],
        "chroma_ingest_rec_per_s": ingest["chroma_rec_per_s"],
        "engramdb_single_add_p50_ms": single["engramdb"]["p50_ms"],
        "engramdb_single_add_p95_ms": single["engramdb"]["p95_ms"],
        "chroma_single_add_p50_ms": single["chroma"]["p50_ms"],
        "chroma_single_add_p95_ms": single["chroma"]["p95_ms"],
        "engramdb_cold_open_first_search_s": cold_e["median"]["open_plus_first_search_s"],
        "chroma_cold_open_first_search_s": cold_c["median"]["open_plus_first_search_s"],
        "engramdb_import_s": cold_e["median"]["import_s"],
        "engramdb_rss_mb": cold_e["median"]["rss_after_warm_searches_mb"],
        "chroma_rss_mb": cold_c["median"]["rss_after_warm_searches_mb"],
        "engramdb_disk_mb": sizes["engramdb_mb"],
        "chroma_disk_mb": sizes["chroma_mb"],
        "filtered_speedup_vs_chroma": ratio(
            search["chroma_filtered"]["p95_ms"], search["engramdb_filtered"]["p95_ms"]
        ),
        "unfiltered_speedup_vs_chroma": ratio(
            search["chroma_unfiltered"]["p95_ms"], search["engramdb_unfiltered"]["p95_ms"]
        ),
        "ingest_speedup_vs_chroma": ratio(ingest["engramdb_rec_per_s"], ingest["chroma_rec_per_s"]),
        "single_add_speedup_vs_chroma": ratio(
            single["chroma"]["p50_ms"], single["engramdb"]["p50_ms"]
        ),
        "cold_open_speedup_vs_chroma": ratio(
            cold_c["median"]["open_plus_first_search_s"],
            cold_e["median"]["open_plus_first_search_s"],
        ),
        "disk_ratio_vs_chroma": ratio(sizes["engramdb_mb"], sizes["chroma_mb"]),
        **_disk_floors(sizes),
        "rss_ratio_vs_chroma": ratio(
            cold_e["median"]["rss_after_warm_searches_mb"],
            cold_c["median"]["rss_after_warm_searches_mb"],
        ),
    }
    report.update(
        {
            "summary": summary,
            "config": {
                **asdict(cfg),
                "synthetic": describe_synthetic(cfg, real_rows),
                "batch": BATCH,
                "top_k": K,
                "search_queries": nq,
                "engramdb_settings": {"synchronous": "FULL", "mode": "vector"},
                "chroma": {
                    "client": "PersistentClient",
                    "space": "cosine",
                    "include": ["documents", "metadatas", "distances"],
                },
            },
            "workload": info,
            "ingest": ingest,
            "search": search,
            "single_add": single,
            "rss_mb": {"in_process_start": rss0, "in_process_end_both_systems": rss_end},
            "disk": sizes,
            "cold_open": {"engramdb": cold_e, "chroma": cold_c},
        }
    )
    return report


def main(
    out_dir: Path,
    records: int,
    quick: bool,
    hash_vectors: bool,
    users: int | None = None,
    queries: int | None = None,
    real_rows: int = REAL_ROWS,
) -> dict[str, Any]:
    """Run with CLI-level options, write ``store.json`` and print the summary."""
    cfg = store_config(records, quick, hash_vectors, users, queries)
    report = run(cfg, cold_runs=1 if quick else 3, real_rows=real_rows)
    return finish(report, out_dir, result_name("store", cfg.records, real_rows), quick)
