"""The ``archived_records`` table's SQL, shared by both stores (``{p}``: the placeholder).

Consolidation takes a record out of the live set (merged into a near-duplicate, or decayed
below the retention floor) by moving its export image here and deleting it from
``records`` in one transaction; see :meth:`engramdb.stores.base.Archive.archive_records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engramdb.models import MemoryRecord
from engramdb.stores.prepared import ArchivedRow, ArchiveItem
from engramdb.stores.rows import change_row

ARCHIVE_COLUMNS = (
    "namespace",
    "id",
    "user_id",
    "thread_id",
    "reason",
    "merged_into",
    "merge_group",
    "image",
    "survivor",
    "archived_at",
)
_COLS = ", ".join(ARCHIVE_COLUMNS)


def upsert_archived_sql(p: str) -> str:
    """Insert one archive row; a row left by an interrupted restore is replaced."""
    values = ", ".join([p] * len(ARCHIVE_COLUMNS))
    updates = ", ".join(f"{c} = excluded.{c}" for c in ARCHIVE_COLUMNS[2:])
    return (
        f"INSERT INTO archived_records({_COLS}) VALUES ({values}) "
        f"ON CONFLICT (namespace, id) DO UPDATE SET {updates}"
    )


def insert_archived_sql(p: str) -> str:
    """Insert one archive row unless the id is archived already (import: idempotent)."""
    values = ", ".join([p] * len(ARCHIVE_COLUMNS))
    return f"INSERT INTO archived_records({_COLS}) VALUES ({values}) ON CONFLICT DO NOTHING"


def select_archived_sql(p: str, where: str) -> str:
    """Select archive rows of one namespace matching ``where`` (placeholders ``{p}``)."""
    return f"SELECT {_COLS} FROM archived_records WHERE namespace = {p} AND {where}"


def archived_row(row: Sequence[Any]) -> ArchivedRow:
    """One row selected with :data:`ARCHIVE_COLUMNS` as an ArchivedRow."""
    return ArchivedRow(*row)


def archive_values(namespace: str, rec: MemoryRecord, it: ArchiveItem, at: int) -> tuple[Any, ...]:
    """The archive row of ``it`` in :data:`ARCHIVE_COLUMNS` order."""
    return (
        namespace,
        rec.id,
        rec.user_id or "",
        rec.thread_id or "",
        it.reason,
        it.merged_into,
        it.merge_group,
        it.image,
        it.survivor,
        at,
    )


def row_values(r: ArchivedRow) -> tuple[Any, ...]:
    """An ArchivedRow in :data:`ARCHIVE_COLUMNS` order (import of exported archive lines)."""
    return (
        r.namespace,
        r.id,
        r.user_id,
        r.thread_id,
        r.reason,
        r.merged_into,
        r.merge_group,
        r.image,
        r.survivor,
        r.archived_at,
    )


def archive_history(namespace: str, rec: MemoryRecord, it: ArchiveItem, at: int) -> tuple[Any, ...]:
    """The history row of taking ``rec`` out (op ``it.op``, after-image ``it.after``)."""
    row = list(change_row(namespace, rec, None, at, it.op))
    row[7] = it.after
    return tuple(row)
