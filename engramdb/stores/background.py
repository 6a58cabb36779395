"""A daemon thread that a store starts on demand and stops before it closes.

The vector index's graph builder (``ann.AnnWorker``) and the SQLite checkpointer
(``stores.sqlite.checkpoint.Checkpointer``) share this life cycle: the first ``kick`` starts the
thread, later kicks wake it, ``stop`` ends and joins it. ``stop`` also runs at interpreter
exit, because a daemon thread killed inside native code (usearch, SQLite) can abort the
process ("terminate called without an active exception"). A subclass writes ``_run``: loop
until ``stopped``, waiting on ``wake``; return to end the thread (the next kick starts a
new one).
"""

from __future__ import annotations

import atexit
import threading
import weakref


class BackgroundWorker:
    """One on-demand daemon thread (see the module docstring)."""

    thread_name = "engramdb-worker"

    def __init__(self) -> None:
        self.wake = threading.Event()  # set by kick: there is work
        self.halt = threading.Event()  # set by stop: sleeps in _run end early
        self.stopped = False
        self.thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        ref = weakref.ref(self)
        self._exit_hook = lambda: _stop_if_alive(ref)
        atexit.register(self._exit_hook)

    def kick(self) -> None:
        """Make sure the worker runs (starting it after a fork or after it went idle)."""
        if self.stopped:
            return
        self.wake.set()
        with self._start_lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
                self.thread.start()

    def stop(self) -> None:
        """Stop after the current step and wait for the thread."""
        self.stopped = True
        self.halt.set()
        self.wake.set()
        atexit.unregister(self._exit_hook)
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:  # pragma: no cover - every subclass writes its own
        raise NotImplementedError


def _stop_if_alive(ref: weakref.ref[BackgroundWorker]) -> None:
    worker = ref()
    if worker is not None:
        worker.stop()
