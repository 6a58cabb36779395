"""How far two stores' answers to one read agree, and the rollback rules over a window.

Pure functions and a small bookkeeping class, no I/O: the shadow wrapper feeds them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """Share of the top ``k`` ids the two lists have in common (1.0 when both are empty)."""
    top_a, top_b = list(a[:k]), list(b[:k])
    size = max(len(top_a), len(top_b))
    return 1.0 if size == 0 else len(set(top_a) & set(top_b)) / size


def rank_correlation(a: Sequence[str], b: Sequence[str]) -> float:
    """Spearman's rho over the ids both lists hold (1.0 for one or none in common when the
    lists are equal, 0.0 when they share nothing)."""
    pos_b = {x: i for i, x in enumerate(b)}
    common = [x for x in a if x in pos_b]
    n = len(common)
    if n < 2:
        return 1.0 if list(a) == list(b) or n == 1 else 0.0
    rank_b = {x: r for r, x in enumerate(sorted(common, key=pos_b.__getitem__))}
    d2 = sum((i - rank_b[x]) ** 2 for i, x in enumerate(common))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


@dataclass(frozen=True)
class Comparison:
    """One read run on both stores: agreement, both latencies (ms), the new store's error."""

    overlap: float
    same_top: bool
    rank_corr: float
    old_ms: float
    new_ms: float
    error: str | None = None

    def consistent(self, min_overlap: float) -> bool:
        """Same top hit and at least ``min_overlap`` of the top k shared."""
        return self.error is None and self.same_top and self.overlap >= min_overlap


def compare_ids(
    old: Sequence[str], new: Sequence[str], k: int, old_ms: float, new_ms: float
) -> Comparison:
    """Compare two ranked id lists (the old store's first)."""
    same_top = old[:1] == new[:1]
    return Comparison(
        overlap_at_k(old, new, k), same_top, rank_correlation(old[:k], new[:k]), old_ms, new_ms
    )


@dataclass(frozen=True)
class Verdict:
    """The window's figures and, when a rule is broken, which (``reason``)."""

    samples: int
    inconsistency: float
    added_p95_ms: float
    error_rate: float
    reason: str | None


def p95(values: Sequence[float]) -> float:
    """The 95th percentile (nearest rank); 0.0 of nothing."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-95 * len(ordered) // 100) - 1))]


class Window:
    """The last ``size`` comparisons and the three rollback rules over them."""

    def __init__(
        self,
        size: int,
        min_samples: int,
        max_inconsistency: float,
        max_added_p95_ms: float,
        max_error_rate: float,
        min_overlap: float,
    ) -> None:
        self.items: deque[Comparison] = deque(maxlen=size)
        self.min_samples = min_samples
        self.max_inconsistency = max_inconsistency
        self.max_added_p95_ms = max_added_p95_ms
        self.max_error_rate = max_error_rate
        self.min_overlap = min_overlap

    def add(self, comparison: Comparison) -> Verdict:
        """Record a comparison; return the window's verdict."""
        self.items.append(comparison)
        return self.verdict()

    def clear(self) -> None:
        """Forget every comparison (after a rollback or a routing change)."""
        self.items.clear()

    def verdict(self) -> Verdict:
        """The figures, and the first broken rule once there are ``min_samples``."""
        items = list(self.items)
        ok = [c for c in items if c.error is None]
        errors = len(items) - len(ok)
        error_rate = errors / len(items) if items else 0.0
        inconsistent = sum(not c.consistent(self.min_overlap) for c in ok)
        inconsistency = inconsistent / len(ok) if ok else 0.0
        added = p95([c.new_ms for c in ok]) - p95([c.old_ms for c in ok])
        reason = None
        if len(items) >= self.min_samples:
            if error_rate > self.max_error_rate:
                reason = "error_rate"
            elif inconsistency > self.max_inconsistency:
                reason = "inconsistency"
            elif added > self.max_added_p95_ms:
                reason = "latency"
        return Verdict(len(items), inconsistency, added, error_rate, reason)
