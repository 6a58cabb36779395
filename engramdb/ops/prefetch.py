"""Read ahead on a second thread: one bounded hand-off shared by both migrate paths.

Why: reading and converting a batch is client work and loading the previous one is the
store's; overlapping them shortens a copy. The thread owns the source iterator from start
to end, closing included (a SQLite connection, and some drivers, are bound to the thread
that made them); at most two items wait in the queue.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any


def prefetch(make: Callable[[], Iterator[Any]], name: str) -> Generator[Any, None, None]:
    """Yield what ``make()``'s iterator yields, produced on a thread named ``name``.

    An exception of the producer is raised here, in the consumer; a consumer that stops
    early stops the producer, which closes its iterator on its own thread.
    """
    done = object()
    out: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            items = make()
            try:
                for item in items:
                    if not put(item):
                        return
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
            put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
