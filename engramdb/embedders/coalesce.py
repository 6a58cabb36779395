"""Coalesce single items from concurrent callers into shared batch calls.

:class:`Coalescer` lets every caller :meth:`~Coalescer.submit` its item and block; one of
them, the *collector*, waits until ``window_s`` has passed since the oldest waiting item
arrived (or ``max_items`` are waiting), takes the waiting items as one batch, runs the batch
function once for all of them and hands each caller its row. Items that arrive while a batch
runs form the next batch.

A batch pays off where the batch function has a per-call cost that its items share (an HTTP
round trip, a Python-level pipeline); where the cost is per item (a small encoder's matrix
products on a CPU, which cost about the same per text at 1 or 64 texts) it does not, and
what matters is that the calls keep every core busy. So up to ``lanes`` batches run at once:
as soon as one batch is taken, the next caller may collect the next one. With one lane a
process's concurrent single calls would run one after another on one core however many
cores it has.

Callers take turns: a caller collects and runs until its own item is done, and a caller
whose item is in a batch another caller runs waits for that batch. A failing batch raises
the same exception in every caller whose item was in it. No thread is started; callers do
all the work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class _Request(Generic[T]):
    __slots__ = ("arrived", "error", "item", "result", "taken")

    def __init__(self, item: T) -> None:
        self.item = item
        self.arrived = time.monotonic()
        self.taken = False  # in a batch (running, or about to)
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None


class Coalescer(Generic[T]):
    """Run ``run(items)`` once for items submitted by concurrent callers.

    Args:
        run: the batch function; returns one row per item, in order. With ``lanes`` > 1 it
            is called from several threads at once and must be thread-safe.
        window_s: how long the oldest waiting item may wait for company (0: run at once
            with whatever is waiting, which still batches the items that arrive during a run).
        max_items: the largest batch; a full batch runs without waiting out the window.
        lanes: how many batches may run at once. One caller at a time collects a batch;
            once it runs, the next caller may collect the next one while fewer than
            ``lanes`` run. An encoder that releases the GIL then uses as many cores as
            lanes, where one lane would leave all but one idle between batches.

    Example::

        coalescer = Coalescer(lambda texts: model.encode(texts), window_s=0.002, max_items=64)
        row = coalescer.submit("one text")  # from many threads at once
    """

    def __init__(
        self,
        run: Callable[[Sequence[T]], np.ndarray],
        window_s: float,
        max_items: int,
        lanes: int = 1,
    ) -> None:
        if window_s < 0 or max_items < 1 or lanes < 1:
            raise ValueError("window_s must be >= 0, max_items >= 1 and lanes >= 1")
        self._run = run
        self.window_s = window_s
        self.max_items = max_items
        self.lanes = lanes
        self._cond = threading.Condition()
        self._pending: list[_Request[T]] = []
        self._collecting = False
        self._running = 0
        self.batches = 0
        self.items = 0

    def _may_collect(self, request: _Request[T]) -> bool:
        return not request.taken and not self._collecting and self._running < self.lanes

    def submit(self, item: T) -> np.ndarray:
        """Return ``item``'s row of a batch run shared with concurrent callers.

        Raises:
            BaseException: whatever the batch function raised for the batch holding ``item``.
        """
        request = _Request(item)
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
        while True:
            with self._cond:
                while not request.done and not self._may_collect(request):
                    self._cond.wait()
                if request.done:
                    break
                self._collecting = True
                try:
                    batch = self._collect()
                finally:
                    self._collecting = False
                self._running += 1
                self._cond.notify_all()  # the next caller may collect the next batch now
            try:
                self._run_batch(batch)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _collect(self) -> list[_Request[T]]:
        """Take the oldest waiting items once the window has passed or a batch is full.

        Called holding the lock, with at least the caller's own item waiting.
        """
        deadline = self._pending[0].arrived + self.window_s
        while len(self._pending) < self.max_items:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        batch = self._pending[: self.max_items]
        del self._pending[: self.max_items]
        for r in batch:
            r.taken = True
        return batch

    def _run_batch(self, batch: list[_Request[T]]) -> None:
        """Run one batch and hand each of its callers its row (or the batch's error)."""
        try:
            rows = self._run([r.item for r in batch])
            if len(rows) != len(batch):
                raise ValueError(f"batch of {len(batch)} items returned {len(rows)} rows")
        except BaseException as exc:  # every caller of the batch sees its failure
            with self._cond:
                for r in batch:
                    r.error = exc
                self._cond.notify_all()
            return
        with self._cond:
            for i, r in enumerate(batch):
                r.result = np.array(rows[i], dtype=np.float32)  # not a view: frees the batch
            self.batches += 1
            self.items += len(batch)
            self._cond.notify_all()
