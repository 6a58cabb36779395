"""``ShadowReadMemory``: reads answered by one store, a sampled share also run on the other.

Two stores, ``serving`` (the old one) and ``shadow`` (the new one). ``read_from_new``
(0..100, changeable at run time) is the share of reads the new store answers; the rest, and
every read after a rollback, the old store answers. A ``sample`` share of reads is also run
on the other store, on a worker thread off the caller's path, and compared: overlap@k, same
top hit, rank correlation, both latencies, the new store's errors. Over the last
``sidebyside_window`` comparisons, when the new store disagrees more often than
``sidebyside_max_inconsistency``, adds more than ``sidebyside_max_added_p95_ms`` at p95, or
fails more often than ``sidebyside_max_error_rate``, reads go back to the old store
(``read_from_new`` = 0), the alert is logged and counted (``rollbacks``, and the
``engramdb_sidebyside_rollbacks`` metric). A read the new store fails on the caller's path
is answered by the old store.

Routing and sampling are deterministic shares (an accumulator, not a coin), so 10% means
one read in ten. Writes and every other verb go to ``serving``: wrap a
:class:`DualWriteMemory` to keep the new store written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from engramdb.config import Settings
from engramdb.errors import NotFoundError, ValidationError
from engramdb.sidebyside import metrics
from engramdb.sidebyside.agreement import Comparison, Verdict, Window, compare_ids
from engramdb.sidebyside.control import RoutingControl

log = logging.getLogger("engramdb.sidebyside")

# Comparisons waiting for the worker beyond this are dropped (counted), never queued
# without bound behind a slow store.
MAX_BACKLOG = 64


class _Share:
    """A deterministic share: ``take()`` is true for ``rate`` of the calls, spread evenly."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.acc = 0.0

    def take(self) -> bool:
        self.acc += self.rate
        if self.acc >= 1.0 - 1e-9:
            self.acc -= 1.0
            return True
        return False


