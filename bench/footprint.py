"""Where engramdb's bytes go: a per-record breakdown of a SQLite store and its sidecars.

Uses SQLite's ``dbstat`` virtual table (page bytes of every table and index, free pages
included in "free") and the sizes of the files beside the database (WAL, the vector index
sidecar folder with its ANN graphs). Vectors are counted twice on purpose: their bytes in
the ``chunk_vectors`` table (``vector_payload``) are part of that table's pages, and the
sidecar holds another copy.

Run alone: ``python -m bench.footprint PATH.db``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

# dbstat object name -> category (anything else: by prefix, then "other").
_CATEGORY = {
    "chunks": "chunks (spans)",
    "chunk_vectors": "chunk vectors",
    "records": "records",
    "history": "history",
    "chunk_deletes": "delete log",
    "keyword_log": "delete log",
}


def _category(name: str, kind: str) -> str:
    if name.startswith("chunks_fts"):
        return "keyword index (FTS5)"
    if name.startswith("sqlite_autoindex") or kind == "index":
        return "indexes"
    if name in _CATEGORY:
        return _CATEGORY[name]
    if name.startswith("record_") or name.startswith("slot") or name.startswith("thread"):
        return "tags, metadata, threads, slots"
    return "other"


def breakdown(db: Path) -> dict[str, Any]:
    """Bytes per record by category and by object, plus the files beside the database."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        records = int(conn.execute("SELECT count(*) FROM records").fetchone()[0]) or 1
        kinds = dict(conn.execute("SELECT name, type FROM sqlite_master").fetchall())
        try:
            rows = conn.execute(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
            ).fetchall()
        except sqlite3.OperationalError:  # SQLite built without dbstat
            return {"error": "this SQLite has no dbstat virtual table"}
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0]) * page_size
        vec = conn.execute("SELECT coalesce(sum(length(vector)), 0) FROM chunk_vectors").fetchone()[
            0
        ]
    finally:
        conn.close()
    by_object = {str(n): int(b) for n, b in rows}
    by_cat: dict[str, int] = {}
    for name, size in by_object.items():
        cat = _category(name, kinds.get(name, "table"))
        by_cat[cat] = by_cat.get(cat, 0) + size
    by_cat["free pages"] = free
    side: dict[str, int] = {}
    for p in db.parent.iterdir():
        if p == db or not p.name.startswith(db.name):
            continue
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        label = p.name[len(db.name) :] or p.name
        if ".vindex" in label:
            label = "vector sidecar (exact blocks + ANN graphs)"
        side[label] = side.get(label, 0) + sum(f.stat().st_size for f in files)
    total = sum(by_cat.values()) + sum(side.values())

    def per(b: int) -> float:
        return round(b / records, 1)

    return {
        "records": records,
        "bytes_per_record": per(total),
        "by_category": {k: per(v) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
        "vector_payload_in_chunk_vectors": per(int(vec)),
        "beside_the_database": {k: per(v) for k, v in sorted(side.items(), key=lambda kv: -kv[1])},
        "by_object": {k: per(v) for k, v in list(by_object.items())[:16]},
    }


if __name__ == "__main__":
    print(json.dumps(breakdown(Path(sys.argv[1])), indent=2))
