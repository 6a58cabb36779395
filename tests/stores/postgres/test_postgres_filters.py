"""PostgreSQL filters: bound parameters only, and conditions its indexes answer."""

from __future__ import annotations

import psycopg
import pytest

from engramdb import Memory
from engramdb.query.filters import parse
from engramdb.stores.postgres.filters import compile_postgres

pytestmark_pg = pytest.mark.postgres


def test_filter_values_travel_as_parameters_only() -> None:
    evil = "x'); DROP TABLE records; --"
    node = parse(
        {
            "metadata.a-b.c_d": evil,
            "user_id": {"$in": [evil, "bob"]},
            "tags": {"$contains": [evil]},
            "metadata.n": {"$gte": 3},
        }
    )
    sql, params = compile_postgres(node)
    assert evil not in sql and "DROP" not in sql
    assert sql.count("%s") == len(params)
    assert any(evil in str(p) for p in params)


@pytestmark_pg
def test_scope_filters_compile_to_index_conditions(pg: Memory, postgres_url: str) -> None:
    """A user, thread, metadata or tag filter reaches PostgreSQL as a bare condition its
    indexes answer (a btree for scopes, the GIN indexes for metadata and tags).

    Wrapped in COALESCE (as nullable columns are) the predicate hid ``user_id`` from the
    planner, so a user-scoped list or count read the whole namespace. With sequential scans
    priced out, the plan shows whether an index condition on the column is possible at all.
    """
    pg.add(
        [
            {
                "text": f"fact {i}",
                "user_id": f"u{i % 30}",
                "thread_id": f"u{i % 20}",
                "metadata": {"k": f"u{i % 10}"},
                "tags": [f"u{i % 40}"],
            }
            for i in range(600)
        ]
    )
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ANALYZE records")
        conn.execute("SET enable_seqscan = off")
        for field, flt in (
            ("user_id", {"user_id": "u1"}),
            ("thread_id", {"thread_id": "u1"}),
            ("metadata", {"metadata.k": "u1"}),
            ("tags", {"tags": "u1"}),
        ):
            sql, params = compile_postgres(parse(flt))
            # On 600 rows the planner prefers a namespace btree to a GIN scan, so the JSONB
            # conditions are planned alone: an Index Cond shows the GIN index can answer.
            scope, args = (
                ("TRUE", []) if field in ("metadata", "tags") else ("r.namespace = %s", ["default"])
            )
            plan = "\n".join(
                str(r[0])
                for r in conn.execute(
                    f"EXPLAIN SELECT count(*) FROM records r WHERE {scope} AND {sql}",
                    [*args, *params],
                )
            )
            index_conds = [ln for ln in plan.splitlines() if "Index Cond" in ln]
            assert any(field in ln for ln in index_conds), plan
