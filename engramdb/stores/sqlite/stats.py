"""What the store holds (counts per namespace, sizes) and whether it answers at all."""

from __future__ import annotations

from typing import Any

from engramdb.errors import EngramError
from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.records import Records
from engramdb.stores.sqlite.vector_search import VectorSearch


class Stats:
    """Counts and sizes of the file, and the health probe."""

    def __init__(
        self, db: Connections, vectors: VectorSearch, records: Records, backend: str
    ) -> None:
        self._db = db
        self._vectors = vectors
        self._records = records
        self._backend = backend

    def health(self) -> dict[str, Any]:
        """Check that the file answers a read."""
        try:
            self._records.count_records("default", None)
        except EngramError as exc:
            return {"status": "error", "backend": self._backend, "message": exc.message}
        return {"status": "ok", "backend": self._backend}

    def namespaces(self) -> dict[str, int]:
        """Return record counts per namespace (namespaces with only events count 0)."""
        with self._db.read("listing namespaces") as c:
            rows = c.execute(
                "SELECT namespace, sum(n) FROM (SELECT namespace, count(*) AS n FROM records "
                "GROUP BY namespace UNION ALL SELECT DISTINCT namespace, 0 FROM events "
                "UNION ALL SELECT DISTINCT namespace, 0 FROM slot_versions) "
                "GROUP BY namespace ORDER BY namespace"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Return counts (for one namespace, or all) and file sizes."""
        with self._db.read("reading stats") as c:

            def one(sql: str, *a: Any) -> int:
                return int(c.execute(sql, a).fetchone()[0])

            if namespace is None:
                out: dict[str, Any] = {
                    "records": one("SELECT count(*) FROM records"),
                    "chunks": one("SELECT count(*) FROM chunks"),
                    "events": one("SELECT count(*) FROM events"),
                    "history": one("SELECT count(*) FROM history"),
                    "threads_with_slots": one("SELECT count(*) FROM slot_versions"),
                }
            else:
                out = {
                    "records": one("SELECT count(*) FROM records WHERE namespace = ?", namespace),
                    "events": one("SELECT count(*) FROM events WHERE namespace = ?", namespace),
                    "history": one("SELECT count(*) FROM history WHERE namespace = ?", namespace),
                    "threads_with_slots": one(
                        "SELECT count(*) FROM slot_versions WHERE namespace = ?", namespace
                    ),
                }
        path = self._db.path
        wal = path.with_name(path.name + "-wal")
        out["backend"] = "sqlite"
        out["path"] = str(path)
        out["file_bytes"] = path.stat().st_size if path.exists() else 0
        out["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
        out["indexed_vectors"] = self._vectors.indexed_count()
        return out
