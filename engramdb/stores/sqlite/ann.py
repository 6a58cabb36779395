"""Approximate nearest neighbours per scope (usearch HNSW), kept off the write path.

A scope is a whole namespace (``user_id`` None: unfiltered searches) or one large user of
it (filtered searches of a user holding many chunks: at 13k chunks the exact scan is the
slowest search of the store benchmark).

Why: an exact scan of a whole namespace is bound by memory bandwidth and grows with it; an
HNSW graph answers in a small, nearly constant time. The graph is derived data like
the exact index (invariant 1), and it never decides what is visible:

* every live chunk of the scope is either in the graph or in ``pending`` (appended by the
  exact index's catch-up, drained by a background thread in small steps), and the search
  scans ``pending`` exactly and merges it, so nothing written is ever invisible;
* a deleted chunk may linger in the graph until it is compacted; every hit is checked against
  the exact index (the source of liveness), so nothing deleted ever appears;
* the graph is saved inside the ``.vindex`` sidecar next to the exact index, and loaded (as
  a memory map) by the background thread, so a cold open neither rebuilds it nor waits for
  it: until it is ready, searches fall back to the exact scan.

``usearch`` is imported lazily (it pulls in ~0.4 s of imports) and only in the worker thread
or when a graph must be saved.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engramdb.native import before_usearch
from engramdb.stores.background import BackgroundWorker

RECALL_TARGET = 0.98  # recall@10 against exact a namespace graph must reach before use
USER_RECALL_TARGET = 0.99  # the same for a user's graph (the filtered search's target)
TIE_EPS = 1e-5  # scores this close to the exact 10th best count as ties
CALIBRATION_QUERIES = 48  # sample queries per calibration (one exact scan each)
SEARCH_K = 64  # neighbours asked of the graph at least (see VectorSearch.vector_candidates)
STEP = 2048  # vectors added to a graph per lock hold: searches wait at most one step
TAIL_MAX = 4096  # above this many pending chunks a search uses the exact scan instead
# The graph keeps its own copy of every vector (HNSW walks need them), stored as int8 (unit
# vectors scaled by 127): the graph only picks candidates, and every hit is rescored in
# float32 from the exact index (VectorIndex.ann_scan), so scores and order among the
# candidates stay exact while the copy shrinks 4x. The calibration below measures recall
# through the quantised graph, so a scope it cannot serve stays on the exact scan.
GRAPH_DTYPE = "i8"


class ExactIndex(Protocol):
    """What the graphs need of the exact index they derive from (``VectorIndex``), named
    here so that this module sits below it: the exact index owns the graphs, not the reverse."""

    lock: threading.RLock
    ann: dict[Any, AnnGraph]

    def scope_chunk_ids(self, namespace: str, user_id: str | None) -> list[int]:
        """The chunk ids of a namespace (``user_id`` None) or of one of its users."""
        ...

    def vectors(self, chunk_ids: list[int]) -> np.ndarray:
        """The vectors of indexed chunks as one matrix (caller holds the lock)."""
        ...

    def indexed_vectors(self, chunk_ids: list[int]) -> tuple[list[int], np.ndarray]:
        """Those of the chunks still indexed, and their vectors (caller holds the lock)."""
        ...

    def scan(
        self, namespace: str, user_id: str | None, query: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, cosine scores) of every row in the scope, exactly."""
        ...


