"""Vector search over the in-process :class:`VectorIndex`, kept caught up with the file.

The index is derived data: caught up from the tables on every read that follows a commit
(by this process or another), persisted as a sidecar beside the file on close, and dropped
(then rebuilt from the tables) when the vectors change wholesale (restore, re-embedding,
a repair).
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from functools import partial

import numpy as np

from engramdb.deadline import paused
from engramdb.query.filters import Node, is_live_only, live_now
from engramdb.stores.prepared import ChunkHit
from engramdb.stores.rows import row_to_record
from engramdb.stores.sqlite import gates
from engramdb.stores.sqlite.ann import SEARCH_K
from engramdb.stores.sqlite.chunks import chunk_rids, locate_with_records, passing_rids
from engramdb.stores.sqlite.connection import Connections, translate
from engramdb.stores.sqlite.filters import compile_sqlite, first_expiry
from engramdb.stores.sqlite.meta import read_meta
from engramdb.stores.sqlite.vector_index import VectorIndex

_JOIN_CHUNKS = "JOIN chunks c ON c.rid = r.rid"


class VectorSearch:
    """The vector index of this process, and the searches that use it.

    ``ann``: the ANN settings handed to :meth:`VectorIndex.configure` (minimum rows of a
    namespace and of a user, connectivity, ef at search and at insertion).
    """

    def __init__(self, db: Connections, ann: tuple[int, int, int, int, int]) -> None:
        self._db = db
        self._ann = ann
        self._index: VectorIndex | None = None
        self._index_lock = threading.Lock()
        # Per thread, like its reader connection: the data_version the index was caught up
        # at, and the namespaces' earliest expiry at that version.
        self._local = threading.local()
        self._sidecar = db.path.with_name(db.path.name + ".vindex")
        db.after_fork(self._forget_inherited)

    def _forget_inherited(self) -> None:
        """In a forked child: the parent's index may be mid-change under a lock no thread
        here will release, and its ANN worker thread does not exist here: reload from the
        sidecar."""
        self._index = None
        self._index_lock = threading.Lock()
        self._local = threading.local()

    def index(self) -> VectorIndex:
        """Return the vector index, caught up with every commit visible to this process.

        Catching up (and waiting for another thread's catch-up) runs outside the caller's
        read budget: it is shared work, kept for every later search (``deadline.paused``).
        """
        conn = self._db.reader()
        with paused(), self._index_lock:
            try:
                dv = conn.execute("PRAGMA data_version").fetchone()[0]
                if self._index is not None and getattr(self._local, "dv", None) == dv:
                    return self._index
                conn.execute("BEGIN")
                try:
                    epoch = read_meta(conn, "index_epoch") or ""
                    dim_s = read_meta(conn, "embedder_dim")
                    dim = int(dim_s) if dim_s else 0
                    index = self._index
                    if index is None or index.epoch != epoch or index.dim != dim:
                        if index is not None:
                            index.stop()
                        index = VectorIndex.load(self._sidecar, dim, epoch)
                        if index is None:
                            index = VectorIndex(dim=dim, epoch=epoch)
                        elif index.rids_missing:
                            pairs = conn.execute("SELECT id, rid FROM chunks").fetchall()
                            index.fill_rids(np.array(pairs, np.int64).reshape(-1, 2))
                        index.configure(*self._ann)
                    inserts = conn.execute(
                        "SELECT c.id, c.rid, v.vector, r.namespace, r.user_id FROM chunks c "
                        "JOIN chunk_vectors v ON v.chunk_id = c.id "
                        "JOIN records r ON r.rid = c.rid WHERE c.id > ? ORDER BY c.id",
                        (index.max_chunk_id,),
                    ).fetchall()
                    deletes = conn.execute(
                        "SELECT seq, chunk_id FROM chunk_deletes WHERE seq > ? ORDER BY seq",
                        (index.delete_seq,),
                    ).fetchall()
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise translate(exc, "catching up the vector index") from exc
            with index.lock:
                index.apply(inserts, deletes)
            self._index = index
            self._local.dv = dv
            return index

    def indexed_count(self) -> int | None:
        """How many vectors the index holds, or None when it is not loaded."""
        return len(self._index) if self._index is not None else None

    def drop_index(self, remove_sidecar: bool) -> None:
        """Forget the index (the next read rebuilds it), and its sidecar if asked."""
        with self._index_lock:
            self._index = None
            if remove_sidecar:
                shutil.rmtree(self._sidecar, ignore_errors=True)
        self._local.dv = None

    def persist(self) -> None:
        """Stop the index's ANN worker and save the index as the sidecar (best effort)."""
        if self._index is None:
            return
        self._index.stop()
        if len(self._index) > 0:
            try:
                with self._index.lock:
                    self._index.save(self._sidecar)
            except OSError:
                pass

    def vector_candidates(
        self,
        namespace: str,
        query: np.ndarray,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: int = 0,
    ) -> list[ChunkHit]:
        """Return the best chunks by cosine similarity (exact) that pass the filter.

        A large scope is first searched through its ANN graph, when ready, and a filter is
        checked on the graph's best candidates; otherwise (or when too few of them pass) the
        scope's rows are scored exactly. Without a residual filter the top ``limit`` are
        returned directly; with one, the best few are checked in SQL first, and if too many
        fail, the exact set of qualifying chunks is fetched and used as a mask.

        ``with_records``: the hits come located from one statement that applies the whole
        filter (as ``locate`` would), the best ``with_records`` of them with their records,
        so a search without fusion usually reads the store once for its page instead of
        twice (locate, then the page's records). The other hits' records are not read:
        building a row's columns costs more than locating it.
        """
        hits = self._best(namespace, query, user_id, node, limit)
        if not with_records or not hits:
            return hits
        rows = locate_with_records(
            self._db, namespace, [h.chunk_id for h in hits], node, user_id, with_records
        )
        out = []
        for h in hits:
            row = rows.get(h.chunk_id)
            if row is not None:  # gone since the index caught up, or outside the filter
                h.rid, h.located = row[1], (row[2], row[3], row[4], row[5])
                if row[6] is not None:
                    h.record = partial(row_to_record, row, 6)
                out.append(h)
        return out

    def _best(
        self, namespace: str, query: np.ndarray, user_id: str | None, node: Node | None, limit: int
    ) -> list[ChunkHit]:
        """The best chunks of :meth:`vector_candidates`, not yet located."""
        index = self.index()
        if user_id is None and gates.indexed_values(node):
            # A rare tag or metadata value: score just its chunks instead of scanning and
            # masking the whole namespace.
            with self._db.read("filtering vector candidates") as c:
                rare = gates.rare_values(c, namespace, node, gates.LIST_TAG_GATE)
                if rare is not None:
                    sql, args = gates.select_over("c.id", namespace, node, rare, _JOIN_CHUNKS)
                    members = [r[0] for r in c.execute(sql, args)]
            if rare is not None:
                return self._score_members(members, query, limit)
        if node is not None and is_live_only(node) and not self._any_expired(namespace, node):
            node = None  # nothing has expired: the expiry check would pass every chunk
        # A large scope (namespace, or one user with many chunks): its HNSW graph (plus the
        # exact tail it has not absorbed yet), when the background worker has it ready. A
        # residual filter is checked on the graph's best candidates: one that most of the
        # scope passes (a tag every record carries) fills the page from them; a narrower one
        # leaves it short, and the exact scan below answers.
        got = index.ann_scan(namespace, query, max(limit, SEARCH_K), user_id)
        if got is not None:
            probe = _top(got[0], got[1], len(got[0]))
            if node is not None:
                passed = self._passing(namespace, [h.chunk_id for h in probe], node)
                probe = [h for h in probe if h.chunk_id in passed]
            if len(probe) >= limit:
                return probe[:limit]
        with index.lock:
            ids, scores = index.scan(namespace, user_id, query)
            ids = ids.copy()
        if len(ids) == 0:
            return []
        if node is None:
            return _top(ids, scores, limit)
        # Four times the page: a filter passed by a quarter of the scope or more is settled
        # here, checking a few hundred candidates; the mask below reads every record of the
        # namespace that passes it.
        probe = _top(ids, scores, max(limit * 4, 64))
        passed = self._passing(namespace, [h.chunk_id for h in probe], node)
        kept = [h for h in probe if h.chunk_id in passed]
        if len(kept) >= limit or len(probe) == len(ids):
            return kept[:limit]
        with self._db.read("filtering vector candidates") as c:
            if user_id is None:
                sql, args = gates.gated_select(c, "c.id", namespace, node, _JOIN_CHUNKS)
            else:
                where, params = compile_sqlite(node)
                sql = (
                    f"SELECT c.id FROM chunks c JOIN records r ON r.rid = c.rid "
                    f"WHERE r.namespace = ? AND {where} AND r.user_id = ?"
                )
                args = [namespace, *params, user_id]
            allowed = np.fromiter((r[0] for r in c.execute(sql, args)), dtype=np.int64)
        mask = np.isin(ids, allowed)
        return _top(ids[mask], scores[mask], limit)

    def _score_members(self, chunk_ids: list[int], query: np.ndarray, limit: int) -> list[ChunkHit]:
        """The best ``limit`` of the given chunks by exact cosine similarity."""
        ids = np.asarray(chunk_ids, dtype=np.int64)
        scores = self._scores(chunk_ids, query)
        indexed = ~np.isnan(scores)
        return _top(ids[indexed], scores[indexed], limit)

    def _any_expired(self, namespace: str, node: Node) -> bool:
        """True when some record of the namespace has expired by the filter's ``now``.

        One probe of the ``(namespace, expires_at)`` index; when it says no, a search skips
        checking its candidates against the expiry filter in SQL.
        """
        # The earliest expiry of the namespace only changes with a write, so it is kept per
        # reader connection until the connection's data_version moves.
        cache: dict[str, tuple[int, int | None]] = getattr(self._local, "first_expiry", {})
        self._local.first_expiry = cache
        dv = getattr(self._local, "dv", None)
        hit = cache.get(namespace)
        if dv is not None and hit is not None and hit[0] == dv:
            first = hit[1]
        else:
            with self._db.read("checking expiry") as c:
                first = first_expiry(c, namespace)
            if dv is not None:
                cache[namespace] = (dv, first)
        return first is not None and first <= live_now(node)

    def chunk_rids(self, chunk_ids: list[int]) -> dict[int, int]:
        """Map chunk id -> record rowid for the chunks that exist: from the vector index,
        caught up to this read, and from the store for chunks it does not hold yet."""
        index = self.index()
        with index.lock:
            found = index.rids_of(chunk_ids)
        out = {cid: rid for cid, rid in zip(chunk_ids, found, strict=True) if rid is not None}
        if len(out) < len(chunk_ids):
            rest = [cid for cid, rid in zip(chunk_ids, found, strict=True) if rid is None]
            out.update(chunk_rids(self._db, rest))
        return out

    def vector_scores(self, chunk_ids: list[int], query: np.ndarray) -> list[float]:
        """Return the cosine similarity of the query to each chunk (NaN when not indexed)."""
        return [float(x) for x in self._scores(chunk_ids, query)]

    def _scores(self, chunk_ids: list[int], query: np.ndarray) -> np.ndarray:
        """:meth:`vector_scores` as an array: the indexed rows gathered, then one product.

        Candidates of a namespace-wide search come from many users' blocks: a product per
        block cost more than copying each row once.
        """
        index = self.index()
        out = np.full(len(chunk_ids), np.nan, dtype=np.float32)
        with index.lock:
            slots, mat = index.fetch(chunk_ids)
        if len(slots):
            out[slots] = mat @ query
        return out

    def _passing(self, namespace: str, chunk_ids: list[int], node: Node) -> set[int]:
        with self._db.read("filtering candidates") as c:
            return set(passing_rids(c, namespace, chunk_ids, node))


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> list[ChunkHit]:
    """Top-k by score descending, ties broken by chunk id (deterministic)."""
    n = len(ids)
    if n == 0:
        return []
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
        # Include every row tied with the k-th score so the tie-break is by id, not by position.
        kth = scores[part].min()
        part = np.nonzero(scores >= kth)[0]
    else:
        part = np.arange(n)
    order = np.lexsort((ids[part], -scores[part]))[:k]
    sel = part[order]
    # Python numbers from tolist(): converting numpy scalars one by one costs more.
    return [ChunkHit(i, 0, s) for i, s in zip(ids[sel].tolist(), scores[sel].tolist(), strict=True)]
