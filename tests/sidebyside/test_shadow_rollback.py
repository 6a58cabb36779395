"""Shadow reads against a deliberately degraded new store trip the automatic rollback on each
of the three rules: a wrong embedder (inconsistency), injected latency (added p95), injected
errors (error rate). Each case has a control that does not trip, so the test can fail.

Both stores are real SQLite files holding the same records under the same ids (written
through DualWriteMemory). Latency is injected through a clock the test moves itself, and
each read's comparison is awaited (``wait_idle``) before the next read, so nothing depends
on timing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engramdb import HashEmbedder, Memory, Settings, StoreUnavailableError, ValidationError
from engramdb.sidebyside import DualWriteMemory, ShadowReadMemory

TOPICS = [
    "alice moved to lisbon and loves the tram rides",
    "bob is allergic to peanuts and shellfish",
    "carol plays the cello in a string quartet",
    "dave repairs vintage motorcycles on weekends",
    "erin is learning japanese for a trip to kyoto",
    "frank grows tomatoes and basil on his balcony",
    "grace runs marathons and trains at dawn",
    "heidi collects first editions of detective novels",
]
TEXTS = [f"{t} note {i}" for i in range(6) for t in TOPICS]
QUERIES = [" ".join(t.split()[1:4]) for t in TOPICS] * 10
SETTINGS = Settings(sidebyside_window=40, sidebyside_min_samples=20)


class ScrambledEmbedder:
    """A wrong embedder: a unit vector seeded by the text's hash, unrelated to its words."""

    name = "scrambled-64"
    dim = 64
    max_tokens = 256

    def embed(self, texts: Any, *, query: bool = False) -> np.ndarray:
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "big")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class Clock:
    """Seconds that move only when the test (or a wrapper) moves them."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Degraded:
    """The new store behind injected faults: ``delay_s`` on the clock per read, and a
    StoreUnavailableError on every ``fail_every``-th read."""

    def __init__(self, inner: Memory, clock: Clock, delay_s: float = 0.0, fail_every: int = 0):
        self.inner, self.clock, self.delay_s, self.fail_every = inner, clock, delay_s, fail_every
        self.reads = 0

    def search(self, query: str, **kwargs: Any) -> Any:
        self.reads += 1
        self.clock.now += self.delay_s
        if self.fail_every and self.reads % self.fail_every == 0:
            raise StoreUnavailableError("injected: the new store is down")
        return self.inner.search(query, **kwargs)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Memory, Memory, Memory]]:
    """The old store, a faithful new store, and a new store built with a wrong embedder,
    all holding TEXTS under the same ids."""
    old = Memory(f"sqlite:///{tmp_path / 'old.db'}", embedder=HashEmbedder(64))
    new = Memory(f"sqlite:///{tmp_path / 'new.db'}", embedder=HashEmbedder(64))
    wrong = Memory(f"sqlite:///{tmp_path / 'wrong.db'}", embedder=ScrambledEmbedder())
    with DualWriteMemory(old, new, tmp_path / "q1", drain=False) as d1:
        results = d1.add(TEXTS, user_id="u")
    wrong.add(
        [{"id": r.record.id, "text": r.record.text} for r in results if r.record], user_id="u"
    )
    yield old, new, wrong
    for m in (old, new, wrong):
        m.close()


def _run(reads: ShadowReadMemory, n: int = len(QUERIES)) -> None:
    for q in QUERIES[:n]:
        page = reads.search(q, user_id="u", top_k=5, mode="vector")
        assert page.hits  # the caller always gets an answer
        reads.wait_idle()


def _rollbacks(reason: str) -> float:
    from prometheus_client import REGISTRY

    return (
        REGISTRY.get_sample_value("engramdb_sidebyside_rollbacks_total", {"reason": reason}) or 0.0
    )


def test_a_wrong_embedder_trips_the_inconsistency_rule(
    stores: tuple[Memory, Memory, Memory], caplog: pytest.LogCaptureFixture
) -> None:
    old, new, wrong = stores
    with ShadowReadMemory(old, new, sample=1.0, read_from_new=50, settings=SETTINGS) as control:
        _run(control)
        assert control.rollbacks == 0 and control.read_from_new == 50
        assert control.last_verdict is not None and control.last_verdict.inconsistency == 0.0
    before = _rollbacks("inconsistency")
    with ShadowReadMemory(old, wrong, sample=1.0, read_from_new=50, settings=SETTINGS) as reads:
        with caplog.at_level(logging.ERROR, logger="engramdb.sidebyside"):
            _run(reads)
        assert reads.rollbacks == 1 and reads.rolled_back and reads.read_from_new == 0
        assert reads.last_rollback is not None and reads.last_rollback.reason == "inconsistency"
        assert reads.last_rollback.inconsistency > 0.001
        assert "rolled back to the old store (inconsistency)" in caplog.text
        assert _rollbacks("inconsistency") == before + 1


@pytest.mark.parametrize(("delay_ms", "trips"), [(150, True), (60, False)])
def test_added_p95_latency_trips_the_latency_rule(
    stores: tuple[Memory, Memory, Memory], delay_ms: int, trips: bool
) -> None:
    old, new, _ = stores
    clock = Clock()
    slow = Degraded(new, clock, delay_s=delay_ms / 1000)
    with ShadowReadMemory(
        old, slow, sample=1.0, read_from_new=20, settings=SETTINGS, clock=clock
    ) as reads:
        _run(reads)
        assert reads.last_verdict is not None
        if trips:
            assert reads.last_rollback is not None and reads.last_rollback.reason == "latency"
            assert reads.last_rollback.added_p95_ms == pytest.approx(150)
            assert reads.read_from_new == 0
        else:
            assert reads.rollbacks == 0 and reads.read_from_new == 20
            assert reads.last_verdict.added_p95_ms == pytest.approx(60)


@pytest.mark.parametrize(("fail_every", "trips"), [(10, True), (0, False)])
def test_errors_trip_the_error_rate_rule_and_never_reach_the_caller(
    stores: tuple[Memory, Memory, Memory], fail_every: int, trips: bool
) -> None:
    old, new, _ = stores
    flaky = Degraded(new, Clock(), fail_every=fail_every)
    with ShadowReadMemory(old, flaky, sample=0.5, read_from_new=50, settings=SETTINGS) as reads:
        _run(reads)  # asserts every read answered, also those the new store failed
        if trips:
            assert reads.last_rollback is not None and reads.last_rollback.reason == "error_rate"
            assert reads.new_errors >= 1 and reads.read_from_new == 0
        else:
            assert reads.rollbacks == 0 and reads.new_errors == 0


class Counting:
    def __init__(self, inner: Any, gate: threading.Event | None = None) -> None:
        self.inner, self.gate, self.calls = inner, gate, 0

    def search(self, query: str, **kwargs: Any) -> Any:
        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(30)
        return self.inner.search(query, **kwargs)


def test_routing_is_a_share_changeable_at_run_time(stores: tuple[Memory, Memory, Memory]) -> None:
    old, new, _ = stores
    o, n = Counting(old), Counting(new)
    with ShadowReadMemory(o, n, sample=0.0, read_from_new=30, settings=SETTINGS) as reads:
        _run(reads, 20)
        assert (o.calls, n.calls) == (14, 6)
        reads.set_read_from_new(100)
        _run(reads, 10)
        assert (o.calls, n.calls) == (14, 16)
        reads.set_read_from_new(0)
        _run(reads, 10)
        assert (o.calls, n.calls) == (24, 16)
        for bad in (101, -1, 2.5, True):
            with pytest.raises(ValidationError, match="read_from_new"):
                reads.set_read_from_new(bad)  # type: ignore[arg-type]


def test_the_shadow_read_runs_off_the_callers_path(stores: tuple[Memory, Memory, Memory]) -> None:
    old, new, _ = stores
    gate = threading.Event()
    blocked = Counting(new, gate)
    with ShadowReadMemory(old, blocked, sample=1.0, settings=SETTINGS) as reads:
        page = reads.search(QUERIES[0], user_id="u", mode="vector")  # returns while the
        assert page.hits and reads.compared == 0  # shadow read still waits on the gate
        gate.set()
        reads.wait_idle()
        assert reads.compared == 1 and blocked.calls == 1


def test_the_cli_changes_a_running_share_and_shows_a_rollback(
    stores: tuple[Memory, Memory, Memory], tmp_path: Path
) -> None:
    import json

    from click.testing import CliRunner

    from engramdb.cli import cli

    old, _, wrong = stores
    control = tmp_path / "routing.json"
    o, n = Counting(old), Counting(wrong)
    reads = ShadowReadMemory(o, n, sample=0.0, settings=SETTINGS, control_path=control)
    assert json.loads(control.read_text())["read_from_new"] == 0
    res = CliRunner().invoke(cli, ["read-from-new", "50", "--control", str(control)])
    assert res.exit_code == 0, res.output
    _run(reads, 10)  # the running wrapper picks the change up on its next read
    assert reads.read_from_new == 50 and (o.calls, n.calls) == (5, 5)
    res = CliRunner().invoke(cli, ["read-from-new", "101", "--control", str(control)])
    assert res.exit_code == 2
    # the wrong embedder trips a rollback, which the operator then sees in the file
    reads.close()
    reads = ShadowReadMemory(old, wrong, sample=1.0, settings=SETTINGS, control_path=control)
    assert reads.read_from_new == 50  # the operator's share outlives a restart
    _run(reads)
    assert reads.rolled_back
    res = CliRunner().invoke(cli, ["--json", "read-from-new", "--control", str(control)])
    shown = json.loads(res.output)
    assert (
        shown["read_from_new"] == 0 and shown["rolled_back"] and shown["reason"] == "inconsistency"
    )
    reads.close()
    again = ShadowReadMemory(old, wrong, sample=1.0, settings=SETTINGS, control_path=control)
    assert again.read_from_new == 0  # a rollback stays one across a restart
    again.close()
