"""An in-process exact vector index derived from the store's rows.

Why: an exact scan over one user's contiguous rows is the fastest filtered search (the common
case: an agent searches its user's memories) and has perfect recall. Vectors are kept in
blocks per (namespace, user_id), each a contiguous float32 matrix with swap-remove deletes, so
a user-scoped search is one matrix-vector product over exactly that user's rows.

The index is derived data (invariant 1): it is caught up from the store by chunk-id watermark
(inserts) and by the ``chunk_deletes`` log (deletes), persisted beside the database file as a
sidecar folder and loaded with ``mmap`` on open, so a cold start does not re-read every
vector; a sidecar that does not match the store's ``index_epoch`` is ignored and rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import ThreadpoolController

from engramdb.stores.sqlite.ann import AnnGraph, AnnWorker
from engramdb.stores.sqlite.chunk_map import ChunkMap, Location

BlockKey = tuple[str, str]
# An ANN scope: (namespace, None) for the whole namespace, (namespace, user) for one user.
ScopeKey = tuple[str, str | None]
_BLAS: list[Any] | None = None


class _OneBlasThread:
    """Sets every BLAS library to one thread, and back to what each had on exit.

    The thread counts are the process's, and scans run in several threads at once: the
    first scan in sets one thread and keeps the counts it found, the last one out puts
    them back. (Each scan keeping its own would let a scan that entered inside another
    one's keep "one thread" as the counts to restore, and leave the process there.) A
    child forked while a scan runs has no thread to leave it, so it restores the counts
    (as ``engine/gc_pause.py`` does for the collector).
    """

    __slots__ = ("_libs",)
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _inside: ClassVar[int] = 0
    _before: ClassVar[list[int]] = []

    def __init__(self, libs: list[Any]) -> None:
        self._libs = libs

    def __enter__(self) -> None:
        cls = _OneBlasThread
        with cls._lock:
            if cls._inside == 0:
                cls._before = [lib.get_num_threads() for lib in self._libs]
                for lib in self._libs:
                    lib.set_num_threads(1)
            cls._inside += 1

    def __exit__(self, *exc: object) -> None:
        cls = _OneBlasThread
        with cls._lock:
            cls._inside -= 1
            if cls._inside == 0:
                for lib, n in zip(self._libs, cls._before, strict=True):
                    lib.set_num_threads(n)

    @staticmethod
    def reset_in_child() -> None:
        """The forking thread's scans do not exist in the child: restore the counts there."""
        cls = _OneBlasThread
        cls._lock = threading.Lock()
        if cls._inside and _BLAS is not None:
            for lib, n in zip(_BLAS, cls._before, strict=True):
                lib.set_num_threads(n)
        cls._inside = 0


os.register_at_fork(after_in_child=_OneBlasThread.reset_in_child)


def one_blas_thread() -> Any:
    """Run a large matrix-vector product on one BLAS thread (a context manager).

    Why: on a busy 2-core machine OpenBLAS's second thread waits for a core and stretches the
    tail of every whole-namespace scan; one thread costs nothing at the median. It is done
    per scan rather than process-wide (the host application's own numpy keeps its setting),
    so it talks to threadpoolctl's BLAS controllers, found once, directly: its ``limit``
    re-reads every library's state on each call, several times the cost of the switch.
    """
    global _BLAS
    if _BLAS is None:
        _BLAS = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _OneBlasThread(_BLAS)


# From this many rows OpenBLAS splits a matrix-vector product over its threads; below it the
# product runs on one thread anyway and limiting would only add its own cost.
ONE_THREAD_ROWS = 1024


def scores_of(mat: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``mat @ query``, on one BLAS thread when the product is large enough to be split.

    Why: a user's block of a few thousand rows is split too, and on a loaded machine the
    second thread's wait for a core turns a sub-millisecond scan into tens of milliseconds
    at the tail, exactly as for a whole-namespace scan (:func:`one_blas_thread`).
    """
    if len(mat) < ONE_THREAD_ROWS:
        return np.asarray(mat @ query)
    with one_blas_thread():
        return np.asarray(mat @ query)


SIDE_FORMAT = 3
# Format 2 lacks each row's record rowid: it loads, and the rowids are read from the store
# once (``fill_rids``) instead of rebuilding the index and its graphs.
RIDS_FROM_STORE_FORMAT = 2


@dataclass
class Block:
    """The rows of one (namespace, user_id) scope: vectors, their chunk ids, and each
    chunk's record rowid (a search fuses its candidates on records without reading them)."""

    mat: np.ndarray
    ids: np.ndarray
    rids: np.ndarray
    n: int = 0
    owned: bool = True

    @classmethod
    def empty(cls, dim: int, cap: int = 16, n: int = 0) -> Block:
        """A block with room for ``cap`` rows, of which the first ``n`` are to be filled."""
        return cls(
            np.empty((cap, dim), np.float32), np.empty(cap, np.int64), np.empty(cap, np.int64), n
        )

    def append(self, chunk_id: int, rid: int, vec: np.ndarray) -> int:
        """Add one row; return its position."""
        if not self.owned or self.n == len(self.ids):
            grown = Block.empty(self.mat.shape[1], max(16, self.n * 2), self.n)
            grown.mat[: self.n] = self.mat[: self.n]
            grown.ids[: self.n] = self.ids[: self.n]
            grown.rids[: self.n] = self.rids[: self.n]
            self.mat, self.ids, self.rids, self.owned = grown.mat, grown.ids, grown.rids, True
        self.mat[self.n] = vec
        self.ids[self.n] = chunk_id
        self.rids[self.n] = rid
        self.n += 1
        return self.n - 1

    def make_owned(self) -> None:
        """Copy a memory-mapped block into process memory before changing it."""
        if not self.owned:
            self.mat = np.array(self.mat[: self.n], dtype=np.float32)
            self.ids = np.array(self.ids[: self.n], dtype=np.int64)
            self.rids = np.array(self.rids[: self.n], dtype=np.int64)
            self.owned = True


@dataclass
class VectorIndex:
    """Blocks of vectors by scope, the position of every chunk, and catch-up watermarks."""

    dim: int
    epoch: str = ""
    blocks: dict[BlockKey, Block] = field(default_factory=dict)
    where: ChunkMap = field(default_factory=ChunkMap)
    max_chunk_id: int = 0
    delete_seq: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    ns_rows: dict[str, int] = field(default_factory=dict)
    ann: dict[ScopeKey, AnnGraph] = field(default_factory=dict)
    ann_min_rows: int = 20_000
    ann_min_user_rows: int = 5_000
    ann_connectivity: int = 16
    ann_ef_search: int = 96
    ann_ef_add: int = 128
    worker: AnnWorker | None = None
    # One contiguous matrix of each namespace's rows for exact whole-namespace scans: one
    # matrix-vector product instead of one per user block (1,000 small products cost ~40x
    # more). Built on the first such scan, extended by appends, dropped by a delete. While
    # a namespace's rows are still those loaded from the sidecar, it is a view of the
    # mapped file (they lie there in one run, see ``save``), not a second copy in memory.
    flat: dict[str, Block] = field(default_factory=dict)
    # The sidecar's mapped matrix, chunk ids and record rowids, and the run of rows of each
    # namespace in it.
    loaded: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    loaded_runs: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Loaded from a sidecar without record rowids: ``fill_rids`` must run before a search.
    rids_missing: bool = False

    def __len__(self) -> int:
        return len(self.where)

    def configure(
        self, min_rows: int, min_user_rows: int, connectivity: int, ef_search: int, ef_add: int
    ) -> None:
        """Set the ANN parameters (from Settings)."""
        self.ann_min_rows = min_rows
        self.ann_min_user_rows = min_user_rows
        self.ann_connectivity = connectivity
        self.ann_ef_search = ef_search
        self.ann_ef_add = ef_add
        for graph in self.ann.values():
            graph.connectivity, graph.ef_add = connectivity, ef_add
            graph.ef_search = max(graph.ef_search, ef_search) if graph.calibrated else ef_search

    def add(self, key: BlockKey, chunk_id: int, rid: int, vec: np.ndarray) -> None:
        """Index one chunk vector of record ``rid`` under its scope (ignored when already
        present)."""
        if chunk_id in self.where:
            return
        block = self.blocks.get(key)
        if block is None:
            block = Block.empty(self.dim)
            self.blocks[key] = block
        self.where[chunk_id] = (key, block.append(chunk_id, rid, vec))
        if chunk_id > self.max_chunk_id:
            self.max_chunk_id = chunk_id
        ns = key[0]
        self.ns_rows[ns] = self.ns_rows.get(ns, 0) + 1
        flat = self.flat.get(ns)
        if flat is not None:
            if flat.owned:
                flat.append(chunk_id, rid, vec)
            else:  # a view of the mapped file: appending would copy it whole
                del self.flat[ns]
        for scope in ((ns, None), key):
            graph = self.ann.get(scope)
            if graph is not None:
                graph.pending.append(chunk_id)  # atomic; the worker drains the head

    def remove(self, chunk_id: int) -> None:
        """Drop one chunk (swap-remove keeps the block contiguous); unknown ids are ignored."""
        loc = self.where.pop(chunk_id, None)
        if loc is None:
            return
        key, pos = loc
        self.ns_rows[key[0]] -= 1
        self.flat.pop(key[0], None)
        for scope in ((key[0], None), key):
            graph = self.ann.get(scope)
            if graph is not None:
                graph.stale += 1
        block = self.blocks[key]
        block.make_owned()
        last = block.n - 1
        if pos != last:
            moved = int(block.ids[last])
            block.mat[pos] = block.mat[last]
            block.ids[pos] = moved
            block.rids[pos] = block.rids[last]
            self.where[moved] = (key, pos)
        block.n -= 1
        if block.n == 0:
            del self.blocks[key]

    def scan(
        self, namespace: str, user_id: str | None, query: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (chunk_ids, cosine scores) of every row in the scope, exactly."""
        if user_id is not None:
            block = self.blocks.get((namespace, user_id))
            if block is None or block.n == 0:
                return np.empty(0, np.int64), np.empty(0, np.float32)
            return block.ids[: block.n], scores_of(block.mat[: block.n], query)
        flat = self.flat.get(namespace)
        if flat is None:
            flat = self._flatten(namespace)
        if flat.n == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        return flat.ids[: flat.n], scores_of(flat.mat[: flat.n], query)

    def _flatten(self, namespace: str) -> Block:
        """Build the namespace's contiguous matrix (caller holds the lock): a view of the
        mapped sidecar while its rows are those loaded, else a copy."""
        parts = [b for (ns, _), b in self.blocks.items() if ns == namespace and b.n]
        n = sum(b.n for b in parts)
        run = self.loaded_runs.get(namespace)
        # Unowned blocks are unchanged since the load (a change copies a block first), so
        # when every block is and they still add up to the run, the run is exactly them.
        if run is not None and self.loaded is not None and all(not b.owned for b in parts):
            start, end = run
            if end - start == n:
                mat, ids, rids = self.loaded
                flat = Block(mat[start:end], ids[start:end], rids[start:end], n, owned=False)
                self.flat[namespace] = flat
                return flat
        flat = Block.empty(self.dim, max(16, n + n // 8), n)
        off = 0
        for b in parts:
            flat.mat[off : off + b.n] = b.mat[: b.n]
            flat.ids[off : off + b.n] = b.ids[: b.n]
            flat.rids[off : off + b.n] = b.rids[: b.n]
            off += b.n
        self.flat[namespace] = flat
        return flat

    def chunk_ids(self) -> set[int]:
        """Return every indexed chunk id (for doctor)."""
        return set(self.where)

    def rids_of(self, chunk_ids: list[int]) -> list[int | None]:
        """Each chunk's record rowid, None for a chunk not indexed or whose rowid is unknown
        (caller holds the lock)."""
        out: list[int | None] = [None] * len(chunk_ids)
        idx, rows, rest = self.where.split(chunk_ids)
        if len(idx):
            assert self.loaded is not None
            for i, rid in zip(idx.tolist(), self.loaded[2][rows].tolist(), strict=True):
                out[i] = rid if rid > 0 else None
        for i in rest:
            loc = self.where.get(chunk_ids[i])
            if loc is not None:
                rid = int(self.blocks[loc[0]].rids[loc[1]])
                out[i] = rid if rid > 0 else None
        return out

    def fetch(self, chunk_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The indexed ones of the chunks: their positions in ``chunk_ids`` and their vectors
        (caller holds the lock). Rows still as loaded come from the mapped sidecar in one
        indexing step; the rest are copied one by one."""
        idx, rows, rest = self.where.split(chunk_ids)
        found = [(i, loc) for i in rest if (loc := self.where.get(chunk_ids[i])) is not None]
        k = len(idx)
        slots = np.empty(k + len(found), np.int64)
        mat = np.empty((k + len(found), self.dim), np.float32)
        if k:
            assert self.loaded is not None
            slots[:k] = idx
            mat[:k] = self.loaded[0][rows]
        blocks = self.blocks
        for j, (i, (key, pos)) in enumerate(found, start=k):
            slots[j] = i
            mat[j] = blocks[key].mat[pos]
        return slots, mat

    def fill_rids(self, pairs: np.ndarray) -> None:
        """Give the rows loaded from a format-2 sidecar their record rowids, from the store's
        ``(chunk id, rid)`` pairs; a loaded chunk the store no longer has keeps 0 (unknown)
        until the catch-up removes it."""
        if self.loaded is not None and len(pairs):
            _, ids, rids = self.loaded
            order = np.argsort(pairs[:, 0], kind="stable")
            known, owner = pairs[order, 0], pairs[order, 1]
            pos = np.minimum(np.searchsorted(known, ids), len(known) - 1)
            rids[:] = np.where(known[pos] == ids, owner[pos], 0)
        self.rids_missing = False

    def scope_chunk_ids(self, namespace: str, user_id: str | None) -> list[int]:
        """Return the chunk ids of a namespace (``user_id`` None) or of one of its users."""
        if user_id is not None:
            block = self.blocks.get((namespace, user_id))
            return [] if block is None else block.ids[: block.n].tolist()
        out: list[int] = []
        for (ns, _), block in self.blocks.items():
            if ns == namespace:
                out.extend(block.ids[: block.n].tolist())
        return out

    def vectors(self, chunk_ids: list[int]) -> np.ndarray:
        """Return the vectors of indexed chunks as one (n, dim) matrix (caller holds the lock).

        Raises:
            KeyError: one of the chunks is not indexed.
        """
        locations = self.where.locate(chunk_ids)
        for cid, loc in zip(chunk_ids, locations, strict=True):
            if loc is None:
                raise KeyError(cid)
        return self.gather(locations)  # type: ignore[arg-type]

    def indexed_vectors(self, chunk_ids: list[int]) -> tuple[list[int], np.ndarray]:
        """Return those of the chunks still indexed, and their vectors (caller holds the lock)."""
        found = self.where.locate(chunk_ids)
        keep = [cid for cid, loc in zip(chunk_ids, found, strict=True) if loc is not None]
        return keep, self.gather([loc for loc in found if loc is not None])

    def gather(self, locations: list[Location]) -> np.ndarray:
        """Return the vectors at these locations as one (n, dim) matrix (caller holds the lock)."""
        if locations and all(key == locations[0][0] for key, _ in locations):
            # One block (a user's graph, or its exact tail): one indexing step.
            return self.blocks[locations[0][0]].mat[[pos for _, pos in locations]]
        out = np.empty((len(locations), self.dim), np.float32)
        blocks = self.blocks
        for i, (key, pos) in enumerate(locations):
            out[i] = blocks[key].mat[pos]
        return out

    # ------------------------------------------------------------------ ANN

    def ann_scan(
        self, namespace: str, query: np.ndarray, k: int, user_id: str | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Return (chunk_ids, scores) of about the best ``k`` rows by ANN, or None.

        The scope is the namespace (``user_id`` None) or one of its users. None means "use
        the exact scan": the scope is small, or its graph is not ready yet (the background
        worker is loading or building it). The graph's hits are checked against the exact
        index (deleted chunks, and chunks no longer in the scope, dropped) and the pending
        tail is scored exactly, so the result contains every chunk the exact index holds
        that ranks in the top ``k`` with high probability and never a deleted one.
        """
        if user_id is None:
            if self.ns_rows.get(namespace, 0) <= self.ann_min_rows:
                return None
        else:
            block = self.blocks.get((namespace, user_id))
            if block is None or block.n <= self.ann_min_user_rows:
                return None
        scope: ScopeKey = (namespace, user_id)
        graph = self.ann.get(scope)
        if graph is None:
            with self.lock:
                graph = self.ann.get(scope)
                if graph is None:
                    graph = AnnGraph(
                        namespace,
                        user_id,
                        self.dim,
                        self.ann_connectivity,
                        self.ann_ef_search,
                        self.ann_ef_add,
                    )
                    graph.pending = sorted(self.scope_chunk_ids(namespace, user_id))
                    self.ann[scope] = graph
        if graph.pending or graph.graph is None:
            self.kick()
        if not graph.ready:
            return None
        keys, _, tail = graph.search(query, k)
        with self.lock:
            # Graph hits must still be indexed, and in the user's block for a user graph;
            # the pending tail is the scope's own, so it only needs to be still indexed.
            candidates = keys.tolist() + [int(c) for c in tail]
            if user_id is None:  # any indexed chunk of the namespace's graph or tail counts
                slots, mat = self.fetch(candidates)
                keys = np.asarray(candidates, np.int64)[slots]
                return keys, scores_of(mat, query).astype(np.float32, copy=False)
            block_key = (namespace, user_id)
            from_graph = len(keys)
            kept: list[int] = []
            rows: list[Location] = []
            for i, loc in enumerate(self.where.locate(candidates)):
                if loc is None or (i < from_graph and loc[0] != block_key):
                    continue
                kept.append(candidates[i])
                rows.append(loc)
            keys = np.asarray(kept, np.int64)
            # The graph's scores are approximate (int8 copies): every candidate is
            # rescored from the exact float32 rows, so a score never depends on the graph.
            scores = scores_of(self.gather(rows), query).astype(np.float32, copy=False)
        return keys, scores

    def kick(self) -> None:
        """Start (or wake) the background worker that loads and extends the graphs."""
        if self.worker is None:
            self.worker = AnnWorker(self)
        self.worker.kick()

    def stop(self) -> None:
        """Stop the background worker (before saving or closing)."""
        if self.worker is not None:
            self.worker.stop()

    # ------------------------------------------------------------ persistence

    def save(self, folder: Path) -> None:
        """Write the index atomically to ``folder`` (a temp folder renamed into place)."""
        with self.lock:
            # A namespace's blocks in one run, so that a whole-namespace scan after the next
            # load reads them in place (``_flatten``).
            keys = sorted((k for k, b in self.blocks.items() if b.n), key=lambda k: k[0])
            total = sum(self.blocks[k].n for k in keys)
            mat = np.empty((total, self.dim), np.float32)
            ids = np.empty(total, np.int64)
            rids = np.empty(total, np.int64)
            table = []
            off = 0
            for k in keys:
                b = self.blocks[k]
                mat[off : off + b.n] = b.mat[: b.n]
                ids[off : off + b.n] = b.ids[: b.n]
                rids[off : off + b.n] = b.rids[: b.n]
                table.append([k[0], k[1], off, b.n])
                off += b.n
            header: dict[str, Any] = {
                "format": SIDE_FORMAT,
                "dim": self.dim,
                "epoch": self.epoch,
                "max_chunk_id": self.max_chunk_id,
                "delete_seq": self.delete_seq,
                "blocks": table,
                "ann": [],
            }
            folder.parent.mkdir(parents=True, exist_ok=True)
            prefix = f"{folder.name}.tmp{os.getpid()}-"
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=folder.parent))
            try:
                # Graphs are saved under the same lock as the blocks, so that the graph plus
                # its pending list cover exactly the chunks the saved blocks hold.
                scopes = sorted(self.ann.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
                for n, ((ns, user), graph) in enumerate(scopes):
                    entry = graph.save(tmp / f"ann-{n}.usearch")
                    if entry is not None:
                        header["ann"].append({"namespace": ns, "user": user, **entry})
            except (OSError, RuntimeError, ValueError):
                header["ann"] = []  # a graph is derived: without it, it is rebuilt later
        try:
            np.save(tmp / "vectors.npy", mat)
            np.save(tmp / "ids.npy", ids)
            np.save(tmp / "rids.npy", rids)
            (tmp / "index.json").write_text(json.dumps(header))
            _fsync_folder(tmp)  # the rename below must never publish unwritten blocks
            old = folder.with_name(folder.name + f".old{os.getpid()}")
            if folder.exists():
                os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, folder: Path, dim: int, epoch: str) -> VectorIndex | None:
        """Load a sidecar written by :meth:`save`; None when absent, damaged or stale."""
        remove_orphans(folder)
        try:
            header = json.loads((folder / "index.json").read_text())
            fmt = header["format"]
            if fmt not in (SIDE_FORMAT, RIDS_FROM_STORE_FORMAT):
                return None
            if header["dim"] != dim or header["epoch"] != epoch:
                return None
            # Still the mapped file, seen as a plain ndarray: every slice or row of a
            # np.memmap goes through its Python-level __getitem__ and __array_finalize__,
            # and a search takes one per scan and one per ANN candidate it rescores.
            mat = np.asarray(np.load(folder / "vectors.npy", mmap_mode="r"))
            ids = np.load(folder / "ids.npy")
            if fmt == SIDE_FORMAT:
                rids = np.load(folder / "rids.npy")
            else:
                rids = np.zeros(len(ids), np.int64)
            if len(rids) != len(ids):
                return None
        except (OSError, ValueError, KeyError):
            return None
        index = cls(dim=dim, epoch=epoch)
        index.max_chunk_id = int(header["max_chunk_id"])
        index.delete_seq = int(header["delete_seq"])
        table = []
        for ns, user, off, n in header["blocks"]:
            key = (ns, user)
            rows = slice(off, off + n)
            index.blocks[key] = Block(mat[rows], ids[rows], rids[rows], n, owned=False)
            table.append((key, off, n))
            index.ns_rows[ns] = index.ns_rows.get(ns, 0) + n
        index.where = ChunkMap.loaded(ids, table)
        index.loaded = (mat, ids, rids)
        index.rids_missing = fmt != SIDE_FORMAT
        index.loaded_runs = namespace_runs(table)
        for entry in header.get("ann", []):
            user = entry.get("user")  # absent in sidecars written before user graphs
            graph = AnnGraph(entry["namespace"], user, dim, 16, 96, 128)
            graph.file = folder / entry["file"]
            graph.size = int(entry["size"])
            graph.stale = int(entry["stale"])
            graph.calibrated = bool(entry.get("calibrated", False))
            graph.ef_search = int(entry.get("ef_search", 96))
            graph.dtype = str(entry.get("dtype", "f32"))  # absent: saved before quantised graphs
            graph.pending = [int(c) for c in entry["pending"]]
            index.ann[(entry["namespace"], user)] = graph
        return index

    def apply(
        self,
        inserts: Iterable[tuple[int, int, bytes, str, str]],
        deletes: Iterable[tuple[int, int]],
    ) -> None:
        """Apply a catch-up batch: (chunk_id, rid, vector bytes, namespace, user) and
        (seq, chunk_id)."""
        for chunk_id, rid, blob, ns, user in inserts:
            self.add((ns, user), chunk_id, rid, np.frombuffer(blob, dtype=np.float32))
        for seq, chunk_id in deletes:
            self.remove(chunk_id)
            if seq > self.delete_seq:
                self.delete_seq = seq


def namespace_runs(table: list[tuple[BlockKey, int, int]]) -> dict[str, tuple[int, int]]:
    """Each namespace whose blocks lie in one gapless run of the sidecar: its (start, end).

    Sidecars written before ``save`` grouped blocks by namespace may interleave them; such
    a namespace has no run, and its whole-namespace scans copy its rows as before.
    """
    spans: dict[str, list[tuple[int, int]]] = {}
    for (ns, _), off, n in table:
        spans.setdefault(ns, []).append((off, off + n))
    runs = {}
    for ns, parts in spans.items():
        parts.sort()
        if all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False)):
            runs[ns] = (parts[0][0], parts[-1][1])
    return runs


def _fsync_folder(folder: Path) -> None:
    """Flush every file of ``folder`` and the folder itself to disk."""
    for path in folder.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_orphans(folder: Path) -> None:
    """Remove temp and old copies of the sidecar left by processes that died mid-save.

    Each is named after the pid that wrote it; one whose process is gone is garbage (a save
    in progress in a live process is left alone).
    """
    for path in folder.parent.glob(f"{folder.name}.*"):
        rest = path.name[len(folder.name) + 1 :]
        digits = rest.removeprefix("tmp").removeprefix("old").split("-", 1)[0]
        if rest[:3] not in ("tmp", "old") or not digits.isdigit():
            continue
        if not _pid_alive(int(digits)):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
