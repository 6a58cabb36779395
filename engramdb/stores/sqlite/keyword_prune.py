"""Exact top-k of the derived keyword index without summing every posting (MaxScore).

Why: a namespace-wide keyword search summed every posting of the query's terms in its
scope, about 60 thousand at 100k rows and 600 thousand at a million (20 ms and more, bound
by memory, not by numpy). Most belong to common words, which add too little to lift a row
into the page. MaxScore walks only the lists that can, and looks a candidate up in the
others only while it can still reach the page. The loop runs compiled (numba,
:mod:`~engramdb.stores.sqlite.keyword_kernels`): written with numpy, its per-row
bookkeeping cost more than the postings it skipped (docs/benchmarks.md, "Keyword index").

Rules:

* **Exact.** A row's score is the exhaustive sum's double (the same expression, summed in
  the query's term order), and a row is left out only when an upper bound of its score is
  strictly below the page's last score, so the page, ties by rowid included, is the one
  summing every posting gives.
* **Bounds.** Per segment and term, the largest share one posting adds before its IDF, at
  the average row length ``a0`` of when it was computed; at another average ``a`` it is
  scaled by ``max(1, a / a0)``, which bounds every posting's share again (a row's length
  term shrinks at most by ``a0 / a``). Deleting rows only lowers the true maxima, so a
  segment's bounds hold for its life.
* **Never waited for.** numba is imported and the kernels compiled (or read from numba's
  cache) once per process, in a background thread, and only for an index large enough to
  pay for it (``LOAD_MIN_POSTINGS``); until then, and where numba cannot be loaded,
  searches sum every posting as before.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engramdb.stores.sqlite.keyword_index import KeywordIndex, Segment

# Below this many postings in the searched lists the numpy sum is as fast as pruning.
PRUNE_MIN_POSTINGS = 20_000
# numba costs a process about 90 MB: it is loaded only for an index with a segment of at
# least this many postings (some 50,000 rows), where pruning pays for it.
LOAD_MIN_POSTINGS = 1_000_000

_lock = threading.Lock()
_ready = threading.Event()
_started = False
_kernels: ModuleType | None = None


def kernels() -> ModuleType | None:
    """The compiled kernels when they are ready; otherwise None, after starting to load
    them (once per process)."""
    global _started
    if _kernels is not None:
        return _kernels
    with _lock:
        if not _started:
            _started = True
            threading.Thread(target=_load, name="engramdb-keyword-kernels", daemon=True).start()
    return None


def wait_ready(timeout: float | None = None) -> bool:
    """Block until the kernels are loaded (or failed to load); whether they can be used."""
    kernels()
    _ready.wait(timeout)
    return _kernels is not None


def _load() -> None:
    global _kernels
    try:
        mod = importlib.import_module("engramdb.stores.sqlite.keyword_kernels")
        _warm(mod)
        _kernels = mod
    except Exception:  # noqa: BLE001 - no numba, or it cannot compile here: sum everything
        _kernels = None
    finally:
        _ready.set()


def _warm(mod: ModuleType) -> None:
    """Compile every kernel for the argument types searches pass (or load them from
    numba's cache), on a toy segment."""
    from engramdb.stores.sqlite.keyword_index import DOCLEN, ROW, TF

    i64 = np.arange(3, dtype=np.int64)
    rows = np.arange(3, dtype=ROW)
    counts = np.ones(3, dtype=TF)
    lengths = np.ones(3, dtype=DOCLEN)
    f64 = np.ones(3)
    bounds = mod.term_bounds(np.array([0, 3], np.int64), rows, counts, lengths, 1.0)
    out_r, out_s = np.empty(2, np.int64), np.empty(2)
    spans = np.array([[0, 3]], np.int64)
    mod.top_k(
        spans,
        f64[:1],
        bounds,
        rows,
        counts,
        lengths,
        1.0,
        np.ones(3, bool),
        i64,
        2,
        out_r,
        out_s,
        0.0,
    )


def _after_fork_in_child() -> None:
    """A fork during the load leaves no loading thread in the child: let it start again."""
    global _started, _ready
    if _kernels is None:
        _started = False
        _ready = threading.Event()


os.register_at_fork(after_in_child=_after_fork_in_child)


def segment_bounds(seg: Segment, avgdl: float, mod: ModuleType) -> tuple[np.ndarray, float]:
    """Each term's bound in ``seg``, and the factor that makes them bounds at average
    length ``avgdl`` (see the module's rules; the array is one entry per term of the
    vocabulary, so it is scaled where it is used, not here)."""
    cached = seg.term_bounds
    if cached is None:
        cached = seg.term_bounds = (
            avgdl,
            mod.term_bounds(seg.starts, seg.p_row, seg.p_tf, seg.doclen, avgdl),
        )
    a0, bounds = cached
    return bounds, max(1.0, avgdl / a0)


def prepare(index: KeywordIndex, stopped: Callable[[], bool]) -> None:
    """Load the kernels and compute the bounds of the index's large segments, so that no
    search pays for either (called by the index builder once the index is handed over, and
    after each merge; returns early once ``stopped()``). An index too small to pay for
    numba loads nothing."""
    if all(len(seg.p_row) < LOAD_MIN_POSTINGS for seg in index.segments):
        return
    kernels()
    while not _ready.wait(0.1):
        if stopped():
            return
    mod = kernels()
    if mod is None or index.n_rows == 0:
        return
    avgdl = index.n_tokens / index.n_rows
    for seg in list(index.segments):
        if len(seg.p_row) >= PRUNE_MIN_POSTINGS:
            segment_bounds(seg, avgdl, mod)


def top(
    seg: Segment,
    tids: Sequence[int],
    spans: Sequence[tuple[int, int]],
    idfs: Sequence[float],
    avgdl: float,
    limit: int,
    min_postings: int,
    theta0: float = 0.0,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The best ``limit`` live rows of ``seg`` over the query's postings ``spans`` as
    (rowids, scores), unordered; None when the caller should sum every posting instead
    (too few postings to gain, or the kernels not loaded). ``theta0``: a score the page's
    last one is known to reach, or 0.0 (see ``keyword_kernels.top_k``); rows below it are
    left out."""
    lists = [(t, s, e, idf) for t, (s, e), idf in zip(tids, spans, idfs, strict=True) if s < e]
    if not lists:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    if sum(e - s for _, s, e, _ in lists) < min_postings:
        return None
    mod = _kernels if len(seg.p_row) < LOAD_MIN_POSTINGS else kernels()
    if mod is None:
        return None
    bounds, scale = segment_bounds(seg, avgdl, mod)
    idf = np.array([x[3] for x in lists])
    ubs = idf * (bounds[np.array([x[0] for x in lists], dtype=np.int64)] * scale)
    arr = np.array([(s, e) for _, s, e, _ in lists], dtype=np.int64)
    out_r, out_s = np.empty(limit, np.int64), np.empty(limit)
    n = mod.top_k(
        arr,
        idf,
        ubs,
        seg.p_row,
        seg.p_tf,
        seg.doclen,
        avgdl,
        seg.alive,
        seg.rowids,
        limit,
        out_r,
        out_s,
        theta0,
    )
    return out_r[:n], out_s[:n]
