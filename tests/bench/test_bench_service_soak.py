"""The service benchmark's memory soak (``--soak-seconds``): a short run against a real
server takes RSS samples and reports the mixed load; the flatness figure is a least-squares
slope over the run's second half."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.service import Server, namespace_key, seed
from bench.service_soak import FLAT_MB_PER_MIN, soak, summarize_rss


def test_slope_is_taken_over_the_second_half_only() -> None:
    # Growth while warming up (first half) does not count; a level second half is flat.
    points = [(0.0, 100.0), (30.0, 140.0), (60.0, 150.0), (90.0, 150.0), (120.0, 150.0)]
    out = summarize_rss(points, 120.0)
    assert out["rss_mb_start"] == 100.0 and out["rss_mb_end"] == 150.0
    assert out["rss_mb_max"] == 150.0
    assert out["second_half_slope_mb_per_min"] == 0.0 and out["flat"] is True


def test_a_steady_climb_is_not_flat() -> None:
    # 2 MB every 30 s is 4 MB/min, past the limit.
    points = [(t * 30.0, 100.0 + 2.0 * t) for t in range(9)]
    out = summarize_rss(points, 240.0)
    assert out["second_half_slope_mb_per_min"] == pytest.approx(4.0)
    assert FLAT_MB_PER_MIN < 4.0 and out["flat"] is False


def test_too_few_samples_give_no_slope() -> None:
    out = summarize_rss([(0.0, 100.0), (1.0, 101.0)], 1.0)
    assert out["second_half_slope_mb_per_min"] is None and out["flat"] is False


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_against_a_real_server(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'soak.db'}"
    seed(url, 200)
    key = namespace_key(url)
    server = Server(url, 1, tmp_path)
    try:
        server.wait_ready()
        out = soak(server.base, key, "bench", server.rss_mb, 2.0, clients=2, sample_s=0.25)
    finally:
        server.stop()
    assert len(out["samples"]) >= 4, out["samples"]
    assert all(mb > 0 for _, mb in out["samples"])
    assert out["rss_mb_max"] >= max(out["rss_mb_start"], out["rss_mb_end"])
    assert isinstance(out["flat"], bool) and out["flat_limit_mb_per_min"] == FLAT_MB_PER_MIN
    assert "driver_failed" not in out and out["errors"] == 0, out
    # The mix ran: searches and adds answered (deletes start once a caller holds KEEP ids).
    assert out["calls"]["search"]["n"] > 0 and out["calls"]["add"]["n"] > 0
