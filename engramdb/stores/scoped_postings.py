"""Lookups shared by the derived keyword indexes (SQLite's and PostgreSQL's).

Both keep a segment's rows in scope order (namespace, then user, then row id), so a scope is
a run of rows, and each term's postings sorted by row, so a scope's share of a term is a
run of postings found by bisecting: no scope key is stored per posting.
"""

from __future__ import annotations

import numpy as np


def scope_run(keys: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """The run [a, b) of rows whose (sorted) scope key is in [lo, hi)."""
    a, b = np.searchsorted(keys, (lo, hi))
    return int(a), int(b)


def term_span(
    starts: np.ndarray, p_row: np.ndarray, tid: int, r_lo: int, r_hi: int
) -> tuple[int, int]:
    """The span [s, e) of term ``tid``'s postings on rows [r_lo, r_hi) (empty: s == e).

    ``starts[t]`` is where term t's postings begin in ``p_row`` (rows, sorted per term).
    """
    if tid < 0 or tid >= len(starts) - 1:
        return 0, 0
    s, e = int(starts[tid]), int(starts[tid + 1])
    if s == e:
        return 0, 0
    # Needles of the haystack's type: mixed types would copy the whole list to compare.
    a, b = np.searchsorted(p_row[s:e], np.array((r_lo, r_hi), dtype=p_row.dtype))
    return s + int(a), s + int(b)
