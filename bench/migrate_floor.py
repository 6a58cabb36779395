"""The floor under a migration into SQLite: the same rows, bare ``executemany``, same schema.

``bench migrate`` compares ``migrate`` with Chroma reading its own data out. On a small
machine the ratio can stay under 1.0 for reasons that are not the migration's: writing a
record with its chunk, keyword row and value-index rows costs what it costs. This module
measures that cost alone: the rows a finished migration wrote (records, chunks, keyword
rows, value-index rows, extraction queue) are read back from its file and inserted into a
fresh file of the same schema with one ``executemany`` per table and batch, one
transaction per batch, nothing else (no mapping, no checks, no batch log). ``migrate``
into SQLite cannot be faster than reading the source plus this.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

_TABLES = (
    ("records", "rid"),
    ("chunks", "rid"),
    ("chunks_fts", "rowid"),
    ("record_meta", "rid"),
    ("entity_queue", "rid"),
)


def _rows(db: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    conn = sqlite3.connect(db)
    try:
        out: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        for table, order in _TABLES:
            if table == "chunks_fts":
                cols = ["rowid", "body", "scope"]
            else:
                cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            rows = conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")
            out[table] = (cols, rows.fetchall())
        return out
    finally:
        conn.close()


def sqlite_floor(migrated: Path, empty: Path, batch_size: int) -> dict[str, Any]:
    """Insert the rows of the migrated file ``migrated`` into ``empty`` (a fresh store of
    the same schema) in batches; return the seconds and records/s of the inserts alone."""
    tables = _rows(migrated)
    records = tables["records"][1]
    rid_at = tables["records"][0].index("rid")
    conn = sqlite3.connect(empty, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    chunk_cols, chunk_rows = tables["chunks"]
    cid_at, crid_at = chunk_cols.index("id"), chunk_cols.index("rid")
    chunk_rid = {r[cid_at]: r[crid_at] for r in chunk_rows}
    by_rid: dict[str, dict[int, list[tuple[Any, ...]]]] = {}
    for table, _ in _TABLES[1:]:
        cols, rows = tables[table]
        grouped = by_rid.setdefault(table, {})
        for row in rows:
            # keyword rows are keyed by chunk id: grouped under the chunk's record
            rid = chunk_rid[row[0]] if table == "chunks_fts" else row[cols.index("rid")]
            grouped.setdefault(rid, []).append(row)
    sql = {
        table: f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        for table, (cols, _) in tables.items()
    }
    seconds = 0.0
    try:
        for start in range(0, len(records), batch_size):
            part = records[start : start + batch_size]
            rids = [r[rid_at] for r in part]
            batch = {
                table: [row for rid in rids for row in by_rid[table].get(rid, [])]
                for table, _ in _TABLES[1:]
            }
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql["records"], part)
            for table, rows in batch.items():
                conn.executemany(sql[table], rows)
            conn.execute("COMMIT")
            seconds += time.perf_counter() - t0
    finally:
        conn.close()
    return {
        "seconds": round(seconds, 3),
        "records": len(records),
        "rec_per_s": round(len(records) / seconds, 1) if seconds else None,
    }
