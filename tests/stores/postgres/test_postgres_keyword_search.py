"""PostgreSQL keyword search: quoted tsquery operands and the (namespace, user_id, fts)
GIN index."""

from __future__ import annotations

import psycopg
import pytest
from pg_store_helpers import chunk_indexes, open_memory

from engramdb.engine.keyword import match_expression
from engramdb.stores.postgres.search_sql import tsquery_text

pytestmark_pg = pytest.mark.postgres


def test_tsquery_text_quotes_every_term() -> None:
    text = tsquery_text(match_expression("it's a \\ back'slash & !not | (x) <-> y:*"))
    assert text.startswith("'") and text.endswith("'")
    # Every operator character sits inside a quoted operand.
    for term in text.split(" | "):
        assert term.startswith("'") and term.endswith("'")


@pytestmark_pg
def test_a_users_keyword_matches_come_from_one_gin_index(postgres_url: str) -> None:
    """namespace, user_id and fts are keys of one GIN index, so a user-scoped keyword
    search intersects them in the index (migration 0011 replaced the (namespace, fts) one,
    and an unscoped search still uses it)."""
    from engramdb.stores.postgres.search_sql import keyword_matches
    from engramdb.stores.postgres.vectors import BITS_INDEX

    m = open_memory(postgres_url)
    try:
        m.add([f"walk the dog {i} in park {i % 9}" for i in range(300)], user_id="ann")
        m.add([f"walk the cat {i}" for i in range(300)], user_id="bob")
        tsq = tsquery_text(match_expression("walk park"))
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE chunks")
            conn.execute("BEGIN")
            conn.execute("SET LOCAL enable_seqscan = off")
            # The small sign-bits btree on (namespace, user_id) is set aside: on a 600-row
            # table the planner would read a user's rows through it, while on the 100k
            # benchmark table it keeps the GIN index (docs/tuning.md).
            conn.execute(f"DROP INDEX {BITS_INDEX}")
            for users, keys in ((["ann"], ("namespace", "user_id", "fts")), ([], ("fts",))):
                sql, args = keyword_matches(tsq, "default", users)
                plan = "\n".join(str(r[0]) for r in conn.execute("EXPLAIN " + sql, args))
                assert "chunks_ns_user_fts" in plan, plan
                cond = next(ln for ln in plan.splitlines() if "Index Cond" in ln)
                assert all(k in cond for k in keys), plan
            conn.execute("ROLLBACK")
        hits = m.search("walk park", user_id="ann", mode="keyword", top_k=5)
        assert len(hits) == 5 and all(h.record.user_id == "ann" for h in hits)
    finally:
        m.close()
    assert "chunks_ns_fts" not in chunk_indexes(postgres_url)
    # A store at revision 0010 has the (namespace, fts) index; upgrading replaces it.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP INDEX chunks_ns_user_fts")
        conn.execute("CREATE INDEX chunks_ns_fts ON chunks USING gin (namespace, fts)")
        conn.execute("UPDATE alembic_version SET version_num = '0010'")
    open_memory(postgres_url).close()
    assert "chunks_ns_user_fts" in chunk_indexes(postgres_url)
    assert "chunks_ns_fts" not in chunk_indexes(postgres_url)
