"""A derived keyword index: the FTS5 table's postings as numpy arrays, scored as FTS5 does.

Why: FTS5's ``bm25()`` scores every row matching any query word before it sorts, and a
hybrid search's ten-word query matches most rows of a large namespace, so the keyword side
cost tens of milliseconds at 30k records (``bench/keyword_probe.py``). Here each term's
postings are sorted by scope (namespace, then user), so a search adds only the asking
scope's postings, vectorised, in the query's word order, with FTS5's own formula and
statistics: the same doubles, hence the same ranking, ties included.

It is derived data (invariant 1) and never decides what is visible:

* it is built from the FTS5 table itself (its own tokens, so stemming, diacritics and the
  index text are today's) by a background thread; until it is ready, searches use FTS5;
* each search catches it up inside its own read snapshot: new rows by rowid watermark
  (rowids only grow), deleted rows from ``chunk_deletes``, rows rewritten in place from
  ``keyword_log``; new and rewritten rows are tokenised by an in-memory FTS5 table with the
  same tokenizer, into small segments, merged by the background thread as they accumulate;
* after each catch-up its row and token totals must equal FTS5's own (the averages
  record): a change that no log names discards it, and searches use FTS5 until a rebuild;
* the caller still reads every hit's record under the filter.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engramdb.stores.scoped_postings import scope_run, term_span
from engramdb.stores.sqlite import keyword_prune

TOKENIZE = "porter unicode61 remove_diacritics 2"  # chunks_fts's tokenizer (migration 0007)
K1, B = 1.2, 0.75  # FTS5's bm25 constants
MERGE_SEGMENTS = 8  # more segments than this: the small ones are merged into one
USER_BITS = 32  # a scope key is namespace id << USER_BITS | user id
BODY = "body"

# One keyword row to index: (rowid, namespace or None for an orphan row, user_id or None).
RowMeta = tuple[int, str | None, str | None]
SIDE_FORMAT = 3  # 1: rows in rowid order, with each posting's scope key; 2: 64-bit arrays
# The per-posting arrays are most of the index, on disk and in memory, so they hold the
# narrowest types their values fit. Counts and positions are integers, and bm25 widens them
# to doubles where it computes, so the scores are the same doubles as from 64-bit copies.
ROW = np.int32  # a row's place in its segment (a segment holds fewer than 2**31 rows)
TF = np.uint32  # a term's count in a row
DOCLEN = np.uint32  # a row's token count
TERM = np.int32  # a term id
MAX_SEGMENT_ROWS = 2**31 - 1
_SEGMENT_ARRAYS = (
    "rowids",
    "keys",
    "doclen",
    "p_row",
    "p_tf",
    "starts",
    "fwd_tids",
    "fwd_starts",
)


class Segment:
    """The postings of some rows: per term, body frequencies sorted by (scope key, row).

    Immutable except ``alive`` (a deleted or rewritten row is masked, then dropped by the
    next merge). ``fwd_*`` list each row's distinct terms in any column, so a delete can
    take the row out of the per-term row counts that FTS5's IDF reads.
    """

    def __init__(
        self,
        rowids: np.ndarray,
        keys: np.ndarray,
        doclen: np.ndarray,
        p_tid: np.ndarray,
        p_row: np.ndarray,
        p_tf: np.ndarray,
        f_tid: np.ndarray,
        f_row: np.ndarray,
        nterms: int,
    ) -> None:
        n = len(rowids)
        if n > MAX_SEGMENT_ROWS:
            raise ValueError(f"a keyword segment holds at most {MAX_SEGMENT_ROWS} rows, not {n}")
        # Rows in scope order (key, then rowid): a scope is a run of rows, so each term's
        # postings, sorted by row, are sorted by scope too, and a scope's share of them is
        # found by bisecting rows, with no scope key stored per posting.
        rorder = np.lexsort((rowids, keys))
        new_pos = np.empty(n, dtype=np.int64)
        new_pos[rorder] = np.arange(n, dtype=np.int64)
        self.rowids = rowids[rorder].astype(np.int64)
        self.keys = keys[rorder].astype(np.int64)
        self.doclen = doclen[rorder].astype(DOCLEN)
        self.alive = np.ones(n, dtype=bool)
        p_row = new_pos[p_row.astype(np.int64)]
        order = np.lexsort((p_row, p_tid))
        self.p_row = p_row[order].astype(ROW)
        self.p_tf = p_tf[order].astype(TF)
        self.starts = np.searchsorted(p_tid[order], np.arange(nterms + 1)).astype(np.int64)
        f_row = new_pos[f_row.astype(np.int64)]
        forder = np.argsort(f_row, kind="stable")
        self.fwd_tids = f_tid[forder].astype(TERM)
        self.fwd_starts = np.searchsorted(f_row[forder], np.arange(n + 1)).astype(np.int64)
        self.init_scratch()

    def narrow(self) -> None:
        """Give arrays read from an older format (64-bit) the types of this one."""
        for name, kind in (("doclen", DOCLEN), ("p_row", ROW), ("p_tf", TF), ("fwd_tids", TERM)):
            setattr(self, name, getattr(self, name).astype(kind, copy=False))

    def init_scratch(self) -> None:
        """The per-search working state and caches (not saved)."""
        self.scratch = np.zeros(len(self.rowids), dtype=np.float64)
        self._norm_of: tuple[float, np.ndarray] | None = None
        # (average length, each term's bound there): see keyword_prune
        self.term_bounds: tuple[float, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.rowids)

    def _norm(self, avgdl: float, build: bool) -> np.ndarray | None:
        """Each row's length term of bm25, ``K1 * (1 - B + B * doclen / avgdl)``: the same
        doubles as computing it per posting, once per row instead of once per matching
        term. It is kept while the average length stays the same (until the next write);
        when it is stale only a wide search (``build``) pays for the whole segment's, since
        one user's few postings are cheaper to compute where they are used."""
        cached = self._norm_of
        if cached is not None and cached[0] == avgdl:
            return cached[1]
        if not build:
            return None
        self._norm_of = (avgdl, K1 * (1 - B + B * self.doclen / avgdl))
        return self._norm_of[1]

    def rows_of(self, lo: int, hi: int) -> tuple[int, int]:
        """The run of rows whose scope key is in [lo, hi)."""
        return scope_run(self.keys, lo, hi)

    def postings(self, tid: int, r_lo: int, r_hi: int) -> tuple[int, int]:
        """The span [s, e) of a term's postings on rows [r_lo, r_hi) (empty: s == e)."""
        return term_span(self.starts, self.p_row, tid, r_lo, r_hi)

    def scores(
        self,
        tids: Sequence[int],
        idfs: Sequence[float],
        rows: tuple[int, int],
        avgdl: float,
        wide: bool,
        top: tuple[int, int, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rowids and bm25 scores of this segment's live rows in the run ``rows`` matching
        any term; each row's sum is formed term by term in the given order, as FTS5 does.
        ``wide``: a namespace-wide search (see :meth:`_norm`). ``top``: (limit, fewest
        postings worth pruning, a score the page's last one reaches or 0.0): only rows that
        can be among the best ``limit`` are needed, so MaxScore may skip the rest (see
        keyword_prune)."""
        r_lo, r_hi = rows
        spans = [self.postings(t, r_lo, r_hi) for t in tids]
        if top is not None:
            best = keyword_prune.top(self, tids, spans, idfs, avgdl, *top)
            if best is not None:
                return best
        acc = self.scratch
        touched = []
        norm = self._norm(avgdl, build=wide)
        for (s, e), idf in zip(spans, idfs, strict=True):
            if s == e:
                continue
            # Widened once here: each mixed-type use below would convert them again.
            pos = self.p_row[s:e].astype(np.intp)
            f = self.p_tf[s:e].astype(np.float64)
            tail = K1 * (1 - B + B * self.doclen[pos] / avgdl) if norm is None else norm[pos]
            # A term has one posting per row, and every term adds a positive score: the rows
            # still at zero are the ones no earlier term touched, so the rows collected are
            # distinct without a sort of all of them.
            touched.append(pos[acc[pos] == 0.0])
            acc[pos] += idf * ((f * (K1 + 1.0)) / (f + tail))
        if not touched:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        cand = touched[0] if len(touched) == 1 else np.concatenate(touched)
        sc = acc[cand]
        acc[cand] = 0.0
        live = self.alive[cand]
        return self.rowids[cand[live]], sc[live]


def merge(
    segments: Sequence[Segment], nterms: int, alive: Sequence[np.ndarray] | None = None
) -> Segment:
    """One segment holding the live rows of ``segments`` (live by ``alive``, one mask per
    segment, when given: a merge off the lock reads copies taken under it)."""
    rowids, keys, doclen = [], [], []
    p_tid, p_row, p_tf, f_tid, f_row = [], [], [], [], []
    base = 0
    for k, seg in enumerate(segments):
        live = seg.alive if alive is None else alive[k]
        newpos = np.cumsum(live) - 1 + base
        rowids.append(seg.rowids[live])
        keys.append(seg.keys[live])
        doclen.append(seg.doclen[live])
        tid = np.repeat(np.arange(len(seg.starts) - 1), np.diff(seg.starts))
        keep = live[seg.p_row]
        p_tid.append(tid[keep])
        p_row.append(newpos[seg.p_row[keep]])
        p_tf.append(seg.p_tf[keep])
        frow = np.repeat(np.arange(len(seg)), np.diff(seg.fwd_starts))
        fkeep = live[frow]
        f_tid.append(seg.fwd_tids[fkeep])
        f_row.append(newpos[frow[fkeep]])
        base += int(live.sum())
    cat = np.concatenate
    return Segment(
        cat(rowids),
        cat(keys),
        cat(doclen),
        cat(p_tid),
        cat(p_row),
        cat(p_tf),
        cat(f_tid),
        cat(f_row),
        nterms,
    )


# A merged segment and where each of its rows is (for ``KeywordIndex.where``).
Merged = tuple[Segment, dict[int, tuple[Segment, int]]]


@dataclass(frozen=True, slots=True)
class MergePlan:
    """Segments to merge, their live masks when planned, and the vocabulary size then."""

    group: list[Segment]
    alive: list[np.ndarray]
    nterms: int

    def merge(self) -> Merged:
        """The merged segment and its rows' places (off the lock: the slow part)."""
        seg = merge(self.group, self.nterms, self.alive)
        return seg, {rowid: (seg, i) for i, rowid in enumerate(seg.rowids.tolist())}


def _ints(buf: array[int]) -> np.ndarray:
    """An ``array("q")`` as an int64 array, without a copy."""
    return np.frombuffer(buf, dtype=np.int64) if len(buf) else np.empty(0, np.int64)


def save(index: KeywordIndex, path: Path) -> None:
    """Write the index as one ``.npz`` file (merged into one segment), atomically."""
    seg = merge(index.segments, len(index.term_id)) if index.segments else None
    meta = {
        "format": SIDE_FORMAT,
        "epoch": index.epoch,
        "n_rows": index.n_rows,
        "n_tokens": index.n_tokens,
        "max_rowid": index.max_rowid,
        "delete_seq": index.delete_seq,
        "log_seq": index.log_seq,
        "namespaces": sorted(index.ns_id, key=index.ns_id.__getitem__),
        "users": sorted(index.user_id, key=index.user_id.__getitem__),
    }
    arrays: dict[str, Any] = {
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        "terms": np.frombuffer(
            "\n".join(sorted(index.term_id, key=index.term_id.__getitem__)).encode(), np.uint8
        ),
        "nhit": index.nhit[: len(index.term_id)],
        "scope_terms": np.array(sorted(index.scope_terms), dtype=np.int64),
    }
    if seg is not None:
        arrays.update({f"seg_{k}": getattr(seg, k) for k in _SEGMENT_ARRAYS})
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def load(path: Path) -> KeywordIndex | None:
    """Read a saved index, or None when there is none or it is unreadable (rebuilt then)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            fmt = meta.get("format")
            if fmt not in (1, 2, SIDE_FORMAT):
                return None
            index = KeywordIndex(str(meta["epoch"]))
            text = bytes(z["terms"]).decode()
            terms = text.split("\n") if text else []
            index.term_id = {t: i for i, t in enumerate(terms)}
            nhit = np.array(z["nhit"], dtype=np.int64)
            index.nhit = np.zeros(max(1024, len(nhit)), dtype=np.int64)
            index.nhit[: len(nhit)] = nhit
            index.scope_terms = set(z["scope_terms"].tolist())
            for key in ("n_rows", "n_tokens", "max_rowid", "delete_seq", "log_seq"):
                setattr(index, key, int(meta[key]))
            index.ns_id = {n: i for i, n in enumerate(meta["namespaces"])}
            index.user_id = {u: i for i, u in enumerate(meta["users"])}
            if "seg_rowids" in z:
                seg = Segment.__new__(Segment)
                for k in _SEGMENT_ARRAYS:
                    setattr(seg, k, np.array(z[f"seg_{k}"]))
                seg.alive = np.ones(len(seg.rowids), dtype=bool)
                seg.narrow()
                seg.init_scratch()
                if fmt == 1:  # rows in rowid order: a merge puts them in scope order
                    seg = merge([seg], len(terms))
                index.segments = [seg]
                index.where = {rid: (seg, i) for i, rid in enumerate(seg.rowids.tolist())}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return index


def fts_totals(c: sqlite3.Connection) -> tuple[int, int] | None:
    """FTS5's own row count and token total (all columns) of ``chunks_fts``, or None when
    its averages record cannot be read (the caller then trusts no derived index)."""
    row = c.execute("SELECT block FROM chunks_fts_data WHERE id = 1").fetchone()
    if row is None:
        return (0, 0)
    try:
        values = _varints(bytes(row[0]))
    except (IndexError, TypeError):
        return None
    if not values:
        return None
    return values[0], sum(values[1:])


def _varints(blob: bytes) -> list[int]:
    """SQLite's varints (big-endian groups of 7 bits; a ninth byte carries 8)."""
    out: list[int] = []
    i = 0
    while i < len(blob):
        v = 0
        for j in range(9):
            byte = blob[i]
            i += 1
            if j == 8:
                v = (v << 8) | byte
                break
            v = (v << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        out.append(v)
    return out


class KeywordIndex:
    """Segments of postings, the statistics FTS5's bm25 reads, and catch-up watermarks."""

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.segments: list[Segment] = []
        self.where: dict[int, tuple[Segment, int]] = {}
        self.term_id: dict[str, int] = {}
        self.nhit = np.zeros(1024, dtype=np.int64)  # rows holding each term, any column
        self.scope_terms: set[int] = set()  # terms seen in the scope column
        self.n_rows = 0
        self.n_tokens = 0
        self.max_rowid = 0
        self.delete_seq = 0
        self.log_seq = 0
        self.ns_id: dict[str, int] = {}
        self.user_id: dict[str | None, int] = {}
        self._tok: sqlite3.Connection | None = None
        self._word_tokens: dict[str, tuple[str, ...]] = {}
        self._removed_while_merging: list[int] | None = None  # see plan_merge
        # Searches whose lists hold at least this many postings in a segment are pruned
        # (None: never; every posting is summed).
        self.prune_min_postings: int | None = keyword_prune.PRUNE_MIN_POSTINGS

    # ------------------------------------------------------------------ building

    def key(self, namespace: str | None, user: str | None) -> int:
        """The scope key of a row (-1 for a row without a record: never searched)."""
        if namespace is None:
            return -1
        ns = self.ns_id.setdefault(namespace, len(self.ns_id))
        uid = self.user_id.setdefault(user, len(self.user_id))
        return (ns << USER_BITS) | uid

    def add_rows(
        self, metas: Sequence[RowMeta], vocab: Iterable[tuple[str, int, str, int]]
    ) -> None:
        """Index rows from their metadata and FTS5 instance counts (term, rowid, column,
        count) as a new segment."""
        if not metas:
            return
        pos_of = {rid: i for i, (rid, _, _) in enumerate(metas)}
        keys = np.array([self.key(ns, u) for _, ns, u in metas], dtype=np.int64)
        doclen = np.zeros(len(metas), dtype=np.int64)
        # Typed buffers, not lists: numpy reads them in place, while converting a list of
        # millions of ints is one call that holds the interpreter lock (see below).
        p_tid, p_row, p_tf = array("q"), array("q"), array("q")
        a_tid, a_row = array("q"), array("q")  # (term, row) of every column, repeats included
        term_id = self.term_id
        for term, doc, col, cnt in vocab:
            row = pos_of.get(doc)
            if row is None:
                continue
            tid = term_id.get(term)
            if tid is None:
                tid = term_id[term] = len(term_id)
            doclen[row] += cnt
            a_tid.append(tid)
            a_row.append(row)
            if col == BODY:
                p_tid.append(tid)
                p_row.append(row)
                p_tf.append(cnt)
            else:
                self.scope_terms.add(tid)
        if len(term_id) > len(self.nhit):
            grown = np.zeros(max(len(term_id), 2 * len(self.nhit)), dtype=np.int64)
            grown[: len(self.nhit)] = self.nhit
            self.nhit = grown
        # Distinct (term, row) pairs in numpy: a sort of Python tuples holds the interpreter
        # lock throughout, stalling every search of the process while a build runs in its
        # background thread.
        n = len(metas)
        pair = np.unique(_ints(a_tid) * n + _ints(a_row))
        f_tid, f_row = pair // n, pair % n
        self.nhit += np.bincount(f_tid, minlength=len(self.nhit))
        seg = Segment(
            np.array([m[0] for m in metas], dtype=np.int64),
            keys,
            doclen,
            _ints(p_tid),
            _ints(p_row),
            _ints(p_tf),
            f_tid,
            f_row,
            len(term_id),
        )
        self.segments.append(seg)
        for i, rid in enumerate(seg.rowids.tolist()):
            self.where[rid] = (seg, i)
        self.max_rowid = max(self.max_rowid, max(m[0] for m in metas))
        self.n_rows += len(metas)
        self.n_tokens += int(doclen.sum())

    def remove(self, rowid: int) -> None:
        """Take a row out (a no-op for a row not indexed)."""
        loc = self.where.pop(rowid, None)
        if loc is None:
            return
        seg, p = loc
        seg.alive[p] = False
        if self._removed_while_merging is not None:
            self._removed_while_merging.append(rowid)
        self.nhit[seg.fwd_tids[seg.fwd_starts[p] : seg.fwd_starts[p + 1]]] -= 1
        self.n_rows -= 1
        self.n_tokens -= int(seg.doclen[p])

    # ------------------------------------------------------------------ merging
    #
    # Every catch-up adds a segment; past MERGE_SEGMENTS they are merged, off the search
    # path: a merge rewrites up to every posting (seconds at a million rows), and the catch-
    # up that ran into it would hold a search that long. The owner's background thread
    # plans a merge under the owner's lock, merges without it, and finishes under it again;
    # rows removed in between are journalled and masked in the merged segment.

    @property
    def merge_due(self) -> bool:
        """Whether there are more segments than searches should visit."""
        return len(self.segments) > MERGE_SEGMENTS

    def plan_merge(self) -> MergePlan | None:
        """What to merge now (under the owner's lock), or None when no merge is due: the
        small segments, and everything once they hold a quarter of the rows, so each
        posting is rewritten O(log n) times over the index's life."""
        if not self.merge_due:
            return None
        base, rest = self.segments[0], self.segments[1:]
        rest_live = sum(int(s.alive.sum()) for s in rest)
        group = list(self.segments) if rest_live * 4 >= int(base.alive.sum()) else rest
        self._removed_while_merging = []
        return MergePlan(group, [s.alive.copy() for s in group], len(self.term_id))

    def abandon_merge(self) -> None:
        """Forget a planned merge that failed (under the owner's lock): the segments stay
        as they are, and removals are no longer journalled."""
        self._removed_while_merging = None

    def finish_merge(self, plan: MergePlan, merged: Merged) -> None:
        """Put the merged segment in place of the planned ones (under the owner's lock)."""
        seg, where = merged
        gone = self._removed_while_merging or []
        self._removed_while_merging = None
        if gone:
            seg.alive[np.isin(seg.rowids, np.array(gone, dtype=np.int64))] = False
            for rowid in gone:
                where.pop(rowid, None)
        planned = {id(s) for s in plan.group}
        kept = [s for s in self.segments if id(s) not in planned]
        first = self.segments[0]
        self.segments = [seg, *kept] if id(first) in planned else [first, seg, *kept[1:]]
        self.where.update(where)

    def tokenize_rows(
        self, rows: Sequence[tuple[int, str, str]]
    ) -> list[tuple[str, int, str, int]]:
        """FTS5 instance counts of (rowid, body, scope) rows, from an in-memory FTS5 table
        with chunks_fts's tokenizer."""
        tok = self._tokenizer()
        tok.executemany("INSERT INTO t(rowid, body, scope) VALUES (?, ?, ?)", rows)
        out = tok.execute(
            "SELECT term, doc, col, count(*) FROM ti GROUP BY term, doc, col"
        ).fetchall()
        tok.execute("DELETE FROM t")
        return out

    def _tokenizer(self) -> sqlite3.Connection:
        if self._tok is None:
            tok = sqlite3.connect(":memory:", check_same_thread=False)
            tok.execute(f"CREATE VIRTUAL TABLE t USING fts5(body, scope, tokenize = '{TOKENIZE}')")
            tok.execute("CREATE VIRTUAL TABLE ti USING fts5vocab(t, instance)")
            self._tok = tok
        return self._tok

    # ------------------------------------------------------------------ searching

    def term_ids(self, words: Sequence[str]) -> list[int] | None:
        """Each query word's term id (-1: in no row), or None when a word is not exactly
        one token or names a scope token (FTS5 would match those differently)."""
        out = []
        for w in words:
            toks = self._word_tokens.get(w)
            if toks is None:
                tok = self._tokenizer()
                tok.execute("INSERT INTO t(rowid, body, scope) VALUES (1, ?, '')", (w,))
                toks = tuple(r[0] for r in tok.execute("SELECT term FROM ti ORDER BY offset"))
                tok.execute("DELETE FROM t")
                if len(self._word_tokens) < 100_000:
                    self._word_tokens[w] = toks
            if len(toks) != 1:
                return None
            tid = self.term_id.get(toks[0], -1)
            if tid in self.scope_terms:
                return None
            out.append(tid)
        return out

    def idf(self, tid: int) -> float:
        """FTS5's IDF of a term over every row of the table."""
        n_hit = int(self.nhit[tid]) if tid >= 0 else 0
        idf = math.log((self.n_rows - n_hit + 0.5) / (n_hit + 0.5))
        return idf if idf > 0.0 else 1e-6

    def search(
        self,
        tids: Sequence[int],
        namespace: str,
        user: str | None,
        scoped: bool,
        limit: int,
        theta0: float = 0.0,
    ) -> list[tuple[int, float]]:
        """The best ``limit`` (rowid, score) of the namespace (or of one of its users, when
        ``scoped``) in FTS5's order: score descending, then rowid. ``theta0``: a score the
        page's last one is known to reach (0.0: none), which lets pruning cut from the
        first row (the keyword floor of ``bench keyword-floor`` passes the page's own)."""
        ns = self.ns_id.get(namespace)
        if ns is None or self.n_rows == 0:
            return []
        if scoped:
            uid = self.user_id.get(user)
            if uid is None:
                return []
            lo = (ns << USER_BITS) | uid
            hi = lo + 1
        else:
            lo, hi = ns << USER_BITS, (ns + 1) << USER_BITS
        avgdl = self.n_tokens / self.n_rows
        idfs = [self.idf(t) for t in tids]
        top = None if self.prune_min_postings is None else (limit, self.prune_min_postings, theta0)
        parts = [
            seg.scores(tids, idfs, seg.rows_of(lo, hi), avgdl, wide=not scoped, top=top)
            for seg in self.segments
        ]
        rowids = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        if len(rowids) > limit:
            kth = np.partition(-scores, limit - 1)[limit - 1]
            keep = -scores <= kth
            rowids, scores = rowids[keep], scores[keep]
        order = np.lexsort((rowids, -scores))[:limit]
        return list(zip(rowids[order].tolist(), scores[order].tolist(), strict=True))


def read_rows(c: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Keyword rows with their record's scope: (rowid, body, scope, namespace, user_id).

    LEFT JOINs keep a keyword row without a chunk (which FTS5 still counts)."""
    return c.execute(
        "SELECT f.rowid, f.body, f.scope, r.namespace, r.user_id FROM chunks_fts f "
        "LEFT JOIN chunks ch ON ch.id = f.rowid LEFT JOIN records r ON r.rid = ch.rid "
        f"WHERE {where} ORDER BY f.rowid",
        args,
    ).fetchall()


def build(c: sqlite3.Connection, epoch: str) -> KeywordIndex:
    """Build the whole index inside the caller's read transaction on ``c``."""
    index = KeywordIndex(epoch)
    index.delete_seq = int(
        c.execute("SELECT coalesce(max(seq), 0) FROM chunk_deletes").fetchone()[0]
    )
    index.log_seq = int(c.execute("SELECT coalesce(max(seq), 0) FROM keyword_log").fetchone()[0])
    metas: list[RowMeta] = [
        (int(r[0]), r[1], r[2])
        for r in c.execute(
            "SELECT f.rowid, r.namespace, r.user_id FROM chunks_fts f "
            "LEFT JOIN chunks ch ON ch.id = f.rowid LEFT JOIN records r ON r.rid = ch.rid "
            "ORDER BY f.rowid"
        )
    ]
    c.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.engram_kw_vocab "
        "USING fts5vocab(main, chunks_fts, instance)"
    )
    vocab = c.execute(
        "SELECT term, doc, col, count(*) FROM temp.engram_kw_vocab GROUP BY term, doc, col"
    )
    index.add_rows(metas, vocab)
    return index


def behind(index: KeywordIndex, c: sqlite3.Connection) -> bool:
    """Whether ``c``'s snapshot is older than the index (another thread caught it up
    further): such a search must not use it, nor judge it by older totals."""
    seqs = dict(
        c.execute(
            "SELECT name, seq FROM sqlite_sequence WHERE name IN ('chunks', 'chunk_deletes', "
            "'keyword_log')"
        ).fetchall()
    )
    return (
        int(seqs.get("chunks", 0)) < index.max_rowid
        or int(seqs.get("chunk_deletes", 0)) < index.delete_seq
        or int(seqs.get("keyword_log", 0)) < index.log_seq
    )


def catch_up(index: KeywordIndex, c: sqlite3.Connection) -> bool:
    """Apply every change committed since the index's watermarks, inside the caller's read
    transaction (not :func:`behind` the index); False when the result does not match
    FTS5's own totals."""
    deletes = c.execute(
        "SELECT seq, chunk_id FROM chunk_deletes WHERE seq > ? ORDER BY seq", (index.delete_seq,)
    ).fetchall()
    rewrites = c.execute(
        "SELECT seq, chunk_id FROM keyword_log WHERE seq > ? ORDER BY seq", (index.log_seq,)
    ).fetchall()
    for _, cid in deletes:
        index.remove(cid)
    old = sorted({cid for _, cid in rewrites if cid <= index.max_rowid})
    for cid in old:
        index.remove(cid)
    rows = read_rows(c, "f.rowid > ?", (index.max_rowid,))
    if old:
        for cid in old:
            rows.extend(read_rows(c, "f.rowid = ?", (cid,)))
    if rows:
        vocab = index.tokenize_rows([(r[0], r[1], r[2]) for r in rows])
        index.add_rows([(int(r[0]), r[3], r[4]) for r in rows], vocab)
    if deletes:
        index.delete_seq = int(deletes[-1][0])
    if rewrites:
        index.log_seq = int(rewrites[-1][0])
    return fts_totals(c) == (index.n_rows, index.n_tokens)
