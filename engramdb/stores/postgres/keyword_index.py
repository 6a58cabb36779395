"""A process-local keyword index for PostgreSQL: the chunks' lexemes as numpy postings,
ranked exactly as ``ts_rank`` ranks them.

Why: a keyword search ranked every chunk matching any query word with ``ts_rank``, reading
each match's row (its ``tsvector``) from the heap: for a large user that was thousands of
page reads per query, for a namespace tens of thousands. ``ts_rank`` of the store's OR
query reads nothing but each query lexeme's number of positions in the chunk (see
:func:`rank_share`), so postings of (row, count) per lexeme, sorted by scope, rank a
user's or a namespace's matches in numpy with no row read at all.

The same floats: ``calc_rank_or`` (PostgreSQL's ``tsrank.c``) adds each lexeme's share to
a ``float`` in the query's sorted lexeme order and divides by the number of distinct
lexemes, and :meth:`KeywordIndex.search` does those operations in the same order and the
same precisions (a test compares every score with the server's). Scores reach the engine
as the text form a ``float4`` column gives, so hits are equal to the SQL path's, ties by
chunk id included.

It is derived data and never decides what is visible:

* it is built in a background thread from one snapshot of ``chunks``; until it is ready
  searches rank in SQL;
* before each search it catches up from ``keyword_feed`` (migration 0026), which triggers
  fill in the writing transaction: the rows of every transaction not yet finished at the
  last catch-up's snapshot are read again (transaction ids are not commit order), and
  each named chunk is read in its current state (or removed when gone), which makes
  applying a row twice harmless;
* a TRUNCATE (restore) raises the feed's epoch, and rows pruned past the last catch-up
  raise its floor: either makes the index rebuild;
* the caller reads every hit's chunk and record under the filter.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import psycopg

from engramdb.stores.scoped_postings import scope_run, term_span

log = logging.getLogger(__name__)

USER_BITS = 32  # a scope key is namespace id << USER_BITS | user id
MERGE_SEGMENTS = 8  # more segments than this: all are merged into one
MAX_POSITIONS = 255  # a tsvector keeps at most this many positions of a lexeme
PRUNE_EVERY_S = 60.0  # how often a process prunes the feed
FEED_KEEP_S = 600  # feed rows younger than this are never pruned
FETCH_ROWS = 50_000  # rows per fetch while building
BUILD_RETRY_S = 30.0  # after a failed build, searches rank in SQL this long before another
# A catch-up that finds more new feed rows than this (or than a quarter of the index's
# chunks, if more) rebuilds in the background instead: reading a bulk load's million
# changed chunks one catch-up at a time would hold searches for as long as a build.
CATCH_UP_MAX_ROWS = 50_000
ROW = np.int32
TF = np.int16

# One chunk to index: (chunk id, its record's row id, namespace, user_id).
ChunkRow = tuple[int, int, str, str | None]


def rank_share(positions: int) -> float:
    """What one lexeme with ``positions`` positions (all of weight D) adds to ``ts_rank``
    before the division by the query's lexeme count, as ``calc_rank_or`` computes it:
    ``resj`` summed in ``float``, ``(wjm + resj - wjm / 1) / 1.64493406685`` in ``double``
    (the ``float`` operands widened)."""
    w = np.float32(0.1)
    resj = np.float32(0.0)
    for j in range(max(1, positions)):
        resj = np.float32(resj + np.float32(w / np.float32((j + 1) * (j + 1))))
    return float(np.float32(np.float32(w + resj) - w)) / 1.64493406685


SHARES = np.array([rank_share(n) for n in range(MAX_POSITIONS + 1)], dtype=np.float64)


def score_text(score: np.float32) -> float:
    """A ``float4`` as psycopg reads it from the server's text (the shortest decimal that
    round-trips, widened): what the SQL path's hits carry."""
    return float(str(score))


