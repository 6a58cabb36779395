"""Fusion of ranked lists (vector and keyword) into one ranking."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)  # a candidate's key: its record id, or its record's row id


def rrf(
    rankings: Sequence[Sequence[K]], k: int = 60, weights: Sequence[float] | None = None
) -> dict[K, float]:
    """Reciprocal-rank fusion: ``sum_i w_i / (k + rank_i)`` with ranks starting at 1."""
    scores: dict[K, float] = {}
    for i, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[i]
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + w / (k + rank)
    return scores


def minmax(scores: Mapping[K, float]) -> dict[K, float]:
    """Scale finite scores to [0, 1] over the candidates (all 1.0 when they are equal).

    A missing or non-finite score (a chunk not yet in the vector index) becomes 0.
    """
    if not scores:
        return {}
    values = scores.values()
    # Every search scales both sides: when all scores are finite (their sum is), the
    # bounds need no per-score check.
    if math.isfinite(sum(values)):
        lo, hi = min(values), max(values)
        span = hi - lo
        if span == 0:
            return dict.fromkeys(scores, 1.0)
        return {key: (s - lo) / span for key, s in scores.items()}
    finite = [s for s in values if math.isfinite(s)]
    if not finite:
        return dict.fromkeys(scores, 0.0)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    return {
        key: (1.0 if span == 0 else (s - lo) / span) if math.isfinite(s) else 0.0
        for key, s in scores.items()
    }


def best_scaled(scores: Mapping[K, float]) -> dict[K, float]:
    """Scale scores whose zero means "no match" (BM25) by the best one, into [0, 1].

    Why not min-max: the weakest match of a pool is not "no match". Min-max puts it at 0,
    level with a candidate the side never found, and how weak that last match is depends on
    how many candidates were asked for. Scaled by the best, a candidate keeps the share of
    the best score it earned. A non-finite or negative score becomes 0; without a positive
    best score this is :func:`minmax`.
    """
    if not scores:
        return {}
    values = scores.values()
    hi = max((s for s in values if math.isfinite(s)), default=0.0)
    if hi <= 0:
        return minmax(scores)
    if math.isfinite(sum(values)) and min(values) >= 0:
        return {key: s / hi for key, s in scores.items()}
    return {key: max(s / hi, 0.0) if math.isfinite(s) else 0.0 for key, s in scores.items()}


def convex(
    vector: Mapping[K, float], keyword: Mapping[K, float], vector_weight: float
) -> dict[K, float]:
    """Score fusion: ``w * minmax(vector) + (1 - w) * best_scaled(keyword)``.

    Unlike RRF this keeps how far apart the scores are: a record far ahead on BM25 stays
    ahead even when the vector side ranks it low. A candidate absent from one side scores 0
    there. The vector side is min-max scaled over the candidates (a cosine has no "no
    match": every candidate has one); the keyword side is scaled by its best score, so a
    weak match stays a fraction of a strong one instead of falling to "not found". It ranks
    better than plain or weighted RRF and than min-max on both sides on LoCoMo
    (docs/tuning.md).
    """
    keyword_weight = 1.0 - vector_weight
    fused = {key: vector_weight * s for key, s in minmax(vector).items()}
    for key, s in best_scaled(keyword).items():
        # The same sum as weighting a missing side's 0: adding 0.0 changes no score.
        part = keyword_weight * s
        fused[key] = fused[key] + part if key in fused else part
    return fused


def within_reach(fused: Mapping[K, float], need: int, boost: float) -> list[K]:
    """The candidates that a boost of at most ``boost`` could lift into the first ``need``.

    Why: a boost that reads something per candidate (entities, answer kinds) need only read
    these. One whose score plus the boost stays below the ``need``-th score cannot enter the
    first ``need``, and the order below them does not matter to the page.
    """
    if not fused:
        return []
    scores = sorted(fused.values(), reverse=True)
    floor = scores[min(need, len(scores)) - 1] - boost
    return [key for key, score in fused.items() if score >= floor]
