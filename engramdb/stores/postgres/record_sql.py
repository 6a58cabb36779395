"""The record row and history statements that several parts of the PostgreSQL store share.

The texts themselves come from :mod:`engramdb.stores.rows` (shared with SQLite), spelled
here once with psycopg's placeholder and PostgreSQL's ``metadata_raw`` (the JSON exactly as
given, where SQLite has ``metadata``).
"""

from __future__ import annotations

from typing import Any

import psycopg

from engramdb.models import MemoryRecord
from engramdb.stores.rows import HISTORY_SQL, RECORD_SELECT, row_to_record
from engramdb.stores.transfer_rows import HISTORY_COLUMNS, insert_sql

COLS = RECORD_SELECT.format(meta="metadata_raw")
# The same columns with the tags as JSON text: psycopg decodes a ``jsonb`` column of every
# row it fetches, while ``row_to_record`` decodes text only for the records it builds.
COLS_TAGS_TEXT = COLS.replace("r.tags,", "r.tags::text,")
INSERT_HISTORY = insert_sql("history", HISTORY_COLUMNS, "%s")
SELECT_HISTORY = HISTORY_SQL.format(p="%s")


def select_one(
    c: psycopg.Connection[Any], ns: str, record_id: str, lock: bool = False
) -> MemoryRecord | None:
    """Read one record by id (``lock``: ``FOR UPDATE``, until the transaction ends)."""
    row = c.execute(
        f"SELECT {COLS} FROM records r WHERE namespace = %s AND id = %s"
        + (" FOR UPDATE" if lock else ""),
        (ns, record_id),
    ).fetchone()
    return None if row is None else row_to_record(row)


def lock_rows(c: psycopg.Connection[Any], ns: str, record_ids: list[str]) -> dict[str, Any]:
    """Lock the records of these ids (``FOR UPDATE``, in ``rid`` order as every batch locks
    them, so two batches never wait on each other in a cycle); their rows by record id."""
    rows = c.execute(
        f"SELECT {COLS} FROM records r WHERE namespace = %s AND id = ANY(%s) "
        "ORDER BY r.rid FOR UPDATE",
        (ns, record_ids),
    ).fetchall()
    return {r[1]: r for r in rows}
