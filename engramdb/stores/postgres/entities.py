"""The entity role of the PostgreSQL store: the extraction queue, its writes, entity reads.

The SQL is shared with SQLite (:mod:`engramdb.stores.entity_rows`); this part owns the
transactions. Reads run on the primary in one snapshot (an entity read first catches up
the queue, and a replica might not have replayed that write yet). An extraction write
locks its record's row, so a concurrent delete waits and its trigger then removes what was
just written, and of two processes extracting one record the second finds it dequeued.
New records are queued by a trigger (migration 0014), so every insert path, COPY
included, queues them.
"""

from __future__ import annotations

from engramdb.models import Entity, EntityGraph, Extraction
from engramdb.stores.entity_rows import EntityRows
from engramdb.stores.postgres.connection import Database
from engramdb.stores.prepared import AliasJoin, PendingText
from engramdb.timeutil import now_us

_ROWS = EntityRows("postgresql")


class Entities:
    """See the module docstring."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def extraction_pending(
        self, namespace: str | None, user_id: str | None, limit: int
    ) -> list[PendingText]:
        """See :meth:`~engramdb.stores.base.EntityStore.extraction_pending`."""
        with self._db.read("reading the extraction queue") as c:
            return _ROWS.pending(c, namespace, user_id, limit)

    def extraction_counts(self, namespace: str | None) -> dict[str, int]:
        """See :meth:`~engramdb.stores.base.EntityStore.extraction_counts`."""
        with self._db.read("counting entities", snapshot=True) as c:
            return _ROWS.counts(c, namespace)

    def write_extractions(
        self, items: list[tuple[PendingText, Extraction]], join: AliasJoin | None = None
    ) -> int:
        """See :meth:`~engramdb.stores.base.EntityStore.write_extractions`."""
        now = now_us()
        with self._db.write("writing extracted entities") as c:
            written = sum(_ROWS.write(c, item, found, now) for item, found in items)
            if join is not None:
                _ROWS.join_aliases(c, items, join, now)
            return written

    def fail_extraction(self, item: PendingText, error: str) -> None:
        """See :meth:`~engramdb.stores.base.EntityStore.fail_extraction`."""
        with self._db.write("parking a failed extraction") as c:
            _ROWS.fail(c, item, error)

    def retry_failed_extractions(self) -> int:
        """See :meth:`~engramdb.stores.base.EntityStore.retry_failed_extractions`."""
        with self._db.write("queueing failed extractions again") as c:
            return _ROWS.retry_failed(c)

    def unlink_entity(self, namespace: str, entity_id: int) -> int | None:
        """See :meth:`~engramdb.stores.base.EntityStore.unlink_entity`."""
        with self._db.write("separating an entity") as c:
            return _ROWS.unlink(c, namespace, entity_id, now_us())

    def entity_links(self, namespace: str, entity_id: int) -> list[dict[str, object]]:
        """See :meth:`~engramdb.stores.base.EntityStore.entity_links`."""
        with self._db.read("reading the alias log") as c:
            return _ROWS.links(c, namespace, entity_id)

    def list_entities(
        self,
        namespace: str,
        user_id: str | None,
        query: str | None,
        type_: str | None,
        limit: int,
    ) -> list[Entity]:
        """See :meth:`~engramdb.stores.base.EntityStore.list_entities`."""
        with self._db.read("listing entities", snapshot=True) as c:
            return _ROWS.list_entities(c, namespace, user_id, query, type_, limit)

    def get_entity(self, namespace: str, entity_id: int, mentions: int) -> Entity | None:
        """See :meth:`~engramdb.stores.base.EntityStore.get_entity`."""
        with self._db.read("reading an entity", snapshot=True) as c:
            return _ROWS.get_entity(c, namespace, entity_id, mentions)

    def entity_graph(
        self, namespace: str, entity_id: int, depth: int, types: list[str] | None
    ) -> EntityGraph | None:
        """See :meth:`~engramdb.stores.base.EntityStore.entity_graph`."""
        with self._db.read("reading relations", snapshot=True) as c:
            return _ROWS.graph(c, namespace, entity_id, depth, types)

    def records_about(self, namespace: str, entity_id: int, limit: int) -> list[str]:
        """See :meth:`~engramdb.stores.base.EntityStore.records_about`."""
        with self._db.read("reading an entity's records") as c:
            return _ROWS.records_about(c, namespace, entity_id, limit)

    def record_entities(self, namespace: str, record_ids: list[str]) -> dict[str, EntityGraph]:
        """See :meth:`~engramdb.stores.base.EntityStore.record_entities`."""
        with self._db.read("reading records' entities", snapshot=True) as c:
            return _ROWS.record_graphs(c, namespace, record_ids)

    def answer_kinds(self, namespace: str, record_ids: list[str]) -> dict[str, int]:
        """See :meth:`~engramdb.stores.base.EntityStore.answer_kinds`."""
        # One statement sees one snapshot already: a transaction would add three round trips.
        with self._db.read("reading records' answer kinds") as c:
            return _ROWS.answer_kinds(c, namespace, record_ids)
