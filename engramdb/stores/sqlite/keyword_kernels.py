"""The compiled loops of :mod:`~engramdb.stores.sqlite.keyword_prune` (numba).

Imported only by that module's loader, in a background thread: importing numba and
compiling (or reading the compiled cache) takes a second, which no search waits for.

Every score is formed with the expression of ``Segment.scores`` and summed in the query's
term order, so the doubles are the exhaustive sum's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engramdb.stores.sqlite.keyword_index import K1, B

# A bound or partial sum is compared with this much slack above it: sums taken in another
# order than the query's may differ from the true score in the last bits.
SLACK = 1.0 + 1e-9


@njit(cache=True, nogil=True)
def term_bounds(starts, p_row, p_tf, doclen, avgdl):
    """Per term, the largest ``f * (K1 + 1) / (f + K1 * (1 - B + B * dl / avgdl))`` over
    its postings: the most one posting of the term adds, before its IDF."""
    nt = starts.shape[0] - 1
    out = np.zeros(nt)
    for t in range(nt):
        best = 0.0
        for c in range(starts[t], starts[t + 1]):
            f = p_tf[c]
            v = (f * (K1 + 1.0)) / (f + K1 * (1 - B + B * doclen[p_row[c]] / avgdl))
            if v > best:
                best = v
        out[t] = best
    return out


@njit(cache=True, nogil=True)
def _leaves_before(hs, hr, a, b):
    """Whether heap entry ``a`` leaves the page before ``b``: lower score, or the same
    score and a larger rowid (the page breaks ties by rowid)."""
    return hs[a] < hs[b] or (hs[a] == hs[b] and hr[a] > hr[b])


@njit(cache=True, nogil=True)
def _swap(hs, hr, a, b):
    hs[a], hs[b] = hs[b], hs[a]
    hr[a], hr[b] = hr[b], hr[a]


@njit(cache=True, nogil=True)
def _sift_down(hs, hr, n, i):
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and _leaves_before(hs, hr, c + 1, c):
            c += 1
        if not _leaves_before(hs, hr, c, i):
            return
        _swap(hs, hr, c, i)
        i = c


@njit(cache=True, nogil=True)
def _sift_up(hs, hr, i):
    while i > 0:
        p = (i - 1) // 2
        if not _leaves_before(hs, hr, i, p):
            return
        _swap(hs, hr, i, p)
        i = p


@njit(cache=True, nogil=True)
def _seek(p_row, lo, end, d):
    """The first position in [lo, end) whose row is at least ``d`` (galloping forward:
    a non-essential list is probed at rows that only grow)."""
    if lo >= end or p_row[lo] >= d:
        return lo
    step = 1
    hi = lo + 1
    while hi < end and p_row[hi] < d:
        lo = hi
        step *= 2
        hi = lo + step
    if hi > end:
        hi = end
    lo += 1
    while lo < hi:
        mid = (lo + hi) // 2
        if p_row[mid] < d:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def top_k(spans, idfs, ubs, p_row, p_tf, doclen, avgdl, alive, rowids, k, out_r, out_s, theta0):  # noqa: E501
    """MaxScore over the query's postings lists ``spans`` (one per query term, in the
    query's order; ``ubs`` each list's bound): the best ``k`` live rows as (rowid, score)
    in ``out_r``/``out_s``, unordered; returns how many.

    ``theta0``: a score the page's last one is known to reach (0.0: none known). The cuts
    that a full page allows then apply from the first row, and a row scoring below it is
    never kept; the page is the same, since every row of it scores at least that.

    Lists are taken by ascending bound; while the page is full, the lowest lists whose
    bounds together cannot reach its last score are not walked ("non-essential"): only
    rows of the others are candidates, and a candidate looks into the non-essential lists,
    highest bound first, only while its partial sum plus their bounds can still reach the
    page. A row that ties the page's last score may enter it (by rowid), so every cut is
    "strictly below".
    """
    m = spans.shape[0]
    order = np.argsort(ubs)
    prefix = np.empty(m)  # prefix[j]: the bounds of order[0..j] together, with slack
    acc = 0.0
    for j in range(m):
        acc += ubs[order[j]]
        prefix[j] = acc * SLACK
    cur = spans[:, 0].copy()
    end = spans[:, 1]
    contrib = np.zeros(m)
    has = np.zeros(m, np.bool_)
    hs = np.empty(k)
    hr = np.empty(k, np.int64)
    n = 0
    theta = theta0
    cut = theta0 > 0.0  # whether the cuts apply before the page is full
    ess = 0  # order[ess:] are the essential lists
    while cut and ess < m and prefix[ess] < theta:
        ess += 1
    none = np.iinfo(np.int64).max
    while True:
        d = none
        for j in range(ess, m):
            i = order[j]
            if cur[i] < end[i] and p_row[cur[i]] < d:
                d = p_row[cur[i]]
        if d == none:
            break
        tail = K1 * (1 - B + B * doclen[d] / avgdl)
        partial = 0.0
        # A list's share of row d is written out here and below, not called: a helper
        # that steps the cursors is not inlined, and this loop is the search.
        for j in range(ess, m):
            i = order[j]
            c = cur[i]
            if c < end[i] and p_row[c] == d:
                f = p_tf[c]
                v = idfs[i] * ((f * (K1 + 1.0)) / (f + tail))
                contrib[i] = v
                has[i] = True
                partial += v
                cur[i] = c + 1
        keep = alive[d]
        if keep:
            for j in range(ess - 1, -1, -1):
                if (cut or n == k) and (partial + prefix[j]) * SLACK < theta:
                    keep = False
                    break
                i = order[j]
                c = _seek(p_row, cur[i], end[i], d)
                cur[i] = c
                if c < end[i] and p_row[c] == d:
                    f = p_tf[c]
                    v = idfs[i] * ((f * (K1 + 1.0)) / (f + tail))
                    contrib[i] = v
                    has[i] = True
                    partial += v
                    cur[i] = c + 1
        s = 0.0
        for i in range(m):
            if has[i]:
                s += contrib[i]
                has[i] = False
        if not keep or s < theta0:
            continue
        rid = rowids[d]
        if n < k:
            hs[n] = s
            hr[n] = rid
            _sift_up(hs, hr, n)
            n += 1
        elif s > hs[0] or (s == hs[0] and rid < hr[0]):
            hs[0] = s
            hr[0] = rid
            _sift_down(hs, hr, n, 0)
        else:
            continue
        if n == k:
            theta = hs[0]
            while ess < m and prefix[ess] < theta:
                ess += 1
    for j in range(n):
        out_r[j] = hr[j]
        out_s[j] = hs[j]
    return n
