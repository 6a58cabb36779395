"""PostgreSQL schema: migrations on open, once across concurrent starts, row storage."""

from __future__ import annotations

import threading

import psycopg
import pytest
from pg_store_helpers import open_memory

from engramdb import HashEmbedder, Memory
from engramdb.errors import SchemaError, SchemaTooNewError
from engramdb.migrations import SCHEMA_HEAD
from engramdb.stores.postgres import PostgresStore

pytestmark_pg = pytest.mark.postgres


@pytestmark_pg
def test_open_applies_head_and_refuses_a_newer_revision(postgres_url: str) -> None:
    m = open_memory(postgres_url)
    m.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert row == (SCHEMA_HEAD,)
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(SchemaTooNewError):
        open_memory(postgres_url)


@pytestmark_pg
def test_auto_migrate_off_refuses_an_empty_database(postgres_url: str) -> None:
    with pytest.raises(SchemaError, match="auto_migrate"):
        PostgresStore(postgres_url, auto_migrate=False)


@pytestmark_pg
def test_concurrent_starts_migrate_once(postgres_url: str) -> None:
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            s = PostgresStore(postgres_url, pool_max=2)
            s.check_embedder("hash-64", 64)
            stores.append(s)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert errors == [] and len(stores) == 4
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
        dims = conn.execute("SELECT value FROM meta WHERE key = 'embedder_dim'").fetchall()
        assert dims == [("64",)]


@pytestmark_pg
def test_chunk_vectors_stay_inline_not_in_toast(postgres_url: str) -> None:
    """Rows just over 2 kB (a 384-d vector plus its keyword text) are not toasted (0003)."""
    mem = Memory(postgres_url, embedder=HashEmbedder(384))
    try:
        mem.add([f"entry {i} " + "with a longer body of words " * 12 for i in range(20)])
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            size, opts = conn.execute(
                "SELECT avg(pg_column_size(c.*)), (SELECT reloptions FROM pg_class "
                "WHERE oid = 'chunks'::regclass) FROM chunks c"
            ).fetchone()
            assert size > 2100  # above the default toast threshold
            assert "toast_tuple_target=8160" in opts
            toast = conn.execute(
                "SELECT pg_relation_size(reltoastrelid) FROM pg_class "
                "WHERE oid = 'chunks'::regclass"
            ).fetchone()
            assert toast == (0,)
    finally:
        mem.close()
