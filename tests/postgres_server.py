"""The tests' PostgreSQL server: the helpers live in :mod:`bench.pgserver` (shared with the
PostgreSQL benchmark, which starts its own server); this module keeps the tests' import
name. ``ENGRAM_TEST_POSTGRES_URL`` points the suite at an external server instead.
"""

from __future__ import annotations

from bench.pgserver import (
    PG_USER,
    TEST_DB,
    LocalPostgres,
    bin_dir,
    free_port,
    fresh_schema,
    prepare_test_database,
    remove,
    restart,
    start_local,
)

__all__ = [
    "PG_USER",
    "TEST_DB",
    "LocalPostgres",
    "bin_dir",
    "free_port",
    "fresh_schema",
    "prepare_test_database",
    "remove",
    "restart",
    "start_local",
]