class Segment:
    """The postings of some chunks: per lexeme, (row, positions) sorted by (scope, row).

    Immutable except ``alive`` (a removed chunk is masked, then dropped by a merge). Rows
    are in scope order (key, then chunk id), so a scope is a run of rows and its share of
    a lexeme's postings is found by bisecting.
    """

    def __init__(
        self,
        ids: np.ndarray,
        rids: np.ndarray,
        keys: np.ndarray,
        p_tid: np.ndarray,
        p_row: np.ndarray,
        p_tf: np.ndarray,
        nterms: int,
    ) -> None:
        order = np.lexsort((ids, keys))
        place = np.empty(len(ids), dtype=np.int64)
        place[order] = np.arange(len(ids), dtype=np.int64)
        self.ids = ids[order].astype(np.int64)
        self.rids = rids[order].astype(np.int64)
        self.keys = keys[order].astype(np.int64)
        self.alive = np.ones(len(ids), dtype=bool)
        rows = place[p_row.astype(np.int64)]
        porder = np.lexsort((rows, p_tid))
        self.p_row = rows[porder].astype(ROW)
        self.p_tf = np.minimum(p_tf[porder], MAX_POSITIONS).astype(TF)
        self.starts = np.searchsorted(p_tid[porder], np.arange(nterms + 1)).astype(np.int64)
        self.scratch = np.zeros(len(ids), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, lo: int, hi: int) -> tuple[int, int]:
        """The run of rows whose scope key is in [lo, hi)."""
        return scope_run(self.keys, lo, hi)

    def postings(self, tid: int, r_lo: int, r_hi: int) -> tuple[int, int]:
        """The span [s, e) of a lexeme's postings on rows [r_lo, r_hi)."""
        return term_span(self.starts, self.p_row, tid, r_lo, r_hi)

    def sums(self, tids: Sequence[int], rows: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Row places and ``float`` sums of the shares of ``tids`` (in that order) for the
        live rows of the run ``rows`` holding any of them."""
        acc = self.scratch
        touched = []
        for tid in tids:
            s, e = self.postings(tid, *rows)
            if s == e:
                continue
            pos = self.p_row[s:e].astype(np.intp)
            # float + double, stored back in a float: calc_rank_or's ``res = res + ...``
            acc[pos] = (acc[pos].astype(np.float64) + SHARES[self.p_tf[s:e]]).astype(np.float32)
            touched.append(pos)
        if not touched:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        # Only touched rows are non-zero (every share is positive): one pass over the run is
        # cheaper than sorting the touched positions, unless they are few against it.
        r_lo, r_hi = rows
        if len(touched) == 1:
            cand = touched[0]
        elif sum(len(t) for t in touched) * 64 < r_hi - r_lo:
            cand = np.unique(np.concatenate(touched))
        else:
            cand = r_lo + np.flatnonzero(acc[r_lo:r_hi] != 0.0)
        sc = acc[cand]
        acc[cand] = 0.0
        live = self.alive[cand]
        return cand[live], sc[live]


def merge(
    segments: Sequence[Segment], nterms: int, alive: Sequence[np.ndarray] | None = None
) -> Segment:
    """One segment holding the live rows of ``segments`` (live by ``alive``, one mask per
    segment, when given: a merge off the lock reads copies taken under it)."""
    ids, rids, keys, p_tid, p_row, p_tf = [], [], [], [], [], []
    base = 0
    for k, seg in enumerate(segments):
        live = seg.alive if alive is None else alive[k]
        newpos = np.cumsum(live) - 1 + base
        ids.append(seg.ids[live])
        rids.append(seg.rids[live])
        keys.append(seg.keys[live])
        tid = np.repeat(np.arange(len(seg.starts) - 1), np.diff(seg.starts))
        keep = live[seg.p_row]
        p_tid.append(tid[keep])
        p_row.append(newpos[seg.p_row[keep]])
        p_tf.append(seg.p_tf[keep])
        base += int(live.sum())
    cat = np.concatenate
    return Segment(cat(ids), cat(rids), cat(keys), cat(p_tid), cat(p_row), cat(p_tf), nterms)


class KeywordIndex:
    """Segments of postings, the lexeme and scope dictionaries, and the feed position."""

    def __init__(self, epoch: int, xmin: int) -> None:
        self.epoch = epoch
        self.xmin = xmin  # the oldest transaction not finished at the last catch-up
        self.applied: dict[int, int] = {}  # feed seq -> xid, of rows at or past xmin
        self.segments: list[Segment] = []
        self.where: dict[int, tuple[Segment, int]] = {}
        self.term_id: dict[str, int] = {}
        self.ns_id: dict[str, int] = {}
        self.user_id: dict[str | None, int] = {}
        self.removed_while_merging: list[int] | None = None  # see plan_merge

    def __len__(self) -> int:
        return len(self.where)

    def key(self, namespace: str, user: str | None) -> int:
        """The scope key of a chunk."""
        ns = self.ns_id.setdefault(namespace, len(self.ns_id))
        uid = self.user_id.setdefault(user, len(self.user_id))
        return (ns << USER_BITS) | uid

    def add(self, chunks: Sequence[ChunkRow], postings: Iterable[tuple[int, str, int]]) -> None:
        """Index ``chunks`` (none indexed yet) with their (chunk id, lexeme, positions)."""
        if not chunks:
            return
        row_of = {c[0]: i for i, c in enumerate(chunks)}
        keys = np.array([self.key(ns, u) for _, _, ns, u in chunks], dtype=np.int64)
        # Typed buffers, not lists: numpy reads them in place (a build runs beside searches,
        # and turning a long list into an array is one call holding the interpreter lock).
        p_tid, p_row, p_tf = array("i"), array("i"), array("i")
        term_id = self.term_id
        for cid, lexeme, n in postings:
            row = row_of.get(cid)
            if row is None:
                continue
            tid = term_id.get(lexeme)
            if tid is None:
                tid = term_id[lexeme] = len(term_id)
            p_tid.append(tid)
            p_row.append(row)
            p_tf.append(n)
        seg = Segment(
            np.array([c[0] for c in chunks], dtype=np.int64),
            np.array([c[1] for c in chunks], dtype=np.int64),
            keys,
            _ints(p_tid),
            _ints(p_row),
            _ints(p_tf),
            len(term_id),
        )
        self.segments.append(seg)
        for i, cid in enumerate(seg.ids.tolist()):
            self.where[cid] = (seg, i)

    def remove(self, chunk_id: int) -> None:
        """Take a chunk out (a no-op for one not indexed)."""
        loc = self.where.pop(chunk_id, None)
        if loc is not None:
            loc[0].alive[loc[1]] = False
            if self.removed_while_merging is not None:
                self.removed_while_merging.append(chunk_id)

    # Every catch-up that found changes adds a segment. Past MERGE_SEGMENTS the small ones
    # (all but the first) are merged where the catch-up runs, which costs what they hold;
    # once they hold a quarter of the first one's rows, everything is merged instead, by a
    # background thread (a whole merge rewrites every posting: seconds at a million
    # chunks), planned and finished under the owner's lock and run without it, with the
    # chunks removed meanwhile journalled and masked in the result.

    def compact(self) -> bool:
        """Merge the small segments when there are too many; True when a whole merge is due."""
        if len(self.segments) <= MERGE_SEGMENTS:
            return False
        base, rest = self.segments[0], self.segments[1:]
        if sum(int(s.alive.sum()) for s in rest) * 4 >= int(base.alive.sum()):
            return True
        seg = merge(rest, len(self.term_id))
        self.segments = [base, seg]
        self.where.update((cid, (seg, i)) for i, cid in enumerate(seg.ids.tolist()))
        return False

    def plan_merge(self) -> tuple[list[Segment], list[np.ndarray], int]:
        """What a whole merge reads (under the owner's lock): the segments, copies of their
        live masks, and the lexeme count; removals are journalled from now on."""
        self.removed_while_merging = []
        segments = list(self.segments)
        return segments, [s.alive.copy() for s in segments], len(self.term_id)

    def finish_merge(self, planned: list[Segment], seg: Segment) -> None:
        """Put the merged segment in place of the planned ones (under the owner's lock)."""
        gone = self.removed_while_merging or []
        self.removed_while_merging = None
        if gone:
            seg.alive[np.isin(seg.ids, np.array(gone, dtype=np.int64))] = False
        done = {id(s) for s in planned}
        self.segments = [seg, *(s for s in self.segments if id(s) not in done)]
        live = np.flatnonzero(seg.alive)
        self.where.update(zip(seg.ids[live].tolist(), ((seg, int(i)) for i in live), strict=True))

    def search(
        self, lexemes: Sequence[str], namespace: str, user: str | None, scoped: bool, limit: int
    ) -> list[tuple[int, int, np.float32]]:
        """The best ``limit`` (chunk id, record row id, ``ts_rank``) of the namespace (of
        one user when ``scoped``) for the OR of ``lexemes``: score descending, then chunk
        id."""
        ns = self.ns_id.get(namespace)
        if ns is None or not lexemes:
            return []
        if scoped:
            uid = self.user_id.get(user)
            if uid is None:
                return []
            lo = (ns << USER_BITS) | uid
            hi = lo + 1
        else:
            lo, hi = ns << USER_BITS, (ns + 1) << USER_BITS
        # calc_rank_or walks the query's distinct lexemes in byte order.
        order = sorted(set(lexemes), key=lambda s: s.encode())
        tids = [self.term_id.get(lex, -1) for lex in order]
        ids_l, rids_l, sums_l = [], [], []
        for seg in self.segments:
            rows, sums = seg.sums(tids, seg.rows_of(lo, hi))
            ids_l.append(seg.ids[rows])
            rids_l.append(seg.rids[rows])
            sums_l.append(sums)
        ids, rids, sums = np.concatenate(ids_l), np.concatenate(rids_l), np.concatenate(sums_l)
        scores = sums / np.float32(len(order))  # float / int in float, as ``res / size``
        if len(ids) > limit:
            kth = np.partition(-scores, limit - 1)[limit - 1]
            keep = -scores <= kth
            ids, rids, scores = ids[keep], rids[keep], scores[keep]
        top = np.lexsort((ids, -scores))[:limit]
        return list(zip(ids[top].tolist(), rids[top].tolist(), scores[top], strict=True))


def _ints(buf: array[int]) -> np.ndarray:
    """An ``array("i")`` as an int32 array, without a copy."""
    return np.frombuffer(buf, dtype=np.int32) if len(buf) else np.empty(0, np.int32)


def _postings(cur: Any) -> Iterable[tuple[int, str, int]]:
    while True:
        rows = cur.fetchmany(FETCH_ROWS)
        if not rows:
            return
        yield from rows


STATE_SQL = (
    "SELECT epoch, floor::text::bigint, pg_snapshot_xmin(pg_current_snapshot())::text::bigint "
    "FROM keyword_feed_state"
)
CHUNK_SQL = "SELECT id, rid, namespace, user_id FROM chunks"
POSTING_SQL = (
    "SELECT c.id, u.lexeme, coalesce(array_length(u.positions, 1), 1) "
    "FROM chunks c CROSS JOIN LATERAL unnest(c.fts) u"
)
FEED_SQL = (
    "SELECT s.epoch, s.floor::text::bigint, "
    "pg_snapshot_xmin(pg_current_snapshot())::text::bigint, f.seq, f.xid::text::bigint, "
    "f.chunk_id, (SELECT min(x.expires_at) FROM records x WHERE x.namespace = %s) "
    "FROM keyword_feed_state s LEFT JOIN LATERAL (SELECT seq, xid, chunk_id FROM keyword_feed "
    "WHERE xid >= %s::text::xid8 LIMIT %s) f ON TRUE"
)
# Feed rows seen at a build: their changes are in it (those of transactions still running
# then are not, and are applied once they show).
SEEN_SQL = "SELECT seq, xid::text::bigint FROM keyword_feed WHERE xid >= %s::text::xid8"
PRUNE_SQL = (
    "WITH gone AS (DELETE FROM keyword_feed WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) "
    "AND at < clock_timestamp() - make_interval(secs => %s) RETURNING xid) "
    "UPDATE keyword_feed_state SET floor = greatest(floor, (SELECT max(xid) FROM gone)) "
    "WHERE EXISTS (SELECT 1 FROM gone)"
)


# The triggers of migration 0026 that fill the feed: without any of them the index could
# miss writes, so it is not built (searches rank in SQL) and doctor reports it.
FEED_TRIGGERS = frozenset(
    {
        "chunks_keyword_feed_insert",
        "chunks_keyword_feed_delete",
        "chunks_keyword_feed_update",
        "chunks_keyword_feed_truncate",
    }
)


def missing_triggers(c: psycopg.Connection[Any]) -> set[str]:
    """The feed triggers that are not on ``chunks`` (or are disabled)."""
    rows = c.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass('chunks') AND tgenabled <> 'D'"
    ).fetchall()
    return set(FEED_TRIGGERS - {str(r[0]) for r in rows})


def build(c: psycopg.Connection[Any]) -> KeywordIndex:
    """The whole index, read in one snapshot (the caller's REPEATABLE READ transaction)."""
    missing = missing_triggers(c)
    if missing:
        raise RuntimeError(f"the keyword feed triggers {sorted(missing)} are missing")
    row = c.execute(STATE_SQL).fetchone()
    assert row is not None
    index = KeywordIndex(int(row[0]), int(row[2]))
    index.applied = {int(r[0]): int(r[1]) for r in c.execute(SEEN_SQL, (str(index.xmin),))}
    chunks = [(int(r[0]), int(r[1]), str(r[2]), r[3]) for r in c.execute(CHUNK_SQL).fetchall()]
    with c.cursor(name="engram_keyword_build") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(POSTING_SQL)
        index.add(chunks, _postings(cur))
    return index


def catch_up(
    index: KeywordIndex, c: psycopg.Connection[Any], namespace: str
) -> tuple[bool, int | None]:
    """Apply every feed row not applied yet (three statements at most). Returns whether
    the index is usable (False: it must be rebuilt, after a TRUNCATE or when rows it needs
    were pruned) and, read in the same statement, the namespace's earliest ``expires_at``
    (None: no record of it expires)."""
    cap = max(CATCH_UP_MAX_ROWS, len(index) // 4) + len(index.applied)
    rows = c.execute(FEED_SQL, (namespace, str(index.xmin), cap)).fetchall()
    epoch, floor, xmin = int(rows[0][0]), int(rows[0][1]), int(rows[0][2])
    expires = None if rows[0][6] is None else int(rows[0][6])
    if epoch != index.epoch or floor >= index.xmin or len(rows) >= cap:
        return False, expires
    fresh = [(int(r[3]), int(r[4]), int(r[5])) for r in rows if r[3] is not None]
    fresh = [f for f in fresh if f[0] not in index.applied]
    if fresh:
        changed = sorted({f[2] for f in fresh})
        for cid in changed:
            index.remove(cid)
        cur = c.execute(CHUNK_SQL + " WHERE id = ANY(%s)", (changed,)).fetchall()
        chunks = [(int(r[0]), int(r[1]), str(r[2]), r[3]) for r in cur]
        if chunks:
            postings = c.execute(POSTING_SQL + " WHERE c.id = ANY(%s)", (changed,)).fetchall()
            index.add(chunks, postings)
        index.applied.update((seq, xid) for seq, xid, _ in fresh)
    index.applied = {s: x for s, x in index.applied.items() if x >= xmin}
    index.xmin = xmin
    return True, expires


class KeywordIndexes:
    """The store's process-local keyword index: built in the background, caught up before
    each search, rebuilt when the feed says so.

    ``read`` opens a read connection on the primary (a context manager), ``write`` a write
    transaction, both from the store's :class:`Database`.
    """

    def __init__(
        self,
        read: Callable[[str, bool], AbstractContextManager[psycopg.Connection[Any]]],
        write: Callable[[str], AbstractContextManager[psycopg.Connection[Any]]],
        min_rows: int,
    ) -> None:
        self._read = read
        self._write = write
        self.min_rows = int(min_rows)
        self._lock = threading.Lock()
        self._index: KeywordIndex | None = None
        self._building = False
        self._closed = False
        self._last_prune = time.monotonic()
        self._pruning = False
        self._checked = (0.0, False)  # (when, whether the store was big enough)
        self._thread: threading.Thread | None = None
        self._failed_at = -BUILD_RETRY_S
        self._merging = False
        self._merge_thread: threading.Thread | None = None
        self._kick_lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """Whether searches use the index."""
        return self._index is not None

    def search(
        self,
        c: psycopg.Connection[Any],
        lexemes: Sequence[str],
        namespace: str,
        user: str | None,
        scoped: bool,
        limit: int,
    ) -> tuple[list[tuple[int, int, np.float32]], int | None] | None:
        """The index's best ``limit`` (chunk id, record row id, score) after catching it up
        on ``c`` (a primary connection), with the namespace's earliest ``expires_at``; None
        when it cannot answer (not built, being built, or in need of a rebuild: the caller
        ranks in SQL)."""
        if self._index is None:
            self._kick(c)
            self.maybe_prune()
            return None
        if not self._lock.acquire(timeout=1.0):
            return None
        try:
            index = self._index
            if index is None:
                return None
            usable, expires = catch_up(index, c, namespace)
            if not usable:
                self._index = None
                self._kick(c)
                return None
            page = index.search(lexemes, namespace, user, scoped, limit)
            if not self._merging and index.compact():
                self._merging = True
                plan = index.plan_merge()
                self._merge_thread = threading.Thread(
                    target=self._merge,
                    args=(index, plan),
                    name="engram-pg-keyword-merge",
                    daemon=True,
                )
                self._merge_thread.start()
        finally:
            self._lock.release()
        self.maybe_prune()
        return page, expires

    def _merge(
        self, index: KeywordIndex, plan: tuple[list[Segment], list[np.ndarray], int]
    ) -> None:
        try:
            seg = merge(plan[0], plan[2], plan[1])
            with self._lock:
                if self._index is index:
                    index.finish_merge(plan[0], seg)
        except Exception:  # the segments stay as they were; the next catch-up plans again
            log.warning("merging the keyword index failed", exc_info=True)
            with self._lock:
                index.removed_while_merging = None
        finally:
            self._merging = False

    def state(self) -> dict[str, Any]:
        """What ``stats`` reports: whether the index is ready, its chunks and segments."""
        index = self._index
        return {
            "ready": index is not None,
            "building": self._building,
            "chunks": len(index) if index is not None else 0,
            "segments": len(index.segments) if index is not None else 0,
        }

    def start(self) -> None:
        """Start a build now if none is ready or running (the store is large enough)."""
        if self._index is None and not self._building:
            with self._read("starting the keyword index", False) as c:
                self._kick(c)

    def drop(self) -> None:
        """Forget the index (the content was replaced): the next search rebuilds it."""
        with self._lock:
            self._index = None

    def close(self) -> None:
        """Stop building and forget the index."""
        self._closed = True
        self.drop()

    def _kick(self, c: psycopg.Connection[Any]) -> None:
        """Start a build in the background when none runs and the store is large enough."""
        with self._kick_lock:
            if self._building or self._closed or self.min_rows < 0:
                return
            self._kick_locked(c)

    def _kick_locked(self, c: psycopg.Connection[Any]) -> None:
        if time.monotonic() - self._failed_at < BUILD_RETRY_S:
            return
        when, big = self._checked
        if time.monotonic() - when > 10.0:
            row = c.execute(
                "SELECT count(*) FROM (SELECT 1 FROM chunks LIMIT %s) s", (self.min_rows,)
            ).fetchone()
            big = row is not None and int(row[0]) >= self.min_rows
            self._checked = (time.monotonic(), big)
        if not big:
            return
        self._building = True
        self._thread = threading.Thread(
            target=self._build, name="engram-pg-keyword-index", daemon=True
        )
        self._thread.start()

    def wait_built(self, timeout_s: float) -> bool:
        """Wait for a running build or merge to finish; whether the index is ready then."""
        for thread in (self._thread, self._merge_thread):
            if thread is not None:
                thread.join(timeout_s)
        return self.ready

    def _build(self) -> None:
        try:
            with self._read("building the keyword index", True) as c:
                index = build(c)
            if not self._closed:
                with self._lock:
                    self._index = index
        except Exception:  # a failed build leaves searches in SQL; a later search retries
            self._failed_at = time.monotonic()
            log.warning("building the keyword index failed", exc_info=True)
        finally:
            self._building = False

    def maybe_prune(self) -> None:
        """Prune the feed in the background when this process has not for a while (searches
        and writes call it: a process that only writes keeps the feed short as well)."""
        if self._pruning or time.monotonic() - self._last_prune < PRUNE_EVERY_S:
            return
        self._pruning = True
        self._last_prune = time.monotonic()
        threading.Thread(target=self._prune, name="engram-pg-keyword-feed", daemon=True).start()

    def _prune(self) -> None:
        try:
            with self._write("pruning the keyword feed") as c:
                c.execute(PRUNE_SQL, (FEED_KEEP_S,))
        except Exception:  # pruning is housekeeping: the next one tries again
            log.warning("pruning the keyword feed failed", exc_info=True)
        finally:
            self._pruning = False
