"""The PostgreSQL + pgvector store: the same protocol and contract suite as the SQLite store.

``PostgresStore`` is a thin composition of the modules here, each with one job.
"""

from engramdb.stores.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
