"""The embedded store: one SQLite file in WAL mode, the system of record.

``SQLiteStore`` is a thin composition of the modules here, each with one job.
"""

from engramdb.stores.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
