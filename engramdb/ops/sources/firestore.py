"""``firestore-export:///file.json``: Firestore documents exported as JSON.

The widely used ``__collections__`` nesting (node-firestore-import-export and its kin):
``{"__collections__": {"users": {"<doc id>": {<fields>, "__collections__": {…}}}}}``. The
mapping names the collection path to read, with ``*`` for any document id
(``"collection": "users/*/memories"``). Each matched document is one item: its fields,
plus ``$id`` (the document id), ``$parent`` (the parent document's id, e.g. to fill
``user_id``) and ``$path``. Timestamps stay as the export wrote them
(``{"__datatype__": "timestamp", "value": {"_seconds", "_nanoseconds"}}`` and the other
shapes); the mapping's date parser reads them. Source id: the document path. Order:
the file's order.

``firestore://<project>/<collection path>`` reads a live database with the optional
``google-cloud-firestore`` package (documents in id order); it cannot be reached from
the test machine, so that reader is untested against the real service.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engramdb.errors import ValidationError
from engramdb.ops.sources.base import EmbeddingModel, SourceItem, batched

NESTED = "__collections__"


def _pattern(mapping: dict[str, Any] | None) -> list[str]:
    path = (mapping or {}).get("collection")
    if not isinstance(path, str) or not path.strip("/"):
        raise ValidationError(
            "a Firestore source needs a mapping naming its 'collection' path, "
            'e.g. "users/*/memories"',
            field="collection",
        )
    parts = path.strip("/").split("/")
    if len(parts) % 2 == 0:
        raise ValidationError(
            f"collection path {path!r} names a document, not a collection (it needs an odd "
            "number of segments)",
            field="collection",
        )
    return parts


class FirestoreExportSource:
    """Documents of one collection path in an exported JSON file."""

    kind = "firestore-export"

    def __init__(self, path: Path, mapping: dict[str, Any] | None) -> None:
        if not path.is_file():
            raise ValidationError(f"the export file {path} does not exist", field="source")
        self.path = path
        self.parts = _pattern(mapping)
        self.collection = self.parts[-1]

    def builtin_mapping(self) -> dict[str, Any] | None:
        """None: a mapping names the collection path and the fields."""
        return None

    def embedding_model(self) -> EmbeddingModel | None:
        """Unknown unless the mapping states it."""
        return None

    def count(self) -> int | None:
        """Not counted ahead."""
        return None

    def read_batches(self, size: int) -> Iterator[list[SourceItem]]:
        """Yield the matched documents in file order."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"{self.path} is not JSON: {exc.msg} at line {exc.lineno}", field="source"
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get(NESTED), dict):
            raise ValidationError(
                f"{self.path} is not a Firestore export (no top-level {NESTED!r})", field="source"
            )
        return batched(self._walk(data[NESTED], 0, [], None), size)

    def close(self) -> None:
        """Nothing held open."""

    def _walk(
        self, collections: dict[str, Any], depth: int, path: list[str], parent: str | None
    ) -> Iterator[SourceItem]:
        want = self.parts[depth]
        for name, docs in collections.items():
            if not fnmatch.fnmatchcase(name, want) or not isinstance(docs, dict):
                continue
            for doc_id, doc in docs.items():
                doc_path = [*path, name, doc_id]
                sid = "/".join(doc_path)
                if depth == len(self.parts) - 1:
                    if not isinstance(doc, dict):
                        yield SourceItem(sid, self.collection, {}, error="not a document object")
                        continue
                    fields = {k: v for k, v in doc.items() if k != NESTED}
                    fields.update({"$id": doc_id, "$parent": parent, "$path": sid})
                    yield SourceItem(sid, self.collection, fields)
                elif (
                    isinstance(doc, dict)
                    and fnmatch.fnmatchcase(doc_id, self.parts[depth + 1])
                    and isinstance(doc.get(NESTED), dict)
                ):
                    yield from self._walk(doc[NESTED], depth + 2, doc_path, doc_id)


class FirestoreLiveSource:  # pragma: no cover - needs the real service (untested)
    """Documents of a collection path read from a live Firestore (optional, untested)."""

    kind = "firestore"

    def __init__(self, project: str, collection_path: str) -> None:
        try:
            from google.cloud import firestore  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError as exc:
            raise ValidationError(
                "reading a live Firestore needs google-cloud-firestore (pip install "
                "google-cloud-firestore); an export file works without it",
                field="source",
            ) from exc
        self._db = firestore.Client(project=project)
        self.parts = _pattern({"collection": collection_path})
        self.collection = self.parts[-1]

    def builtin_mapping(self) -> dict[str, Any] | None:
        """None: a mapping names the fields."""
        return None

    def embedding_model(self) -> EmbeddingModel | None:
        """Unknown unless the mapping states it."""
        return None

    def count(self) -> int | None:
        """Not counted ahead."""
        return None

    def read_batches(self, size: int) -> Iterator[list[SourceItem]]:
        """Yield the documents of every collection the path matches (a collection group)."""
        query = self._db.collection_group(self.collection).order_by("__name__")
        items = []
        for snap in query.stream():
            parts = snap.reference.path.split("/")
            if len(parts) != len(self.parts) + 1 or not all(
                fnmatch.fnmatchcase(p, w) for p, w in zip(parts, self.parts, strict=False)
            ):
                continue
            parent = parts[-3] if len(parts) >= 3 else None
            fields = {**(snap.to_dict() or {}), "$id": snap.id, "$parent": parent}
            fields["$path"] = snap.reference.path
            items.append(SourceItem(snap.reference.path, self.collection, fields))
        return batched(iter(items), size)

    def close(self) -> None:
        """Close the client."""
        self._db.close()
