"""Running a coroutine from synchronous code, whether or not this thread runs an event loop.

Without a running loop the coroutine runs on a fresh one here. With one (a ``_sync`` call
made from inside async code), the coroutine runs on a loop of its own in a worker thread
while this thread waits: that blocks the caller's loop for the call, which is what a
synchronous call means, but never deadlocks on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result (its exception propagates)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="engramdb-compat-sync") as pool:
        return pool.submit(asyncio.run, coro).result()
