"""Which candidates a boost could lift into the page: the only ones a ranker reads."""

from __future__ import annotations

import random

from engramdb.engine.fusion import within_reach


def test_a_boost_reads_exactly_the_candidates_it_could_lift_into_the_page() -> None:
    rng = random.Random(4)
    for _ in range(200):
        fused = {f"r{i}": rng.choice([0.0, 0.1, 0.25, 0.5, rng.random()]) for i in range(30)}
        need, boost = rng.randint(1, 35), rng.choice([0.0, 0.1, 0.3, 1.0])
        reach = set(within_reach(fused, need, boost))
        for rid, score in fused.items():
            others = sorted((s for r, s in fused.items() if r != rid), reverse=True)
            # Boosted alone, does it beat (or tie) the need-th best of the others?
            could = len(others) < need or score + boost >= others[need - 1]
            if could:
                assert rid in reach
        # And nothing is read that stays below the page whatever it gains.
        page = sorted(fused.values(), reverse=True)[min(need, len(fused)) - 1]
        assert all(fused[r] + boost >= page for r in reach)


def test_no_candidates_no_reads() -> None:
    assert within_reach({}, 10, 0.5) == []
