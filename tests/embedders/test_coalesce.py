"""The coalescer: concurrent single items run as shared batches, each caller gets its row.

No model and no timing: a batch function that holds its first call until the others are
queued makes the batches' shapes deterministic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from engramdb.embedders.coalesce import Coalescer


def rows_of(items: Sequence[int]) -> np.ndarray:
    return np.array([[float(i), float(i) * 2] for i in items], dtype=np.float32)


def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.001)


def run_concurrently(coalescer: Coalescer[int], items: list[int]) -> dict[int, np.ndarray]:
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            results[i] = coalescer.submit(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def test_a_lone_item_runs_alone_and_gets_its_row() -> None:
    batches: list[list[int]] = []

    def run(items: Sequence[int]) -> np.ndarray:
        batches.append(list(items))
        return rows_of(items)

    c = Coalescer(run, window_s=0.0, max_items=8)
    assert c.submit(7).tolist() == [7.0, 14.0]
    assert batches == [[7]]


def test_items_queued_during_a_run_share_the_next_batch() -> None:
    batches: list[list[int]] = []
    c: Coalescer[int]

    def run(items: Sequence[int]) -> np.ndarray:
        batches.append(list(items))
        if len(batches) == 1:  # hold the first batch until every other caller is queued
            wait_for(lambda: len(c._pending) == 9)
        return rows_of(items)

    c = Coalescer(run, window_s=0.0, max_items=64)
    first = threading.Thread(target=c.submit, args=(0,))
    first.start()
    wait_for(lambda: bool(batches))
    results = run_concurrently(c, list(range(1, 10)))
    first.join(60)
    assert batches[0] == [0]
    assert sorted(batches[1]) == list(range(1, 10))
    assert len(batches) == 2
    for i, row in results.items():
        assert row.tolist() == [float(i), float(i) * 2]
    assert (c.batches, c.items) == (2, 10)


def test_a_batch_never_exceeds_max_items() -> None:
    batches: list[list[int]] = []
    c: Coalescer[int]

    def run(items: Sequence[int]) -> np.ndarray:
        batches.append(list(items))
        if len(batches) == 1:
            wait_for(lambda: len(c._pending) == 10)
        return rows_of(items)

    c = Coalescer(run, window_s=0.0, max_items=4)
    first = threading.Thread(target=c.submit, args=(0,))
    first.start()
    wait_for(lambda: bool(batches))
    results = run_concurrently(c, list(range(1, 11)))
    first.join(60)
    assert [len(b) for b in batches] == [1, 4, 4, 2]
    assert sorted(i for b in batches for i in b) == list(range(11))
    assert all(row[0] == i for i, row in results.items())


def test_a_full_batch_does_not_wait_out_the_window() -> None:
    batches: list[list[int]] = []

    def run(items: Sequence[int]) -> np.ndarray:
        batches.append(list(items))
        return rows_of(items)

    # The window is longer than the test's timeout: only a full batch can start the run.
    c = Coalescer(run, window_s=3600.0, max_items=6)
    results = run_concurrently(c, list(range(6)))
    assert [sorted(b) for b in batches] == [list(range(6))]
    assert len(results) == 6


def test_a_failing_batch_raises_in_every_caller_of_that_batch() -> None:
    calls = 0
    c: Coalescer[int]

    def run(items: Sequence[int]) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            wait_for(lambda: len(c._pending) == 3)
        if calls == 2:
            raise RuntimeError("encoder broke")
        return rows_of(items)

    c = Coalescer(run, window_s=0.0, max_items=8)
    outcomes: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            outcomes[i] = c.submit(i).tolist()
        except RuntimeError as exc:
            outcomes[i] = str(exc)

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    wait_for(lambda: calls == 1)
    threads += [threading.Thread(target=call, args=(i,)) for i in (1, 2, 3)]
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes == {0: [0.0, 0.0], 1: "encoder broke", 2: "encoder broke", 3: "encoder broke"}
    # The coalescer is usable again afterwards (calls after the second run succeed).
    calls = -10
    assert c.submit(5).tolist() == [5.0, 10.0]


def test_a_wrong_row_count_is_an_error_for_the_batch() -> None:
    c = Coalescer(lambda items: rows_of([1, 2]), window_s=0.0, max_items=8)
    with pytest.raises(ValueError, match="returned 2 rows"):
        c.submit(1)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Coalescer(rows_of, window_s=-1.0, max_items=8)
    with pytest.raises(ValueError):
        Coalescer(rows_of, window_s=0.0, max_items=0)
    with pytest.raises(ValueError):
        Coalescer(rows_of, window_s=0.0, max_items=8, lanes=0)


def test_batches_run_side_by_side_up_to_the_lane_count() -> None:
    """Each run holds until another runs beside it, so one lane would never finish; the
    last run alone has no partner and goes once every other item is done."""
    lock = threading.Lock()
    active = 0
    most = 0
    finished = 0

    def run(items: Sequence[int]) -> np.ndarray:
        nonlocal active, most, finished
        with lock:
            active += 1
            most = max(most, active)
        wait_for(lambda: active == 2 or finished == 5)
        with lock:
            active -= 1
            finished += 1
        return rows_of(items)

    c = Coalescer(run, window_s=0.0, max_items=1, lanes=2)
    results = run_concurrently(c, list(range(6)))
    assert most == 2
    assert (c.batches, c.items) == (6, 6)
    assert all(row.tolist() == [float(i), float(i) * 2] for i, row in results.items())
