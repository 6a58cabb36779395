"""Where engramdb's bytes go: a per-record breakdown of a SQLite store and its sidecars.

Uses SQLite's ``dbstat`` virtual table (page bytes of every table and index, free pages
included in "free") and the sizes of the files beside the database (WAL, the vector index
sidecar folder with its ANN graphs). Vectors are counted twice on purpose: their bytes in
the ``chunk_vectors`` table (``vector_payload``) are part of that table's pages, and the
sidecar holds another copy.

``floors`` says what the bytes per record could shrink to, and so what a disk target can
ask of this design: the store keeps each vector in float32 as its source of truth (the
float32 vector alone is 1,536 bytes at 384 dimensions), and the exact blocks in the sidecar
are a second float32 copy laid out for user-scoped scans.

- ``without_exact_copy``: every table, index and sidecar kept except the exact blocks;
- ``vectors_text_and_fts``: the vector table, the records and the FTS5 index and nothing
  else: no ANN graph, no derived keyword index, no secondary index, no entities (what a
  store answering the same searches without any index of its own would need).

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

EXACT = "vector sidecar: exact float32 blocks"


def _sidecar_part(f: Path) -> str:
    """The vector sidecar's parts: ``vectors.npy`` holds the exact float32 blocks, the
    ``.usearch`` files the ANN graphs, the rest ids and the manifest."""
    if f.name == "vectors.npy":
        return EXACT
    if f.suffix == ".usearch":
        return "vector sidecar: ANN graphs"
    return "vector sidecar: ids and manifest"


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
            for f in files:
                part = _sidecar_part(f)
                side[part] = side.get(part, 0) + f.stat().st_size
            continue
        side[label] = side.get(label, 0) + sum(f.stat().st_size for f in files)
    total = sum(by_cat.values()) + sum(side.values())
    exact = side.get(EXACT, 0)
    bare = sum(by_cat.get(c, 0) for c in ("chunk vectors", "records", "keyword index (FTS5)"))

    def per(b: int) -> float:
        return round(b / records, 1)

    return {
        "records": records,
        "bytes_per_record": per(total),
        "by_category": {k: per(v) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
        "vector_payload_in_chunk_vectors": per(int(vec)),
        "beside_the_database": {k: per(v) for k, v in sorted(side.items(), key=lambda kv: -kv[1])},
        "by_object": {k: per(v) for k, v in list(by_object.items())[:16]},
        "floors": {"without_exact_copy": per(total - exact), "vectors_text_and_fts": per(bare)},
    }


if __name__ == "__main__":
    print(json.dumps(breakdown(Path(sys.argv[1])), indent=2))
