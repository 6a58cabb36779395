"""The batch thread-count chooser of the MiniLM embedder: pure bookkeeping, no model."""

from __future__ import annotations

from engramdb.embedders.minilm import ThreadChooser


def _run(chooser: ThreadChooser, speed: dict[int, float], batches: int) -> list[int]:
    picked = []
    for _ in range(batches):
        option = chooser.pick()
        picked.append(option)
        chooser.record(option, 100, 100 / speed[option])
    return picked


def test_tries_each_option_then_keeps_the_faster() -> None:
    chooser = ThreadChooser([1, 2])
    picked = _run(chooser, {1: 90.0, 2: 50.0}, 40)
    assert picked[:2] == [1, 2]
    assert picked[2:].count(1) >= 34  # the faster one, apart from the exploring picks
    assert 2 in picked[2:]  # and the other is re-tried now and then


def test_follows_a_change_of_load() -> None:
    chooser = ThreadChooser([1, 2])
    _run(chooser, {1: 90.0, 2: 50.0}, 30)  # busy machine: one thread is faster
    later = _run(chooser, {1: 200.0, 2: 340.0}, 60)  # the machine became idle
    assert later[-20:].count(2) >= 17


def test_single_option_and_bad_timings() -> None:
    chooser = ThreadChooser([1])
    assert _run(chooser, {1: 10.0}, 5) == [1] * 5
    chooser.record(1, 10, 0.0)  # a zero duration is ignored, never a division by zero
    assert chooser.pick() == 1
