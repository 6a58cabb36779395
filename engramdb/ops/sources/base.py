"""The one small interface every legacy source adapter implements, and what it yields.

A source reads batches of :class:`SourceItem` (the raw fields of one stored memory with a
stable source id, the collection or table it came from, and its stored vector if the
source keeps one) and says, when it knows, which embedding model made those vectors.
What a field means is the mapping's business (:mod:`engramdb.ops.mapping`), not the
adapter's. Migration only reads; the adapters of stores that are live (Chroma, SQL tables)
can also write (:class:`WritableSource`), for running them beside engramdb. An item the
adapter cannot even read (a line that is not JSON, a Redis element that is not a turn)
still comes out, carrying ``error``, so it is logged and counted as skipped instead of
stopping the run.

Order: a source yields its items in the same order on every run over the same data
(resume relies on it); each adapter says how it ensures that.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class SourceItem:
    """One stored memory as the source holds it."""

    source_id: str
    """Stable within ``collection``: the derived engramdb id and provenance come from it."""
    collection: str
    """The collection, table, file or key prefix it came from (the default namespace)."""
    fields: dict[str, Any] = field(default_factory=dict)
    """The raw fields; adapters add ``$``-prefixed pseudo-fields (``$id``, ``$parent``…)."""
    embedding: np.ndarray | None = None
    """The stored vector, if the source keeps one."""
    error: str | None = None
    """Why the adapter could not read this item (it is skipped and logged)."""


@dataclass(frozen=True)
class EmbeddingModel:
    """The model that made a source's stored vectors."""

    name: str
    dim: int | None = None


@runtime_checkable
class LegacySource(Protocol):
    """What ``migrate`` reads from when the source is not an engramdb store."""

    kind: str
    """The source kind in provenance (``chroma``, ``jsonl``, ``sql``…)."""

    def builtin_mapping(self) -> dict[str, Any] | None:
        """The mapping used when the caller gives none (None: a mapping file is required)."""
        ...

    def embedding_model(self) -> EmbeddingModel | None:
        """The model of the stored vectors when the source records it, else None."""
        ...

    def count(self) -> int | None:
        """How many items there are, when cheap to know (a progress bar's total)."""
        ...

    def read_batches(self, size: int) -> Iterator[list[SourceItem]]:
        """Yield every item, ``size`` at a time, in the same order on every run."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


def batched(items: Iterator[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    """Group an item stream into lists of ``size``."""
    batch: list[SourceItem] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@runtime_checkable
class WritableSource(LegacySource, Protocol):
    """A legacy store that can also be written: the legacy side of dual write and shadow
    reads (:class:`engramdb.ops.legacy_memory.LegacyMemory`). Chroma, SQL tables and Redis
    are; files and exports are not (they are snapshots)."""

    def put(self, collection: str, items: list[SourceItem]) -> None:
        """Insert or replace items by source id."""
        ...

    def remove(self, collection: str, source_ids: list[str]) -> None:
        """Delete items by source id (absent ones ignored)."""
        ...

    def fetch(self, collection: str, source_ids: list[str]) -> list[SourceItem]:
        """The items with these source ids (absent ones left out)."""
        ...

    def source_ids(self, collection: str) -> list[str]:
        """Every source id of ``collection``."""
        ...

    def count_where(self, collection: str, where: dict[str, Any] | None) -> int:
        """How many items have these field values."""
        ...
