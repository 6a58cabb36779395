"""What ``Memory`` and ``AsyncMemory`` share: construction, the event-loop guard, the pool.

Both faces call only the engine: no store, cache or surface is reached from here.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from engramdb.config import Settings
from engramdb.embedders.base import Embedder
from engramdb.engine.checkpoints import ThreadCheckpoints
from engramdb.engine.core import Engine
from engramdb.engine.validation import check_namespace
from engramdb.errors import WrongContextError
from engramdb.extract.facts import FactExtractor
from engramdb.observe import observer

T = TypeVar("T")
F = TypeVar("F", bound="_Shared")
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def shared_pool() -> ThreadPoolExecutor:
    """The bounded thread pool that runs AsyncMemory's blocking work off the event loop."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=min(8, (os.cpu_count() or 2) * 2), thread_name_prefix="engramdb"
            )
        return _pool


class _Shared:
    """Construction shared by both faces: settings, embedder, store, namespace.

    ``embedder`` and ``facts`` take a settings name or an object: an
    :class:`~engramdb.Embedder`, and a :class:`~engramdb.FactExtractor` (the facts
    ``add_messages`` extracts; None: ``settings.facts``). A value that is neither raises
    :class:`~engramdb.ValidationError` before the store opens.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        embedder: str | Embedder | None = None,
        settings: Settings | None = None,
        facts: str | FactExtractor | None = None,
        _engine: Engine | None = None,
    ) -> None:
        if _engine is not None:
            self._engine = _engine
            self.namespace = check_namespace(
                _engine.settings.namespace if namespace is None else namespace
            )
            self._owner = False
            return
        base = settings if settings is not None else Settings()
        if url is not None:
            base = base.model_copy(update={"url": url})
        self.namespace = check_namespace(base.namespace if namespace is None else namespace)
        self._engine = Engine.open(base, embedder, facts)
        self._owner = True

    @property
    def engine(self) -> Engine:
        """The engine shared by every face over this store."""
        return self._engine

    @property
    def settings(self) -> Settings:
        """The settings the store was opened with (shared by every view of it)."""
        return self._engine.settings

    @property
    def embedder(self) -> Embedder:
        """The embedder in use."""
        return self._engine.embedder

    @property
    def checkpoints(self) -> ThreadCheckpoints:
        """This namespace's thread checkpoints (what LangGraph's checkpointer keeps).

        Blocking calls: ``engramdb.integrations.langgraph.EngramSaver`` runs them off the
        event loop for its async methods.
        """
        return self._engine.checkpoints(self.namespace)

    def _last_write_lsn(self) -> str | None:
        """The store's position after this process's last write, for read-your-writes.

        Private: REST stamps it on write responses; it is no verb of the library.
        """
        return self._engine.last_write_lsn()

    def _write_generation(self) -> int:
        """This namespace's write generation (it rises in every write transaction).

        Private, like ``_last_write_lsn``: adapters keep what they derive from the
        namespace's content (the LangGraph store's census of its labels) while it holds.
        """
        return self._engine.generation(self.namespace)

    def _user_ids(self) -> list[str]:
        """The distinct user scopes of this namespace's live records (an index scan).

        Private like ``_write_generation``: the LangGraph store reads its namespaces from
        them instead of from every record.
        """
        return self._engine.user_ids(self.namespace)

    def _view(self, face: type[F]) -> F:
        """The other face (``Memory`` or ``AsyncMemory``) over this one's engine and namespace.

        The view does not own the store: closing it leaves the store open.
        """
        return face(namespace=self.namespace, _engine=self._engine)


def guard_sync(method: str) -> None:
    """Refuse a blocking call from the thread that runs an event loop (it would stall it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise WrongContextError(
        f"Memory.{method}() blocks and was called on a thread running an event loop; "
        f"use `await AsyncMemory.{method}(...)` instead",
        method=method,
    )


def call_sync(method: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run an engine call on the caller's thread after the event-loop guard."""
    guard_sync(method)
    obs = observer()
    if obs is None:
        return fn(*args, **kwargs)
    start = time.perf_counter()
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        obs.operation(method, time.perf_counter() - start, exc)
        raise
    obs.operation(method, time.perf_counter() - start, None)
    return result


async def call_async(method: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run an engine call in the shared pool so the event loop never blocks.

    The call runs in a copy of the caller's context, so context variables set for a request
    (the REST read floor of :func:`engramdb.consistency.read_at_least`) reach it.
    """
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    obs = observer()
    if obs is None:
        return await loop.run_in_executor(shared_pool(), lambda: ctx.run(fn, *args, **kwargs))
    # The call is reported once, with the time the caller waited (queue included); the
    # queue gauge counts it from submission until a thread picks it up (or it is cancelled).
    waiting = [True]  # popped exactly once (list.pop is atomic), by whichever side is first
    obs.queued("shared", 1)

    def stop_waiting() -> None:
        try:
            waiting.pop()
        except IndexError:
            return
        obs.queued("shared", -1)

    def started() -> T:
        stop_waiting()
        return ctx.run(fn, *args, **kwargs)

    start = time.perf_counter()
    try:
        result = await loop.run_in_executor(shared_pool(), started)
    except BaseException as exc:
        obs.operation(method, time.perf_counter() - start, exc)
        raise
    finally:
        stop_waiting()
    obs.operation(method, time.perf_counter() - start, None)
    return result


async def open_async(face: type[F], *args: Any, **kwargs: Any) -> F:
    """Construct ``face(*args, **kwargs)`` in the shared pool, so the event loop never blocks.

    Opening a store does blocking work (the file or the connections, schema migration,
    loading the model). When the caller is cancelled while it runs, the face built for
    nobody is closed as soon as it is ready, so its store does not stay open.
    """
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    future = loop.run_in_executor(shared_pool(), lambda: ctx.run(face, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_close_unclaimed)
        raise


def _close_unclaimed(future: asyncio.Future[Any]) -> None:
    """Close a face whose opener was cancelled (in the pool: closing blocks)."""
    if future.cancelled() or future.exception() is not None:
        return
    shared_pool().submit(future.result()._engine.close)
