"""``DualWriteMemory``: every write to the primary and to the secondary; reads from the primary.

The primary decides: its answer (ids included) is the caller's answer, and its failure is
the caller's failure (the secondary is then not written). The write is then replayed on the
secondary *with the primary's ids*, so the two stores hold the same records under the same
ids and ``reconcile`` can compare them by id. A secondary write that fails is logged,
counted and put in a durable :class:`RetryQueue` (a SQLite file of its own), which a
background thread drains in order; while anything is queued, later writes queue behind it,
so an update never overtakes the add of its record.

The two sides are anything with the ``Memory`` verbs used here (``add``, ``update``,
``delete``, ``delete_all``, ``add_messages``, ``log_event``, ``set_slots``, ``forget``):
an engramdb ``Memory`` today, a legacy store's adapter that can write tomorrow.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engramdb.config import Settings
from engramdb.errors import (
    EmbeddingError,
    NotFoundError,
    StoreError,
)
from engramdb.models import WRITABLE_RECORD_FIELDS, AddResult, MemoryRecord
from engramdb.sidebyside import metrics
from engramdb.sidebyside.queue import RetryQueue

log = logging.getLogger("engramdb.sidebyside")

# Failures that pass: the entry is tried again. Anything else is tried BURY_AFTER times,
# then moved to the dead-letter table so that the entries behind it can go.
TRANSIENT = (StoreError, EmbeddingError, OSError, TimeoutError)
BURY_AFTER = 3


def record_item(record: MemoryRecord) -> dict[str, Any]:
    """The add item that recreates ``record`` (same id) in another store."""
    item = {name: getattr(record, name) for name in WRITABLE_RECORD_FIELDS}
    return {k: v for k, v in item.items() if v is not None and v != [] and v != {}}


class DualWriteMemory:
    """Writes to ``primary`` and ``secondary``; reads (any other attribute) from ``primary``.

    Args:
        primary: the store whose answers the caller gets (the old store while migrating).
        secondary: the store kept in step.
        queue_path: the retry queue's SQLite file (kept across restarts; entries left by a
            previous process are drained first).
        settings: ``sidebyside_retry_interval_s`` paces the retries.
        drain: start the background drain thread (off: call :meth:`drain` yourself).

    Example::

        dual = DualWriteMemory(Memory("sqlite:///old.db"), Memory(pg_url), "dual.queue")
        dual.add("Alice moved to Lisbon", user_id="alice")   # in both, same id
    """

    def __init__(
        self,
        primary: Any,
        secondary: Any,
        queue_path: str | Path,
        *,
        settings: Settings | None = None,
        drain: bool = True,
    ) -> None:
        self.primary = primary
        self.secondary = secondary
        self.queue = RetryQueue(queue_path)
        self.retry_interval_s = (settings or Settings()).sidebyside_retry_interval_s
        self.secondary_failures = 0
        """Secondary writes that failed (at once or on a retry): the alert counter."""
        self.replayed = 0
        """Queued writes the secondary has since taken."""
        self._apply_lock = threading.Lock()  # direct writes and the drain, in queue order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        metrics.set_gauge("queue_depth", len(self.queue))
        if len(self.queue):  # left by a previous process: drain it first
            self._wake.set()
        if drain:
            self._thread = threading.Thread(
                target=self._drain_loop, name="engramdb-dual-write", daemon=True
            )
            self._thread.start()

    # --- writes -----------------------------------------------------------------------

    def add(self, text: Any, **kwargs: Any) -> list[AddResult]:
        """``Memory.add`` on the primary, then the records it returned on the secondary."""
        results: list[AddResult] = self.primary.add(text, **kwargs)
        items = [record_item(r.record) for r in results if r.record is not None]
        if items:
            self._replicate("add", {"text": items})
        return results

    def add_messages(
        self, thread_id: str, messages: Sequence[dict[str, Any]], **kwargs: Any
    ) -> Any:
        """``Memory.add_messages`` on the primary; the secondary gets the turns in its event
        log and the primary's message records (same ids)."""
        results = self.primary.add_messages(thread_id, messages, **kwargs)
        scope = {k: kwargs[k] for k in ("user_id", "agent_id") if kwargs.get(k) is not None}
        self._replicate(
            "add_messages",
            {"thread_id": thread_id, "messages": list(messages), "remember": False, **scope},
        )
        items = [record_item(r.record) for r in results if r.record is not None]
        if items:
            self._replicate("add", {"text": items})
        return results

    def update(self, id: str, **fields: Any) -> MemoryRecord:
        """``Memory.update`` on both (the secondary without ``expected_version``: the
        primary checked it, and the two stores count versions apart)."""
        record: MemoryRecord = self.primary.update(id, **fields)
        fields.pop("expected_version", None)
        self._replicate("update", {"id": id, **fields})
        return record

    def delete(self, id: str) -> None:
        """``Memory.delete`` on both (already gone on the secondary counts as done)."""
        self.primary.delete(id)
        self._replicate("delete", {"id": id})

    def delete_all(self, filters: dict[str, Any] | None = None, **kwargs: Any) -> int:
        """``Memory.delete_all`` on both; returns the primary's count."""
        n: int = self.primary.delete_all(filters, **kwargs)
        self._replicate("delete_all", {"filters": filters, **kwargs})
        return n

    def log_event(self, thread_id: str, action: str, payload: Any = None, **kwargs: Any) -> Any:
        """``Memory.log_event`` on both."""
        event = self.primary.log_event(thread_id, action, payload, **kwargs)
        self._replicate(
            "log_event", {"thread_id": thread_id, "action": action, "payload": payload, **kwargs}
        )
        return event

    def set_slots(self, thread_id: str, values: dict[str, Any], **kwargs: Any) -> Any:
        """``Memory.set_slots`` on both (compare-and-set on the primary only)."""
        slots = self.primary.set_slots(thread_id, values, **kwargs)
        kwargs.pop("expected_version", None)
        self._replicate("set_slots", {"thread_id": thread_id, "values": values, **kwargs})
        return slots

    def forget(self, **kwargs: Any) -> dict[str, int]:
        """``Memory.forget`` on both: an erasure request must reach every copy."""
        counts: dict[str, int] = self.primary.forget(**kwargs)
        self._replicate("forget", dict(kwargs))
        return counts

    def __getattr__(self, name: str) -> Any:
        """Reads and everything else go to the primary."""
        return getattr(self.primary, name)

    # --- the secondary ----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Writes waiting for the secondary."""
        return len(self.queue)

    def _replicate(self, method: str, kwargs: dict[str, Any]) -> None:
        with self._apply_lock:
            if not len(self.queue):
                try:
                    _apply(self.secondary, method, kwargs)
                    return
                except Exception as exc:
                    self._count_failure(method, exc)
            self.queue.push(method, kwargs)
        metrics.set_gauge("queue_depth", len(self.queue))
        self._wake.set()

    def _count_failure(self, method: str, exc: BaseException) -> None:
        self.secondary_failures += 1
        metrics.inc("secondary_failures")
        log.warning(
            "dual write: the secondary did not take %s (%s: %s); queued for retry",
            method,
            type(exc).__name__,
            exc,
        )

    def drain(self) -> int:
        """Apply queued writes in order until the queue is empty or one fails; return how
        many are left. The background thread calls this; a caller may too."""
        while True:
            with self._apply_lock:
                entry = self.queue.peek()
                if entry is None:
                    break
                try:
                    _apply(self.secondary, entry.method, entry.kwargs)
                except Exception as exc:
                    self._count_failure(entry.method, exc)
                    if not isinstance(exc, TRANSIENT) and entry.attempts + 1 >= BURY_AFTER:
                        log.error("dual write: gave up on queued %s: %s", entry.method, exc)
                        self.queue.bury(entry.seq, f"{type(exc).__name__}: {exc}")
                        continue
                    self.queue.failed(entry.seq, f"{type(exc).__name__}: {exc}")
                    break
                self.queue.done(entry.seq)
                self.replayed += 1
        left = len(self.queue)
        metrics.set_gauge("queue_depth", left)
        return left

    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.drain()
            except Exception:  # the queue file itself failed: log, keep the thread alive
                log.exception("dual write: the retry queue failed")

    def close(self) -> None:
        """Stop the drain thread and close the queue file (pending entries stay in it).
        The two stores are the caller's to close."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.queue.close()

    def __enter__(self) -> DualWriteMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _apply(target: Any, method: str, kwargs: dict[str, Any]) -> None:
    try:
        getattr(target, method)(**kwargs)
    except NotFoundError:
        if method != "delete":  # a delete of what is already gone is done
            raise
