"""Convex fusion's scores: the vector side min-max scaled over the candidates, the keyword
side scaled by its best score, then weighted."""

from __future__ import annotations

import math
import random

from engramdb.engine.fusion import best_scaled, convex, minmax

NON_FINITE = [math.nan, math.inf, -math.inf]


def scaled(scores: dict[str, float]) -> dict[str, float]:
    """The definition: finite scores scaled to [0, 1] over the finite ones (1.0 when they
    are equal), anything else 0."""
    finite = [s for s in scores.values() if math.isfinite(s)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    return {
        k: (0.0 if not math.isfinite(s) else 1.0 if hi == lo else (s - lo) / (hi - lo))
        for k, s in scores.items()
    }


def by_best(scores: dict[str, float]) -> dict[str, float]:
    """The definition: each score over the best finite one, negatives and non-finite
    scores 0; min-max when no score is positive."""
    hi = max((s for s in scores.values() if math.isfinite(s)), default=0.0)
    if hi <= 0:
        return scaled(scores)
    return {k: max(s / hi, 0.0) if math.isfinite(s) else 0.0 for k, s in scores.items()}


def side(rng: random.Random, keys: list[str]) -> dict[str, float]:
    out = {}
    for k in rng.sample(keys, rng.randint(0, len(keys))):
        r = rng.random()
        out[k] = rng.choice(NON_FINITE) if r < 0.05 else 0.5 if r < 0.15 else rng.uniform(-1, 9)
    return out


def test_fused_scores_follow_the_definition_whatever_the_sides_hold() -> None:
    rng = random.Random(7)
    keys = [f"r{i}" for i in range(25)]
    for _ in range(2000):
        vec, kw = side(rng, keys), side(rng, keys)
        w = rng.choice([0.0, 0.5, 0.7, 1.0, rng.random()])
        nv, nk = scaled(vec), by_best(kw)
        want = {k: w * nv.get(k, 0.0) + (1 - w) * nk.get(k, 0.0) for k in nv.keys() | nk.keys()}
        assert minmax(vec) == nv
        assert best_scaled(kw) == nk
        assert convex(vec, kw, w) == want  # exactly: a missing side adds nothing


def test_equal_or_no_finite_scores() -> None:
    assert minmax({"a": 0.3, "b": 0.3}) == {"a": 1.0, "b": 1.0}
    assert minmax({"a": math.nan, "b": math.inf}) == {"a": 0.0, "b": 0.0}
    assert minmax({"a": 2.0, "b": math.nan, "c": 4.0}) == {"a": 0.0, "b": 0.0, "c": 1.0}
    # Finite scores whose sum overflows are still scaled, not zeroed.
    assert minmax({"a": 1e308, "b": 1e308, "c": 0.0}) == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert minmax({}) == {} and convex({}, {}, 0.7) == {}


def test_keyword_scores_keep_their_share_of_the_best() -> None:
    # The weakest match stays a fraction of the best, not "not found" (min-max's 0).
    assert best_scaled({"a": 8.0, "b": 2.0, "c": 6.0}) == {"a": 1.0, "b": 0.25, "c": 0.75}
    assert minmax({"a": 8.0, "b": 2.0, "c": 6.0})["b"] == 0.0
    # Asking for fewer candidates moves no remaining candidate's scaled score.
    assert best_scaled({"a": 8.0, "c": 6.0}) == {"a": 1.0, "c": 0.75}
    assert best_scaled({"a": 4.0, "b": -1.0, "c": math.nan}) == {"a": 1.0, "b": 0.0, "c": 0.0}
    # No positive score: there is no best to scale by, so min-max.
    assert best_scaled({"a": -1.0, "b": -3.0}) == {"a": 1.0, "b": 0.0}
    assert best_scaled({"a": 0.0}) == {"a": 1.0} and best_scaled({}) == {}
