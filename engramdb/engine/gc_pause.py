"""Pause Python's cyclic garbage collector while a write batch builds its objects.

Why: a batch ``add`` of 1,000 records builds ~30 container objects per record (the prepared
record, its chunk, the statement rows, the result record) that all stay alive until the
batch ends. CPython 3.11 counts every one of them that outlives two young collections as
"pending" old objects, and once those pass a quarter of the heap it runs a full collection
over the whole process heap. None of them is cyclic garbage: they die by reference count the
moment the batch returns. The full collections are the cost, and they grow with the
application's heap (a process holding a model and a web server has far more objects than
the benchmark), not with the batch (docs/tuning.md has the counts).

The pause is process-wide (the collector is), so it is held only around our own code, never
around an embedder or any other outside call, and it is reference-counted so overlapping
batches on several threads leave the collector as they found it: the first to enter
disables it if it was enabled, the last to leave enables it again. A collector that the
application had disabled stays disabled; one that another thread disables while a batch
runs is enabled again when the batch ends (the pause cannot tell that call from its own).
A fork while a batch runs would leave the child with a count no thread of its own will
release, so the child resets it.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic collector off for the duration of the block (see the module doc)."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            if _resume:
                gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                _resume = False
                gc.enable()


def _reset_in_child() -> None:
    """The forking thread's pauses do not exist in the child: restore the collector there."""
    global _depth, _resume, _lock
    _lock = threading.Lock()
    if _depth and _resume:
        gc.enable()
    _depth, _resume = 0, False


os.register_at_fork(after_in_child=_reset_in_child)
