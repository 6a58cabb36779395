"""The service run side by side with an old store (``ENGRAM_SIDEBYSIDE_OLD``).

One namespace (``sidebyside_namespace``: by default a legacy store's collection name, the
namespace ``migrate`` gives it, else the default namespace) is served by the pair; every
other namespace by the service's own store alone.

* **Writes** (``add``, ``update``, ``delete``, ``add_messages``, whose turns a legacy store
  keeps as message records; with an engramdb old store also ``delete_all``, ``log_event``,
  ``set_slots`` and ``forget``) go through
  :class:`~engramdb.sidebyside.DualWriteMemory` with the service's own store as the
  primary: it validates, assigns ids and answers; the old store is kept in step under the
  same ids, and what it fails to take waits in the durable retry queue
  (``sidebyside_queue``). The service's store is the primary because it is the one that
  takes every REST shape (batches, tags, importance, ``on_error``) and holds the keys, the
  idempotency records and the history; a legacy store keeps what its mapping has columns
  for.
* **Reads** (``search``, ``get``, ``count``) go through
  :class:`~engramdb.sidebyside.ShadowReadMemory`: the old store answers except for
  ``read_from_new`` percent of them, a ``sidebyside_sample`` share is compared on the other
  store off the caller's path, and the automatic rollback applies. Every other verb (list,
  history, threads, entities…) reads the service's own store.
* The admin routes (``/v1/admin/read-from-new``, the admin page's form) read and set the
  percentage through :meth:`SideBySide.set_read_from_new`; with ``sidebyside_control`` the
  change is also written to the routing control file, which every process sharing it
  follows (and ``engramdb read-from-new --control`` can set).

The REST routes are side by side; the MCP and ZeroMQ surfaces serve the service's own
store. One worker process: the retry queue is drained by the process that owns it.
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.concurrency import run_in_threadpool

from engramdb.config import Settings, url_without_password
from engramdb.embedders import resolve_embedder
from engramdb.errors import ConflictError, ValidationError
from engramdb.memory import Memory
from engramdb.ops.legacy_memory import LegacyMemory
from engramdb.ops.mapping import load_mapping
from engramdb.ops.sources import is_legacy
from engramdb.sidebyside import DualWriteMemory, ShadowReadMemory
from engramdb.sidebyside.agreement import Verdict

BASIC_WRITES: tuple[str, ...] = ("add", "update", "delete")
ENGRAM_WRITES = ("delete_all", "add_messages", "log_event", "set_slots", "forget")
READS = ("search", "get", "count")
NOT_SIDE_BY_SIDE = (
    "the server is not running side by side: set ENGRAM_SIDEBYSIDE_OLD to the old store's "
    "URL (a chroma://, sql: or redis:// source, or an engramdb store) and restart it"
)


class SideBySide:
    """The pair behind one namespace of the service: its dual writes and routed reads.

    Args:
        memory: the service's own store (the new one, and the primary of writes).
        settings: the ``sidebyside_*`` settings (``sidebyside_old`` must be set).

    Raises:
        ValidationError: the old store cannot be opened or written (its URL is named
            without a password).
    """

    def __init__(self, memory: Memory, settings: Settings) -> None:
        url = settings.sidebyside_old
        assert url is not None
        self.old_url = url_without_password(url, "***")
        old: Any
        if is_legacy(url):
            mapping = settings.sidebyside_old_mapping
            old = LegacyMemory(
                url,
                embedder=resolve_embedder(settings.sidebyside_old_embedder, settings),
                mapping=load_mapping(mapping) if mapping else None,
                namespace=settings.sidebyside_namespace,
            )
            self.namespace: str = old.namespace
            self._old_root: Any = old
            self.writes: tuple[str, ...] = (*BASIC_WRITES, "add_messages")
        else:
            if url == settings.url:
                raise ValidationError(
                    "ENGRAM_SIDEBYSIDE_OLD names the service's own store: name the old one",
                    field="sidebyside_old",
                )
            self.namespace = settings.sidebyside_namespace or settings.namespace
            self._old_root = Memory(settings=settings.model_copy(update={"url": url}))
            old = self._old_root.with_namespace(self.namespace)
            self.writes = BASIC_WRITES + ENGRAM_WRITES
        new = memory.with_namespace(self.namespace)
        try:
            self.dual = DualWriteMemory(new, old, settings.sidebyside_queue, settings=settings)
        except BaseException:
            self._old_root.close()
            raise
        try:
            self.shadow = ShadowReadMemory(
                old,
                new,
                settings.sidebyside_sample,
                read_from_new=settings.sidebyside_read_from_new,
                settings=settings,
                control_path=settings.sidebyside_control,
            )
        except BaseException:
            self.dual.close()
            self._old_root.close()
            raise

    def view(self, inner: Any) -> SideBySideView:
        """The async face of the pair over ``inner`` (the service's scoped ``AsyncMemory``)."""
        return SideBySideView(self, inner)

    def set_read_from_new(self, percent: int, by: str) -> dict[str, Any]:
        """Route ``percent`` of reads to the new store (clears a rollback); return the
        status. With a control file, the change is written there for every process.

        Raises:
            ValidationError: ``percent`` is not an integer within 0..100.
        """
        self.shadow.set_read_from_new(percent)
        if self.shadow.control is not None:
            self.shadow.control.write(percent, rolled_back=False, set_by=by)
        return self.status()

    def status(self) -> dict[str, Any]:
        """The routing share, the rollback state and the agreement figures."""
        shadow, dual = self.shadow, self.dual
        if shadow.control is not None:  # a change another process or the CLI made
            wanted = shadow.control.changed()
            if wanted is not None and not wanted.get("rolled_back"):
                shadow.set_read_from_new(wanted["read_from_new"])
        verdict = shadow.last_verdict
        return {
            "namespace": self.namespace,
            "old": self.old_url,
            "read_from_new": shadow.read_from_new,
            "rolled_back": shadow.rolled_back,
            "rollbacks": shadow.rollbacks,
            "last_rollback": _verdict(shadow.last_rollback),
            "agreement": {
                "compared": shadow.compared,
                "new_errors": shadow.new_errors,
                "dropped": shadow.dropped,
                **(_verdict(verdict) or _verdict(Verdict(0, 0.0, 0.0, 0.0, None)) or {}),
            },
            "dual_write": {
                "pending": dual.pending,
                "secondary_failures": dual.secondary_failures,
                "replayed": dual.replayed,
            },
        }

    def close(self) -> None:
        """Finish pending comparisons, stop the retry thread (queued writes stay in the
        queue file for the next start) and close the old store."""
        self.shadow.close()
        self.dual.close()
        self._old_root.close()


def _verdict(verdict: Verdict | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {
        "samples": verdict.samples,
        "inconsistency": verdict.inconsistency,
        "added_p95_ms": verdict.added_p95_ms,
        "error_rate": verdict.error_rate,
        "reason": verdict.reason,
    }


class SideBySideView:
    """The verbs of a scoped ``AsyncMemory``, with the pair's writes and reads (run in the
    thread pool: the pair is synchronous); everything else is the inner view's."""

    def __init__(self, side: SideBySide, inner: Any) -> None:
        self._side = side
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        side = self._side
        if name in side.writes:
            return _threaded(getattr(side.dual, name))
        if name in READS:
            return _threaded(getattr(side.shadow, name))
        return getattr(self._inner, name)


def _threaded(fn: Any) -> Any:
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(functools.partial(fn, *args, **kwargs))

    return call


def side_of(app: Any) -> SideBySide:
    """The app's side-by-side pair.

    Raises:
        ConflictError: the server is not running side by side (409, naming the setting).
    """
    side: SideBySide | None = app.state.sidebyside
    if side is None:
        raise ConflictError(NOT_SIDE_BY_SIDE)
    return side
