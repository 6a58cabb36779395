"""Backend factory style: ``MemoryManager(memory_backend_type=None, **config)``.

The store comes from the argument or ``MEMORY_BACKEND_TYPE``: a store URL, or a name —
``engramdb`` (``ENGRAM_URL``), ``sqlite`` (``ENGRAM_URL`` when it is SQLite, else
``config["db_path"]`` or ``memory.db``), ``postgres``/``postgresql`` (``ENGRAM_URL`` when
it is PostgreSQL, else ``POSTGRES_DSN`` / ``DATABASE_URL``), ``memory`` (in-memory SQLite).
The verbs are coroutines (``initialize``, ``close``, ``add_memory_item``,
``add_memory_items``, ``get_memory_item``, ``search_memory_items``,
``get_session_history``, ``delete_memory_item``, ``health_check``); the ``_sync`` twins
work whether or not an event loop runs in the calling thread. An item is a dict or an
object with ``text`` or ``content``, ``user_id``, ``session_id`` (the thread),
``timestamp``, ``metadata`` (and optionally ``role``, ``type``, ``tags``, ``id``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from engramdb._async_memory import AsyncMemory
from engramdb.compat._run import run_sync
from engramdb.compat._urls import url_from_env
from engramdb.errors import NotFoundError, ValidationError
from engramdb.models import MemoryRecord

# config keys the factory reads; the rest are kept (other backends' options) and unused.
KNOWN_CONFIG = ("url", "namespace", "embedder", "db_path")


def backend_url(kind: str | None, config: dict[str, Any]) -> str:
    """The store URL for a backend type (see the module docstring).

    Raises:
        ValidationError: an unknown name, or the variables it needs are unset.
    """
    if config.get("url"):
        return str(config["url"])
    kind = (kind or os.environ.get("MEMORY_BACKEND_TYPE") or "engramdb").strip()
    if "://" in kind or kind == ":memory:":
        return kind
    name = kind.lower()
    engram_url = os.environ.get("ENGRAM_URL", "").strip()
    if name == "engramdb":
        return engram_url or url_from_env()
    if name == "sqlite":
        if engram_url.startswith("sqlite:") or engram_url == ":memory:":
            return engram_url
        return f"sqlite:///{config.get('db_path') or 'memory.db'}"
    if name in ("postgres", "postgresql", "pgvector"):
        if engram_url.startswith(("postgres", "postgresql")):
            return engram_url
        return url_from_env(("POSTGRES_DSN", "DATABASE_URL"))
    if name in ("memory", "in_memory", "inmemory"):
        return ":memory:"
    raise ValidationError(
        f"unknown memory backend {kind!r}: use a store URL or engramdb, sqlite, postgres, memory",
        field="memory_backend_type",
    )


def _field(item: Any, *names: str) -> Any:
    for name in names:
        value = item.get(name) if isinstance(item, dict) else getattr(item, name, None)
        if value is not None:
            return value
    return None


def _as_dict(record: MemoryRecord, score: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": record.id,
        "content": record.text,
        "text": record.text,
        "user_id": record.user_id,
        "session_id": record.thread_id,
        "timestamp": record.occurred_at or record.created_at,
        "metadata": record.metadata,
        "type": record.type,
        "tags": record.tags,
    }
    if score is not None:
        out["score"] = score
    return out


class MemoryManager:
    """The backend-factory manager over one engramdb store (see the module docstring).

    Example::

        manager = MemoryManager("sqlite", db_path="/tmp/chat.db")
        manager.initialize_sync()
        manager.add_memory_item_sync({"content": "hi", "user_id": "u1", "session_id": "s1"})
    """

    def __init__(self, memory_backend_type: str | None = None, **config: Any) -> None:
        self.memory_backend_type = memory_backend_type
        self.config = config
        self.url = backend_url(memory_backend_type, config)
        self._memory: AsyncMemory | None = None

    @property
    def memory(self) -> AsyncMemory:
        """The open AsyncMemory (after ``initialize``)."""
        if self._memory is None:
            raise ValidationError("MemoryManager is not initialized: await initialize() first")
        return self._memory

    async def initialize(self) -> None:
        """Open the store (again: nothing)."""
        if self._memory is None:
            self._memory = await AsyncMemory.open(
                self.url,
                namespace=self.config.get("namespace"),
                embedder=self.config.get("embedder"),
            )

    async def close(self) -> None:
        """Close the store (a closed manager may be initialized again)."""
        if self._memory is not None:
            memory, self._memory = self._memory, None
            await memory.aclose()

    async def _ready(self) -> AsyncMemory:
        await self.initialize()
        return self.memory

    async def add_memory_item(self, item: Any) -> str:
        """Store one item; return its id."""
        return (await self.add_memory_items([item]))[0]

    async def add_memory_items(self, items: Sequence[Any]) -> list[str]:
        """Store items in one transaction; return their ids in order."""
        batch = []
        for i, item in enumerate(items):
            text = _field(item, "text", "content")
            if not isinstance(text, str):
                raise ValidationError(f"item {i} has no text or content", field="text")
            metadata = dict(_field(item, "metadata") or {})
            role = _field(item, "role")
            if role is not None:
                metadata.setdefault("role", role)
            entry: dict[str, Any] = {"text": text, "metadata": metadata}
            for target, names in (
                ("id", ("id",)),
                ("user_id", ("user_id",)),
                ("thread_id", ("session_id", "thread_id")),
                ("occurred_at", ("timestamp", "created_at")),
                ("type", ("type", "memory_type")),
                ("tags", ("tags",)),
            ):
                value = _field(item, *names)
                if value is not None:
                    entry[target] = value.lower() if target == "type" else value
            batch.append(entry)
        if not batch:
            return []
        results = await (await self._ready()).add(batch)
        return [r.record.id for r in results if r.record is not None]

    async def get_memory_item(self, item_id: str) -> dict[str, Any] | None:
        """The item with this id, or None."""
        try:
            return _as_dict(await (await self._ready()).get(item_id))
        except NotFoundError:
            return None

    async def search_memory_items(
        self,
        query: str,
        user_id: str | None = None,
        session_id: str | None = None,
        limit: int = 10,
    ) -> list[dict[str, Any]]:
        """The items most relevant to ``query`` (``score`` added), best first."""
        page = await (await self._ready()).search(
            query, user_id=user_id, thread_id=session_id, top_k=limit
        )
        return [_as_dict(h.record, h.score) for h in page.hits]

    async def get_session_history(self, session_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """A session's items in the order they were added."""
        page = await (await self._ready()).list(thread_id=session_id, limit=limit)
        return [_as_dict(r) for r in page.records]

    async def delete_memory_item(self, item_id: str) -> bool:
        """Delete an item; False when there was none."""
        try:
            await (await self._ready()).delete(item_id)
        except NotFoundError:
            return False
        return True

    async def health_check(self) -> dict[str, bool]:
        """Each component (``store``, ``embedder``, ``cache``) → healthy; a cache that is not
        configured counts as healthy (``disabled``)."""
        health = await (await self._ready()).health()
        return {
            k: v.get("status") in ("ok", "disabled")
            for k, v in health.items()
            if isinstance(v, dict)
        }

    # --- the synchronous twins --------------------------------------------------------

    def initialize_sync(self) -> None:
        """``initialize`` from synchronous code."""
        run_sync(self.initialize())

    def close_sync(self) -> None:
        """``close`` from synchronous code."""
        run_sync(self.close())

    def add_memory_item_sync(self, item: Any) -> str:
        """``add_memory_item`` from synchronous code."""
        return run_sync(self.add_memory_item(item))

    def add_memory_items_sync(self, items: Sequence[Any]) -> list[str]:
        """``add_memory_items`` from synchronous code."""
        return run_sync(self.add_memory_items(items))

    def get_memory_item_sync(self, item_id: str) -> dict[str, Any] | None:
        """``get_memory_item`` from synchronous code."""
        return run_sync(self.get_memory_item(item_id))

    def search_memory_items_sync(
        self, query: str, user_id: str | None = None, session_id: str | None = None, limit: int = 10
    ) -> list[dict[str, Any]]:
        """``search_memory_items`` from synchronous code."""
        return run_sync(self.search_memory_items(query, user_id, session_id, limit))

    def get_session_history_sync(self, session_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """``get_session_history`` from synchronous code."""
        return run_sync(self.get_session_history(session_id, limit))

    def delete_memory_item_sync(self, item_id: str) -> bool:
        """``delete_memory_item`` from synchronous code."""
        return run_sync(self.delete_memory_item(item_id))
