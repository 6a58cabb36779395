"""Coalesce single items from concurrent callers into one batch call.

Many small requests (a REST handler, an async call, each embedding one query) cost almost
as much each as one batch does, because the encoder's time is dominated by per-call work
that a batch shares. :class:`Coalescer` lets every caller :meth:`~Coalescer.submit` its
item and block; one of them, the *leader*, waits until ``window_s`` has passed since the
oldest waiting item arrived (or ``max_items`` are waiting), runs the batch function once for
all of them and hands each caller its row. Items that arrive while a batch runs form the
next batch, so under load the batches grow by themselves and nobody waits longer than one
batch plus the window.

Leadership passes on: a leader returns as soon as its own item is done, and the oldest
waiting caller leads the next batch. A failing batch raises the same exception in every
caller whose item was in it. No thread is started; callers do all the work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class _Request(Generic[T]):
    __slots__ = ("arrived", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.arrived = time.monotonic()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None


class Coalescer(Generic[T]):
    """Run ``run(items)`` once for items submitted by concurrent callers.

    Args:
        run: the batch function; returns one row per item, in order.
        window_s: how long the oldest waiting item may wait for company (0: run at once
            with whatever is waiting, which still batches the items that arrive during a run).
        max_items: the largest batch; a full batch runs without waiting out the window.

    Example::

        coalescer = Coalescer(lambda texts: model.encode(texts), window_s=0.002, max_items=64)
        row = coalescer.submit("one text")  # from many threads at once
    """

    def __init__(
        self, run: Callable[[Sequence[T]], np.ndarray], window_s: float, max_items: int
    ) -> None:
        if window_s < 0 or max_items < 1:
            raise ValueError("window_s must be >= 0 and max_items >= 1")
        self._run = run
        self.window_s = window_s
        self.max_items = max_items
        self._cond = threading.Condition()
        self._pending: list[_Request[T]] = []
        self._leading = False
        self.batches = 0
        self.items = 0

    def submit(self, item: T) -> np.ndarray:
        """Return ``item``'s row of a batch run shared with concurrent callers.

        Raises:
            BaseException: whatever the batch function raised for the batch holding ``item``.
        """
        request = _Request(item)
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
            while not request.done and self._leading:
                self._cond.wait()
            if not request.done:
                self._leading = True
        if not request.done:
            try:
                self._lead(request)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _lead(self, own: _Request[T]) -> None:
        """Run batches, oldest items first, until ``own`` is done."""
        while not own.done:
            with self._cond:
                deadline = self._pending[0].arrived + self.window_s
                while len(self._pending) < self.max_items:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = self._pending[: self.max_items]
                del self._pending[: self.max_items]
            try:
                rows = self._run([r.item for r in batch])
                if len(rows) != len(batch):
                    raise ValueError(f"batch of {len(batch)} items returned {len(rows)} rows")
            except BaseException as exc:  # every caller of the batch sees its failure
                with self._cond:
                    for r in batch:
                        r.error = exc
                    self._cond.notify_all()
                continue
            with self._cond:
                for i, r in enumerate(batch):
                    r.result = np.array(rows[i], dtype=np.float32)  # not a view: frees the batch
                self.batches += 1
                self.items += len(batch)
                self._cond.notify_all()