class AnnGraph:
    """The HNSW graph of one scope (a namespace or one of its users) plus the chunks not yet
    in it."""

    def __init__(
        self,
        namespace: str,
        user_id: str | None,
        dim: int,
        connectivity: int,
        ef_search: int,
        ef_add: int,
    ) -> None:
        self.namespace = namespace
        self.user_id = user_id
        self.dim = dim
        self.connectivity = connectivity
        self.ef_search = ef_search
        self.ef_add = ef_add
        self.graph: Any = None  # usearch.index.Index once loaded or built
        self.view = False  # True while the graph is a read-only memory map of the sidecar
        self.file: Path | None = None  # the sidecar file to load, before the worker loads it
        self.pending: list[int] = []  # chunk ids of the scope not in the graph yet
        self.size = 0  # keys in the graph, deleted ones included
        self.stale = 0  # deletes since the graph was built (upper bound of dead keys in it)
        self.failures = 0  # after 3 failed steps the scope stays on the exact scan
        self.calibrated = False  # True once the graph met its recall target on sample queries
        self.dtype = GRAPH_DTYPE  # a loaded sidecar's graph keeps the dtype it was saved with
        self.lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """True when searches may use the graph (loaded, and the exact tail is short)."""
        return (
            self.graph is not None
            and self.calibrated
            and len(self.pending) <= TAIL_MAX
            and self.failures < 3
        )

    def new_graph(self) -> Any:
        """Return an empty usearch index with this graph's parameters."""
        before_usearch()
        from usearch.index import Index

        return Index(
            ndim=self.dim,
            metric="ip",
            dtype=self.dtype,
            connectivity=self.connectivity,
            expansion_add=self.ef_add,
            expansion_search=self.ef_search,
        )

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Return (keys, scores) from the graph and a copy of the pending tail."""
        with self.lock:
            tail = list(self.pending)
            if self.graph is None or self.size == 0:
                return np.empty(0, np.int64), np.empty(0, np.float32), tail
            want = min(self.size, k + min(self.stale, 4 * k))
            # int8 copies hold values in [-1, 1]: the graph walks with the unit query (the
            # order of inner products does not depend on the query's length).
            m = self.graph.search(query / np.linalg.norm(query), want, threads=1)
            keys = np.asarray(m.keys, dtype=np.int64)
            scores = (1.0 - np.asarray(m.distances, dtype=np.float32)).astype(np.float32)
        return keys, scores, tail

    @property
    def recall_target(self) -> float:
        """The recall@10 the calibration must reach (a user's graph serves filtered search)."""
        return RECALL_TARGET if self.user_id is None else USER_RECALL_TARGET

    def reset(self, index: ExactIndex) -> None:
        """Forget the graph: every chunk of the scope becomes pending (a full rebuild)."""
        with index.lock:
            every = sorted(index.scope_chunk_ids(self.namespace, self.user_id))
        with self.lock:
            self.graph, self.view, self.file = None, False, None
            self.pending = every
            self.size = self.stale = 0
            self.dtype = GRAPH_DTYPE

    def step(self, index: ExactIndex) -> bool:
        """Do one unit of background work; return False when there is nothing left to do."""
        if self.failures >= 3:
            return False
        if self.graph is None and self.file is not None:
            if not self._load():
                self.reset(index)
            return True
        if self.graph is not None and self.stale > max(1000, self.size // 4):
            self.reset(index)  # too many dead keys in the graph: rebuild it
            return True
        with self.lock:
            batch = self.pending[:STEP]
        if not batch:
            if not self.calibrated:
                self.calibrate(index)
                return True
            return False
        with index.lock:
            keep, vecs = index.indexed_vectors(batch)
        graph = None
        if self.graph is None:
            graph = self.new_graph()
        elif self.view:  # a memory-mapped graph is read-only: copy it into memory first
            with self.lock:
                graph = self.graph.copy()
        with self.lock:
            if graph is not None:
                self.graph, self.view = graph, False
            if keep:
                self.graph.add(np.asarray(keep, dtype=np.uint64), vecs, threads=1)
                self.size += len(keep)
            del self.pending[: len(batch)]
        return True

    def calibrate(self, index: ExactIndex) -> None:
        """Pick the smallest ``ef`` that reaches the recall target against the exact scan.

        Why: HNSW recall depends on the data (clustered sentence embeddings are easy, random
        high-dimensional vectors nearly hopeless). Each sample query is a stored vector
        pulled halfway towards another (``v1 + 0.5 v2``): near stored content, as a real
        query is. The search breadth doubles (from the setting up to 1024) until recall@10
        is met. A graph that never meets it is not used: the scope stays on the exact scan.

        These samples track the recall of real queries; the midpoints of two stored
        vectors, used before, understated it and held the graph at a needlessly wide (and
        slower) breadth (docs/tuning.md).
        """
        rng = np.random.default_rng(0)
        with index.lock:
            ids = index.scope_chunk_ids(self.namespace, self.user_id)
            if len(ids) < 20:
                self.calibrated = True
                return
            pick = rng.choice(len(ids), size=(CALIBRATION_QUERIES, 2))
            pairs = index.vectors([ids[i] for i in pick.ravel()])
            pairs = pairs.reshape(CALIBRATION_QUERIES, 2, self.dim)
            qs = pairs[:, 0] + 0.5 * pairs[:, 1]
            qs /= np.linalg.norm(qs, axis=1, keepdims=True)
            exact = []
            for q in qs:
                cids, scores = index.scan(self.namespace, self.user_id, q)
                kth = float(np.partition(-scores, 9)[9]) * -1.0
                # Every chunk tied with the 10th best counts as a right answer: duplicate
                # texts give equal vectors, and which of them an exact top-10 keeps is
                # arbitrary (without this, ties made a graph at ef 96 look like recall
                # 0.92 while the benchmark's tie-aware recall on real queries was 0.998).
                exact.append(set(cids[scores >= kth - TIE_EPS].tolist()))
        ef = self.ef_search
        while ef <= 1024:
            with self.lock:
                self.graph.expansion_search = ef
                found = [
                    set(np.asarray(self.graph.search(q, SEARCH_K, threads=1).keys).tolist())
                    for q in qs
                ]
            recall = float(
                np.mean([min(10, len(f & e)) / 10 for f, e in zip(found, exact, strict=True)])
            )
            if recall >= self.recall_target:
                self.ef_search = ef
                self.calibrated = True
                return
            ef *= 2
        self.failures = 3

    def _load(self) -> bool:
        assert self.file is not None
        try:
            graph = self.new_graph()
            graph.view(str(self.file))
        except (RuntimeError, ValueError, OSError):
            return False
        with self.lock:
            if len(graph) != self.size:  # a damaged or mismatched file
                return False
            graph.expansion_search = self.ef_search
            self.graph, self.view = graph, True
        return True

    def save(self, path: Path) -> dict[str, Any] | None:
        """Write the graph to ``path``; return its header entry (None when nothing to save)."""
        with self.lock:
            if self.graph is None:
                return None
            self.graph.save(str(path))
            return {
                "file": path.name,
                "size": self.size,
                "stale": self.stale,
                "ef_search": self.ef_search,
                "calibrated": self.calibrated,
                "dtype": self.dtype,
                "pending": list(self.pending),
            }


class AnnWorker(BackgroundWorker):
    """One daemon thread per store that loads, builds and extends the scopes' graphs."""

    thread_name = "engramdb-ann"

    def __init__(self, index: ExactIndex) -> None:
        super().__init__()
        self.index = index
        self.error: BaseException | None = None

    def _run(self) -> None:
        while not self.stopped:
            busy = False
            for graph in list(self.index.ann.values()):
                if self.stopped:
                    return
                try:
                    busy = graph.step(self.index) or busy
                except Exception as exc:  # a failed graph is rebuilt; searches stay exact
                    self.error = exc
                    graph.failures += 1
                    graph.reset(self.index)
                    busy = False
            if not busy:
                self.wake.clear()
                if not self.wake.wait(timeout=5.0):
                    return
