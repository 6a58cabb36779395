"""Part of a read on a helper thread: a hybrid search's keyword side beside its vector side.

Why: a hybrid search's two candidate lists are independent, and on PostgreSQL each is
mostly a wait on the server (the keyword index's catch-up, the vector statement), so run
side by side a search costs its slower side instead of their sum.

Rules the helper keeps, so that a read split in two answers what it would have whole:

* **Same context.** The helper runs in a copy of the caller's context: the read budget of
  :mod:`engramdb.deadline`, the read floor of :mod:`engramdb.consistency` and the retry
  window of :func:`~engramdb.stores.postgres.faults.retried` (with its I/O watchdog)
  follow it, so an unreachable server fails both sides within the caller's bounds. It also
  runs under the caller thread's replica floor (:meth:`ReplicaRouter.carrying`), so it
  reads nothing older than the caller would have.
* **No pool deadlock.** The helper holds one pooled connection at a time, and the caller
  waits for the helper only once it holds none. A full pool makes one side wait for the
  other, never both for each other.
* **Bounded.** At most the pool's size of helpers; more parts queue and the caller waits
  for them as it would for its own statements.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from engramdb.errors import StoreError
from engramdb.stores.postgres.replica import ReplicaRouter

T = TypeVar("T")


class SideThreads:
    """The helper threads of one store (started on first use; per process)."""

    def __init__(self, router: ReplicaRouter | None, workers: int) -> None:
        self._router = router
        self._workers = max(1, int(workers))
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._closed = False

    def start(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on a helper thread, in this call's context and replica floor."""
        context = contextvars.copy_context()
        floor = self._router.thread_floor() if self._router is not None else None

        def run() -> T:
            if self._router is None:
                return fn()
            with self._router.carrying(floor):
                return fn()

        return self._executor().submit(context.run, run)

    def _executor(self) -> ThreadPoolExecutor:
        """The executor of this process (a forked child starts its own)."""
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")  # as its pools say
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="engramdb-side")
                self._pid = os.getpid()
            return self._pool

    def close(self) -> None:
        """Finish the parts running and stop the threads (the store is closing)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.shutdown(wait=True)
