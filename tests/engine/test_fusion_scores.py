"""Convex fusion's scores: each side min-max scaled over the candidates, then weighted."""

from __future__ import annotations

import math
import random

from engramdb.engine.fusion import convex, minmax

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
        nv, nk = scaled(vec), scaled(kw)
        want = {k: w * nv.get(k, 0.0) + (1 - w) * nk.get(k, 0.0) for k in nv.keys() | nk.keys()}
        assert minmax(vec) == nv
        assert convex(vec, kw, w) == want  # exactly: a missing side adds nothing


def test_equal_or_no_finite_scores() -> None:
    assert minmax({"a": 0.3, "b": 0.3}) == {"a": 1.0, "b": 1.0}
    assert minmax({"a": math.nan, "b": math.inf}) == {"a": 0.0, "b": 0.0}
    assert minmax({"a": 2.0, "b": math.nan, "c": 4.0}) == {"a": 0.0, "b": 0.0, "c": 1.0}
    # Finite scores whose sum overflows are still scaled, not zeroed.
    assert minmax({"a": 1e308, "b": 1e308, "c": 0.0}) == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert minmax({}) == {} and convex({}, {}, 0.7) == {}
