"""``jsonl:///file``, ``json:///file`` and ``mem0:///file``: memories kept in a JSON file.

* JSONL: one JSON object per line (blank lines ignored); a line that is not a JSON object
  is an item carrying an error (skipped and logged), not the end of the run.
* JSON: an array of objects, or an object holding one (the first array-valued key, or the
  key the mapping names as ``"records"``).
* mem0: the output of mem0's ``get_all`` (``{"results": [{"id", "memory", "metadata",
  "user_id", "agent_id", "run_id", "created_at", …}]}``) with its mapping built in.

Order: the file's order. Default source id: the item's position (``$index``); a mapping
naming ``id`` uses that field instead. The collection is the file's name without suffix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engramdb.errors import ValidationError
from engramdb.ops.sources.base import EmbeddingModel, SourceItem, batched

MEM0_MAPPING: dict[str, Any] = {
    "text": "memory",
    "id": "id",
    "user_id": "user_id",
    "agent_id": "agent_id",
    "thread_id": "run_id",
    "occurred_at": "created_at",
    "metadata": "metadata",
    "optional": ["user_id", "agent_id", "run_id", "created_at", "metadata"],
}


class FileSource:
    """A JSONL, JSON or mem0 file."""

    def __init__(self, kind: str, path: Path, records_key: str | None = None) -> None:
        if not path.is_file():
            raise ValidationError(f"the source file {path} does not exist", field="source")
        self.kind = kind
        self.path = path
        self.collection = path.stem
        self._records_key = records_key

    def builtin_mapping(self) -> dict[str, Any] | None:
        """mem0 files have one; JSON and JSONL files need a mapping file."""
        return MEM0_MAPPING if self.kind == "mem0" else None

    def embedding_model(self) -> EmbeddingModel | None:
        """Unknown: files carry no vectors unless the mapping names them."""
        return None

    def count(self) -> int | None:
        """Not counted ahead (it would read the file twice)."""
        return None

    def read_batches(self, size: int) -> Iterator[list[SourceItem]]:
        """Yield the file's objects in file order."""
        return batched(self._items(), size)

    def close(self) -> None:
        """Nothing held open between batches."""

    def _items(self) -> Iterator[SourceItem]:
        if self.kind == "jsonl":
            with self.path.open(encoding="utf-8") as fh:
                index = 0
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield self._bad(f"line {lineno}", f"not JSON: {exc.msg} (line {lineno})")
                        continue
                    yield self._item(index, obj, f"line {lineno}")
                    index += 1
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"{self.path} is not JSON: {exc.msg} at line {exc.lineno}", field="source"
            ) from exc
        for index, obj in enumerate(self._array(data)):
            yield self._item(index, obj, f"item {index}")

    def _array(self, data: Any) -> list[Any]:
        if isinstance(data, list):
            return data
        if isinstance(data, dict):
            key = self._records_key or ("results" if self.kind == "mem0" else None)
            if key is not None:
                if not isinstance(data.get(key), list):
                    raise ValidationError(f"{self.path} has no array under {key!r}", field="source")
                return list(data[key])
            for value in data.values():
                if isinstance(value, list):
                    return value
        raise ValidationError(
            f"{self.path} holds neither an array nor an object holding one", field="source"
        )

    def _item(self, index: int, obj: Any, where: str) -> SourceItem:
        if not isinstance(obj, dict):
            return self._bad(str(index), f"{where} is not a JSON object")
        return SourceItem(str(index), self.collection, {**obj, "$index": index})

    def _bad(self, source_id: str, reason: str) -> SourceItem:
        return SourceItem(source_id, self.collection, {}, error=reason)