class ShadowReadMemory:
    """Serve reads from the old store (or ``read_from_new`` % from the new); compare a sample.

    Args:
        serving: the old store (also takes every write and every other verb).
        shadow: the new store.
        sample: share of reads also run on the other store and compared (0..1).
        read_from_new: percentage of reads the new store answers (0..100).
        settings: the ``sidebyside_*`` rollback thresholds and window.
        min_overlap: a compared search is consistent when its top hit is the same and at
            least this share of the top k is shared.
        clock: seconds, for latencies (a test passes a clock it moves itself).
        control_path: a routing control file (:mod:`engramdb.sidebyside.control`): the
            operator's ``engramdb read-from-new N --control PATH`` reaches this process
            through it, and rollbacks are written to it.

    Example::

        reads = ShadowReadMemory(old, new, sample=0.1, read_from_new=5)
        reads.search("where does alice live", user_id="alice")
        reads.set_read_from_new(25)
    """

    def __init__(
        self,
        serving: Any,
        shadow: Any,
        sample: float = 0.1,
        *,
        read_from_new: int = 0,
        settings: Settings | None = None,
        min_overlap: float = 0.8,
        clock: Callable[[], float] = time.perf_counter,
        control_path: str | Path | None = None,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValidationError(f"sample must be within 0..1, got {sample!r}", field="sample")
        s = settings or Settings()
        self.serving = serving
        self.shadow = shadow
        self.clock = clock
        self.window = Window(
            s.sidebyside_window,
            s.sidebyside_min_samples,
            s.sidebyside_max_inconsistency,
            s.sidebyside_max_added_p95_ms,
            s.sidebyside_max_error_rate,
            min_overlap,
        )
        self._sample = _Share(sample)
        self._route = _Share(0.0)
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="engramdb-shadow")
        self._backlog = 0
        self.read_from_new = 0
        self.rolled_back = False
        self.rollbacks = 0
        """Automatic rollbacks so far: the alert counter."""
        self.last_verdict: Verdict | None = None
        self.last_rollback: Verdict | None = None
        self.compared = 0
        self.new_errors = 0
        self.dropped = 0
        self.control = RoutingControl(control_path) if control_path is not None else None
        self.set_read_from_new(read_from_new)
        if self.control is not None:
            # A file left by an operator outlives a restart of the application; a rollback
            # stays a rollback until someone sets a share again.
            kept = self.control.changed()
            if kept is None:
                self.control.write(read_from_new, rolled_back=False)
            elif kept.get("rolled_back"):
                self.set_read_from_new(0)
            else:
                self.set_read_from_new(kept["read_from_new"])

    # --- routing ----------------------------------------------------------------------

    def set_read_from_new(self, percent: int) -> None:
        """Route ``percent`` (0..100) of reads to the new store, from the next read on.

        Clears a rollback and the comparison window (a new phase of the rollout).
        """
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValidationError(
                f"read_from_new must be an integer within 0..100, got {percent!r}",
                field="read_from_new",
            )
        with self._lock:
            self.read_from_new = percent
            self._route = _Share(percent / 100)
            self.rolled_back = False
            self.window.clear()
        metrics.set_gauge("read_from_new", percent)

    def _rollback(self, verdict: Verdict) -> None:
        with self._lock:
            if self.rolled_back:
                return
            self.rolled_back = True
            self.read_from_new = 0
            self._route = _Share(0.0)
            self.rollbacks += 1
            self.last_rollback = verdict
        if self.control is not None:
            self.control.write(
                0,
                rolled_back=True,
                reason=verdict.reason,
                inconsistency=verdict.inconsistency,
                added_p95_ms=verdict.added_p95_ms,
                error_rate=verdict.error_rate,
                samples=verdict.samples,
            )
        metrics.inc("rollbacks", reason=str(verdict.reason))
        metrics.set_gauge("read_from_new", 0)
        log.error(
            "side-by-side ALERT: reads rolled back to the old store (%s): inconsistency "
            "%.4f, added p95 %.1f ms, error rate %.4f over %d compared reads",
            verdict.reason,
            verdict.inconsistency,
            verdict.added_p95_ms,
            verdict.error_rate,
            verdict.samples,
        )

    # --- reads ------------------------------------------------------------------------

    def search(self, query: str, **kwargs: Any) -> Any:
        """``Memory.search`` routed and sampled; hits compared by record id."""
        k = int(kwargs.get("top_k", 10))
        return self._read("search", (query,), kwargs, lambda page: _hit_ids(page), k)

    def get(self, id: str) -> Any:
        """``Memory.get`` routed and sampled; compared by content hash (or both not found)."""
        return self._read("get", (id,), {}, _record_key, 1)

    def count(self, *args: Any, **kwargs: Any) -> int:
        """``Memory.count`` routed and sampled; compared as numbers."""
        result: int = self._read("count", args, kwargs, lambda n: [str(n)], 1)
        return result

    def __getattr__(self, name: str) -> Any:
        """Writes and every other verb go to the serving (old) store."""
        return getattr(self.serving, name)

    def _read(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ids: Callable[[Any], list[str]],
        k: int,
    ) -> Any:
        if self.control is not None:
            wanted = self.control.changed()
            if wanted is not None and not wanted.get("rolled_back"):
                self.set_read_from_new(wanted["read_from_new"])
        with self._lock:
            use_new = self._route.take()
            compare = self._sample.take()
        first, second = (self.shadow, self.serving) if use_new else (self.serving, self.shadow)
        started = self.clock()
        try:
            result = getattr(first, method)(*args, **kwargs)
            error = None
        except NotFoundError as exc:  # an answer, not a failure: compared like one
            result, error = exc, None
        except Exception as exc:
            if not use_new:
                raise
            result, error = None, exc
        elapsed = (self.clock() - started) * 1000
        if use_new and error is not None:
            # The new store failed the caller: the old one answers, and it counts.
            self._record(Comparison(0.0, False, 0.0, 0.0, elapsed, repr(error)))
            return getattr(self.serving, method)(*args, **kwargs)
        if compare:
            self._submit(method, args, kwargs, ids, k, use_new, result, elapsed, second)
        if isinstance(result, NotFoundError):
            raise result
        return result

    def _submit(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ids: Callable[[Any], list[str]],
        k: int,
        used_new: bool,
        result: Any,
        elapsed: float,
        other: Any,
    ) -> None:
        with self._lock:
            if self._backlog >= MAX_BACKLOG:
                self.dropped += 1
                return
            self._backlog += 1

        def run() -> None:
            try:
                started = self.clock()
                error: str | None = None
                try:
                    other_result = getattr(other, method)(*args, **kwargs)
                except NotFoundError as exc:
                    other_result = exc
                except Exception as exc:
                    other_result, error = None, repr(exc)
                other_ms = (self.clock() - started) * 1000
                if used_new:
                    old_ids, new_ids, old_ms, new_ms = (
                        ids_of(other_result),
                        ids_of(result),
                        other_ms,
                        elapsed,
                    )
                else:
                    old_ids, new_ids, old_ms, new_ms = (
                        ids_of(result),
                        ids_of(other_result),
                        elapsed,
                        other_ms,
                    )
                if error is not None and used_new:
                    # The old store failed a shadow read: nothing to learn about the new one.
                    return
                if error is not None:
                    self._record(Comparison(0.0, False, 0.0, old_ms, new_ms, error))
                else:
                    self._record(compare_ids(old_ids, new_ids, k, old_ms, new_ms))
            finally:
                with self._lock:
                    self._backlog -= 1

        def ids_of(value: Any) -> list[str]:
            if value is None:
                return []
            if isinstance(value, NotFoundError):
                return ["<not found>"]
            return ids(value)

        self._worker.submit(run)

    def _record(self, comparison: Comparison) -> None:
        with self._lock:
            verdict = self.window.add(comparison)
            self.last_verdict = verdict
            self.compared += 1
            if comparison.error is not None:
                self.new_errors += 1
        metrics.inc("shadow_reads")
        if comparison.error is not None:
            metrics.inc("shadow_errors")
        if verdict.reason is not None:
            self._rollback(verdict)

    def wait_idle(self) -> None:
        """Block until every submitted comparison has been recorded."""
        done: Future[None] = self._worker.submit(lambda: None)
        done.result()

    def close(self) -> None:
        """Finish pending comparisons and stop the worker (the stores are the caller's)."""
        self._worker.shutdown(wait=True)

    def __enter__(self) -> ShadowReadMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hit_ids(page: Any) -> list[str]:
    return [hit.record.id for hit in page.hits]


def _record_key(record: Any) -> list[str]:
    return [f"{record.id}:{record.content_hash}"]
