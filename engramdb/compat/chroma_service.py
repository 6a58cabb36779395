"""ChromaService style: ``MemoryService(url=None)`` with ``add_memory``, ``retrieve_memories``,
``update_memory`` and ``delete_memory`` (all coroutines), over :class:`AsyncMemory`.

A Chroma *collection* becomes an engramdb namespace by default (``collection_as=
"namespace"``: collections stay apart as they were, ids included); with ``collection_as=
"type"`` every collection shares one namespace and becomes the records' ``type`` (lowercased),
so one search can later span them. ``score_threshold`` is the library's ``threshold``: the
least cosine similarity a hit's best chunk must have; ``score`` in the results is that
similarity and ``distance`` is ``1 - score`` (Chroma's cosine distance).
"""

from __future__ import annotations

from typing import Any, Literal

from engramdb._async_memory import AsyncMemory
from engramdb.compat._urls import url_from_env
from engramdb.errors import NotFoundError, ValidationError


class MemoryService:
    """The ChromaService verbs over one engramdb store (``ENGRAM_URL`` by default).

    Example::

        svc = MemoryService()
        ids = await svc.add_memory("Alice likes tea", collection="profiles")
        hits = await svc.retrieve_memories("what does alice drink", collection="profiles")
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        collection_as: Literal["namespace", "type"] = "namespace",
        embedder: str | None = None,
    ) -> None:
        if collection_as not in ("namespace", "type"):
            raise ValidationError(
                f"collection_as must be 'namespace' or 'type', got {collection_as!r}",
                field="collection_as",
            )
        self.url = url or url_from_env(("ENGRAM_URL",))
        self.collection_as = collection_as
        self._embedder = embedder
        self._memory: AsyncMemory | None = None

    async def _scope(self, collection: str) -> tuple[AsyncMemory, str | None]:
        """The memory view and record type a collection maps to."""
        if not isinstance(collection, str) or not collection:
            raise ValidationError("collection must be a non-empty string", field="collection")
        if self._memory is None:
            self._memory = await AsyncMemory.open(self.url, embedder=self._embedder)
        if self.collection_as == "namespace":
            return self._memory.with_namespace(collection), None
        return self._memory, collection.lower()

    async def add_memory(
        self,
        text: str,
        collection: str = "default",
        metadata: dict[str, Any] | None = None,
        max_chunk_tokens: int | None = None,
    ) -> list[str]:
        """Store ``text``; return its id (as a list, like the chunked original).

        engramdb keeps one record and indexes its sentence chunks itself (at the store's
        chunk size), so ``max_chunk_tokens`` is checked but does not split the record.
        A ``user_id`` string in ``metadata`` also scopes the record to that user.
        """
        if max_chunk_tokens is not None and (
            not isinstance(max_chunk_tokens, int) or max_chunk_tokens < 1
        ):
            raise ValidationError(
                "max_chunk_tokens must be a positive integer", field="max_chunk_tokens"
            )
        mem, type_ = await self._scope(collection)
        meta = dict(metadata or {})
        user = meta.get("user_id")
        results = await mem.add(
            text, metadata=meta, type=type_, user_id=user if isinstance(user, str) else None
        )
        return [r.record.id for r in results if r.record is not None]

    async def retrieve_memories(
        self,
        query: str,
        collection: str = "default",
        top_k: int = 5,
        score_threshold: float | None = None,
    ) -> list[dict[str, Any]]:
        """The ``top_k`` closest memories: ``{"id", "text", "metadata", "score", "distance"}``."""
        mem, type_ = await self._scope(collection)
        page = await mem.search(query, top_k=top_k, type=type_, threshold=score_threshold)
        out = []
        for hit in page.hits:
            score = hit.parts.vector if hit.parts.vector is not None else hit.score
            out.append(
                {
                    "id": hit.record.id,
                    "text": hit.record.text,
                    "metadata": hit.record.metadata,
                    "score": score,
                    "distance": 1.0 - score,
                }
            )
        return out

    async def update_memory(
        self,
        memory_id: str,
        collection: str = "default",
        new_text: str | None = None,
        new_metadata: dict[str, Any] | None = None,
    ) -> bool:
        """Change a memory's text and/or metadata; False when the collection has no such id."""
        mem, type_ = await self._scope(collection)
        if not await self._owns(mem, memory_id, type_):
            return False
        await mem.update(memory_id, text=new_text, metadata=new_metadata)
        return True

    async def delete_memory(self, memory_id: str, collection: str = "default") -> bool:
        """Delete a memory; False when the collection has no such id."""
        mem, type_ = await self._scope(collection)
        if not await self._owns(mem, memory_id, type_):
            return False
        await mem.delete(memory_id)
        return True

    @staticmethod
    async def _owns(mem: AsyncMemory, memory_id: str, type_: str | None) -> bool:
        try:
            record = await mem.get(memory_id)
        except NotFoundError:
            return False
        return type_ is None or record.type == type_

    async def close(self) -> None:
        """Close the store."""
        if self._memory is not None:
            await self._memory.aclose()
            self._memory = None
