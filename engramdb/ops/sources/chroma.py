"""``chroma:///path/to/persist_dir[?collection=NAME]``: a Chroma persistent store.

Reads documents, metadatas, ids and the stored embeddings of every collection (or the
one named) with ``collection.get`` in pages. Order: collections by name, then Chroma's
own insertion order within each (``get`` with offset and limit pages over it), the same
on every run over the same data. The embedding model comes from the collection's
recorded embedding function (``default`` is Chroma's ONNX all-MiniLM-L6-v2), or from the
mapping when the collection was filled with vectors made outside Chroma.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engramdb.errors import ValidationError
from engramdb.ops.sources.base import EmbeddingModel, SourceItem

# Chroma's names for its embedding functions -> the model they run.
_KNOWN_MODELS = {
    "default": "all-MiniLM-L6-v2",
    "onnx_mini_lm_l6_v2": "all-MiniLM-L6-v2",
}
BUILTIN_MAPPING: dict[str, Any] = {
    "text": "$document",
    "id": "$id",
    "user_id": "user_id",
    "agent_id": "agent_id",
    "thread_id": "thread_id",
    "occurred_at": "created_at",
    "type": "type",
    "metadata": "*",
    "optional": ["user_id", "agent_id", "thread_id", "created_at", "type"],
}


class ChromaSource:
    """A Chroma ``PersistentClient`` directory, read through the real ``chromadb`` package."""

    kind = "chroma"

    def __init__(self, path: Path, collection: str | None = None) -> None:
        if not path.is_dir():
            raise ValidationError(f"the Chroma directory {path} does not exist", field="source")
        try:
            import chromadb
        except ImportError as exc:  # pragma: no cover - an extra of the package
            raise ValidationError(
                "reading Chroma needs the chromadb package (pip install 'engramdb[migrate]')",
                field="source",
            ) from exc
        self._client = chromadb.PersistentClient(path=str(path))
        names = sorted(c.name for c in self._client.list_collections())
        if collection is not None:
            if collection not in names:
                raise ValidationError(
                    f"Chroma collection {collection!r} not found in {path} (it has {names})",
                    field="source",
                )
            names = [collection]
        self.collections = names

    def builtin_mapping(self) -> dict[str, Any] | None:
        """Document as text, the Chroma id as source id, every metadata key kept."""
        return BUILTIN_MAPPING

    def embedding_model(self) -> EmbeddingModel | None:
        """The model recorded by the collections' embedding function, if all agree."""
        found: set[EmbeddingModel] = set()
        for name in self.collections:
            col = self._collection(name)
            config = getattr(col, "configuration_json", None) or {}
            ef = config.get("embedding_function") if isinstance(config, dict) else None
            if not isinstance(ef, dict) or not ef.get("name"):
                return None  # vectors made outside Chroma: only a mapping can say
            ef_name = str(ef["name"])
            model = _KNOWN_MODELS.get(ef_name) or str(
                (ef.get("config") or {}).get("model_name") or ef_name
            )
            found.add(EmbeddingModel(model, self._dim(col)))
        return found.pop() if len(found) == 1 else None

    def count(self) -> int | None:
        """The number of records over the collections read."""
        return int(sum(self._collection(n).count() for n in self.collections))

    def read_batches(self, size: int) -> Iterator[list[SourceItem]]:
        """Page through each collection with ``get`` (documents, metadatas, embeddings)."""
        for name in self.collections:
            col = self._collection(name)
            offset = 0
            while True:
                got = col.get(
                    limit=size, offset=offset, include=["documents", "metadatas", "embeddings"]
                )
                if not got["ids"]:
                    break
                yield _items(name, got)
                offset += len(got["ids"])

    def close(self) -> None:
        """Nothing to release (Chroma's client closes with the process)."""

    # --- writing (the legacy side of dual write and shadow reads) ------------------------

    def put(self, collection: str, items: list[SourceItem]) -> None:
        """Upsert items (``$document`` the document, other fields the metadata, the
        item's vector the embedding) into ``collection``, created if missing."""
        col = self._client.get_or_create_collection(collection, embedding_function=None)
        rows: dict[str, Any] = {
            "ids": [i.source_id for i in items],
            "documents": [str(i.fields.get("$document") or "") for i in items],
            "metadatas": [_chroma_metadata(i.fields) for i in items],
            "embeddings": np.asarray([i.embedding for i in items], dtype=np.float32),
        }
        col.upsert(**rows)
        if collection not in self.collections:
            self.collections = sorted([*self.collections, collection])

    def remove(self, collection: str, source_ids: list[str]) -> None:
        """Delete these ids from ``collection`` (absent ones are ignored)."""
        self._collection(collection).delete(ids=source_ids)

    def fetch(self, collection: str, source_ids: list[str]) -> list[SourceItem]:
        """The items of ``collection`` with these ids (absent ones left out)."""
        got = self._collection(collection).get(
            ids=source_ids, include=["documents", "metadatas", "embeddings"]
        )
        return _items(collection, got)

    def source_ids(self, collection: str) -> list[str]:
        """Every id of ``collection``."""
        return [str(i) for i in self._collection(collection).get(include=[])["ids"]]

    def nearest(
        self, collection: str, vector: np.ndarray, k: int, where: dict[str, Any] | None
    ) -> list[tuple[SourceItem, float]]:
        """The ``k`` items nearest ``vector`` passing ``where`` (Chroma's filter), each
        with its distance."""
        got = self._collection(collection).query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=k,
            where=where or None,
            include=["documents", "metadatas", "embeddings", "distances"],
        )
        flat = {key: (got.get(key) or [None])[0] for key in ("ids", "documents", "metadatas")}
        embs = got.get("embeddings")
        flat["embeddings"] = None if embs is None else embs[0]
        distances = (got.get("distances") or [[]])[0]
        return list(zip(_items(collection, flat), [float(d) for d in distances], strict=True))

    def count_where(self, collection: str, where: dict[str, Any] | None) -> int:
        """How many items of ``collection`` pass ``where``."""
        return len(self._collection(collection).get(where=where or None, include=[])["ids"])

    def _collection(self, name: str) -> Any:
        if name not in self.collections:
            raise ValidationError(f"Chroma collection {name!r} not found", field="collection")
        # No embedding function is instantiated: migrate never asks Chroma to embed.
        return self._client.get_collection(name, embedding_function=None)

    @staticmethod
    def _dim(col: Any) -> int | None:
        got = col.get(limit=1, include=["embeddings"])
        embs = got.get("embeddings")
        return None if embs is None or len(embs) == 0 else len(embs[0])


def _items(collection: str, got: Any) -> list[SourceItem]:
    """A ``get`` answer as source items (``$id`` and ``$document`` pseudo-fields added)."""
    ids = got["ids"] or []
    docs = got.get("documents") or [None] * len(ids)
    metas = got.get("metadatas") or [None] * len(ids)
    embs = got.get("embeddings")
    out = []
    for i, rid in enumerate(ids):
        fields: dict[str, Any] = dict(metas[i] or {})
        fields["$id"] = rid
        fields["$document"] = docs[i]
        vec = None if embs is None else np.asarray(embs[i], dtype=np.float32)
        out.append(SourceItem(str(rid), collection, fields, vec))
    return out


def _chroma_metadata(fields: dict[str, Any]) -> dict[str, Any] | None:
    """Fields as Chroma metadata: scalars kept, None left out, anything else as JSON."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key.startswith("$") or value is None:
            continue
        out[key] = value if isinstance(value, str | int | float | bool) else json.dumps(value)
    return out or None
