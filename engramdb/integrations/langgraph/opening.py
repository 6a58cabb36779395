"""How an adapter gets its ``Memory``: from a URL it opens (and closes), or one given."""

from __future__ import annotations

from engramdb._async_memory import AsyncMemory
from engramdb.config import Settings
from engramdb.embedders.base import Embedder
from engramdb.errors import ValidationError
from engramdb.memory import Memory


def open_memory(
    url_or_memory: str | Memory | AsyncMemory,
    *,
    namespace: str | None,
    embedder: str | Embedder | None = None,
    settings: Settings | None = None,
) -> tuple[Memory, bool]:
    """Return ``(memory, owned)``: a view of a given face, or a Memory opened from a URL.

    An owned Memory is closed with the adapter; a given one stays open (the caller's).
    """
    if isinstance(url_or_memory, Memory | AsyncMemory):
        if embedder is not None or settings is not None:
            raise ValidationError(
                "embedder= and settings= apply when opening a URL; this Memory is already open",
                field="embedder" if embedder is not None else "settings",
            )
        ns = url_or_memory.namespace if namespace is None else namespace
        return Memory(namespace=ns, _engine=url_or_memory.engine), False
    if not isinstance(url_or_memory, str):
        raise ValidationError(
            "expected a store URL or a Memory, got " + type(url_or_memory).__name__,
            field="url_or_memory",
        )
    return Memory(url_or_memory, namespace=namespace, embedder=embedder, settings=settings), True
