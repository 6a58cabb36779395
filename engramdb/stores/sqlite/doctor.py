"""``doctor``: SQLite's own integrity checks, and every derived index against the tables.

Derived data (the vector index, dedup keys, keyword scopes, the value indexes) can be
rebuilt from the records, so ``repair`` rebuilds what disagrees; damage to the tables
themselves is reported, never "repaired".
"""

from __future__ import annotations

import json
from typing import Any

from engramdb.errors import StoreError
from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.value_index import VALUE_INDEXES, stale_rows_sql
from engramdb.stores.sqlite.vector_search import VectorSearch

_STALE_DEDUP = "dedup IS NOT engram_dedup(user_id, agent_id, thread_id, type, content_hash)"
# Keyword rows whose scope token disagrees with their record (see keys.scope_token).
_STALE_SCOPE = (
    "SELECT f.rowid FROM chunks_fts f JOIN chunks c ON c.id = f.rowid "
    "JOIN records r ON r.rid = c.rid "
    "WHERE f.scope IS NOT engram_scope(r.namespace, r.user_id, r.thread_id)"
)


class Doctor:
    """Checks the file and its derived indexes, and rebuilds the derived ones."""

    def __init__(self, db: Connections, vectors: VectorSearch) -> None:
        self._db = db
        self._vectors = vectors

    def doctor(self, repair: bool = False) -> dict[str, Any]:
        """Check SQLite integrity and that every derived index agrees with the tables.

        With ``repair`` the in-process vector index and its sidecar are rebuilt from the
        tables and the keyword index is rebuilt with FTS5's own ``rebuild``-free check.
        """
        problems: list[str] = []
        with self._db.read("checking integrity") as c:
            integrity = [r[0] for r in c.execute("PRAGMA integrity_check")]
            fk = c.execute("PRAGMA foreign_key_check").fetchall()
            chunks = {r[0] for r in c.execute("SELECT id FROM chunks")}
            fts = {r[0] for r in c.execute("SELECT rowid FROM chunks_fts")}
            orphan_records = int(
                c.execute(
                    "SELECT count(*) FROM records r WHERE NOT EXISTS "
                    "(SELECT 1 FROM chunks c WHERE c.rid = r.rid)"
                ).fetchone()[0]
            )
            unvectored = int(
                c.execute(
                    "SELECT count(*) FROM chunks c WHERE NOT EXISTS "
                    "(SELECT 1 FROM chunk_vectors v WHERE v.chunk_id = c.id)"
                ).fetchone()[0]
            )
            stale_dedup = int(
                c.execute(f"SELECT count(*) FROM records WHERE {_STALE_DEDUP}").fetchone()[0]
            )
            stale_scope = [r[0] for r in c.execute(_STALE_SCOPE)]
            stale_values = {
                what: int(c.execute(stale_rows_sql(table, cols, rows)).fetchone()[0])
                for what, table, cols, rows in VALUE_INDEXES
            }
        if integrity != ["ok"]:
            problems.append("integrity_check: " + "; ".join(integrity[:5]))
        if fk:
            problems.append(f"foreign_key_check: {len(fk)} violations")
        if chunks != fts:
            problems.append(f"keyword index has {len(fts)} rows for {len(chunks)} chunks")
        if unvectored:
            problems.append(f"{unvectored} chunks have no stored vector (re-embed to restore them)")
        if orphan_records:
            problems.append(f"{orphan_records} records have no indexed chunk")
        if stale_dedup:
            problems.append(f"{stale_dedup} records have a dedup key that disagrees with them")
        if stale_scope:
            problems.append(
                f"{len(stale_scope)} keyword rows have a user scope that disagrees with "
                "their record"
            )
        for what, stale in stale_values.items():
            if stale:
                problems.append(f"the {what} index has {stale} rows that disagree with the records")
        index = self._vectors.index()
        with index.lock:
            indexed = index.chunk_ids()
        index_ok = indexed == chunks
        if not index_ok:
            problems.append(f"vector index has {len(indexed)} rows for {len(chunks)} chunks")
        repaired = []
        if repair and not index_ok:
            self._vectors.drop_index(remove_sidecar=True)
            self._vectors.index()
            repaired.append("vector index rebuilt from the tables")
        # Problems a repair cannot fix; the vector index, dedup keys and scopes are derived.
        unfixable = (
            integrity != ["ok"] or bool(fk) or chunks != fts or bool(orphan_records or unvectored)
        )
        if repair and stale_dedup:
            try:
                with self._db.write("recomputing dedup keys") as c:
                    c.execute(
                        "UPDATE records SET dedup = engram_dedup(user_id, agent_id, thread_id, "
                        f"type, content_hash) WHERE {_STALE_DEDUP}"
                    )
                repaired.append("dedup keys recomputed from the records")
            except StoreError as exc:  # the corrected keys make two records the same
                unfixable = True
                problems.append(
                    "could not recompute the deduplication keys: two records in one scope have "
                    f"the same text; delete one and repair again ({exc.message})"
                )
        if repair and stale_scope:
            with self._db.write("recomputing keyword scopes") as c:
                c.execute(
                    "UPDATE chunks_fts SET scope = (SELECT "
                    "engram_scope(r.namespace, r.user_id, r.thread_id) "
                    "FROM chunks c JOIN records r ON r.rid = c.rid WHERE c.id = chunks_fts.rowid) "
                    "WHERE rowid IN (SELECT value FROM json_each(?))",
                    (json.dumps(stale_scope),),
                )
                c.executemany(  # the derived keyword index re-reads these rows
                    "INSERT INTO keyword_log(chunk_id) VALUES (?)", [(i,) for i in stale_scope]
                )
            repaired.append("keyword scopes recomputed from the records")
        for what, table, cols, rows in VALUE_INDEXES:
            if repair and stale_values[what]:
                with self._db.write(f"rebuilding the {what} index") as c:
                    c.execute(f"DELETE FROM {table}")
                    c.execute(f"INSERT INTO {table}({cols}) {rows}")
                repaired.append(f"{what} index rebuilt from the records")
        return {
            "ok": not problems or (repair and not unfixable),
            "integrity_check": integrity[0] if integrity else "?",
            "chunks": len(chunks),
            "keyword_rows": len(fts),
            "vector_rows": len(indexed),
            "problems": problems,
            "repaired": repaired,
        }
