"""PostgreSQL keyword-side probe: today's ``ts_rank`` over every match against other plans.

Run: ``python -m bench.keyword_probe_pg --records 30000 [--queries 300] [--out FILE]``.

Starts its own PostgreSQL (``bench/pgserver.py``, the benchmark's server settings), adds
the store benchmark's workload with hash vectors and entity extraction off (only the
keyword side is compared), runs ``VACUUM ANALYZE``, builds the side tables of the
in-database alternatives from the chunks' own tsvectors, then times per query, interleaved
in a rotating order so that machine load falls on every variant alike, filtered to the
query's user and unfiltered, top ``--limit``:

- ``today``: the store's ``keyword_candidates`` ranking every match (pruning off);
- ``maxscore_{half,third,two_thirds}``: the store's ``keyword_candidates`` as built
  (:mod:`engramdb.stores.postgres.keyword_prune`), first leaving out at most that share
  of the query's lexemes (commonest first) while the rest are expected to match twice
  the page; ``maxscore_half_blind`` leaves out half whatever the estimate (a user's scope
  is counted untimed first, as a hybrid search's vector side does);
- ``ts_rank_cd``: today's statement with the cover-density rank (a different ranking);
- ``impact_sum``: a per-term impact table (lexeme, chunk, ts_rank's share of the term)
  summed per chunk through index-only scans;
- ``impact_maxscore``: the same table, candidates only from the rarer lexemes (the same
  bound as ``maxscore``), then each candidate's terms summed;
- ``sparsevec_hnsw``: pgvector ``sparsevec`` of those shares (lexemes hashed to 2^20
  dimensions), HNSW inner-product index, iterative scan for the user filter.

Each variant's page is compared with the full ranking: ``same_top`` (identical up to ties
at the cut) and ``overlap`` (share of its ids among the chunks scoring at least today's
last score). Then whole hybrid searches (top 10) with pruning off and on, alternating.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from bench.common import RESULTS_DIR, before_after, log, machine, variants_against
from bench.data import load_workload, store_config
from bench.keyword_probe import same_top

DIMS = 1 << 20
SHARE = "(0.1 * (SELECT sum(1.0 / (j * j)) FROM generate_series(1, least(cardinality(u.positions), 256)) j) / 1.64493406685)"  # noqa: E501


def side_tables(conn: Any) -> dict[str, float]:
    """Build the impact table and the sparse vectors from the chunks; seconds per step."""
    took = {}
    t0 = time.perf_counter()
    conn.execute(
        "CREATE TABLE kw_post AS SELECT c.user_id, u.lexeme AS term, c.id AS chunk_id, "
        f"{SHARE}::real AS w FROM chunks c, unnest(c.fts) u"
    )
    conn.execute("CREATE INDEX kw_post_term ON kw_post (term, chunk_id) INCLUDE (w)")
    conn.execute("CREATE INDEX kw_post_user ON kw_post (user_id, term, chunk_id) INCLUDE (w)")
    conn.execute("CREATE INDEX kw_post_chunk ON kw_post (chunk_id, term) INCLUDE (w)")
    conn.execute("VACUUM ANALYZE kw_post")
    took["impact_table_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    conn.execute(
        "CREATE TABLE kw_sparse AS SELECT chunk_id AS id, min(user_id) AS user_id, "
        "('{' || string_agg(d::text || ':' || w::text, ',' ORDER BY d) || "
        f"'}}/{DIMS}')::sparsevec({DIMS}) AS v FROM (SELECT chunk_id, user_id, "
        f"(hashtext(term) & {DIMS - 1}) + 1 AS d, sum(w) AS w FROM kw_post "
        "GROUP BY chunk_id, user_id, 3) x GROUP BY chunk_id"
    )
    conn.execute("CREATE INDEX kw_sparse_hnsw ON kw_sparse USING hnsw (v sparsevec_ip_ops)")
    conn.execute("CREATE INDEX kw_sparse_user ON kw_sparse (user_id)")
    conn.execute("VACUUM ANALYZE kw_sparse")
    took["sparsevec_hnsw_s"] = time.perf_counter() - t0
    return {k: round(v, 1) for k, v in took.items()}


def run(records: int, nq: int, limit: int) -> dict[str, Any]:
    """Start a server, load the workload, time every variant; return the report."""
    import psycopg

    from bench.pgserver import prepare_test_database, remove, start_local
    from bench.postgres import SERVER_SETTINGS, _create_schema
    from bench.store import LookupEmbedder
    from engramdb import Memory, Settings
    from engramdb.engine.keyword import match_expression
    from engramdb.query.filters import Bool, Cmp, Live, Node
    from engramdb.stores.postgres.keyword_prune import allowed_out, left_out
    from engramdb.stores.postgres.search_sql import fts_words, keyword_matches, tsquery_text

    w = load_workload(store_config(records, False, True))
    emb = LookupEmbedder("hash-384", w.texts, w.vectors)
    users = [w.user_name(u) for u in w.users]
    pg = start_local(SERVER_SETTINGS)
    mem = None
    try:
        db = prepare_test_database(pg.admin_url)
        url = _create_schema(db, "engram")
        # No entity extraction: its background worker would load the server while timing.
        mem = Memory(url, embedder=emb, settings=Settings(extract="off"))
        t0 = time.perf_counter()
        for start in range(0, len(w.texts), 1000):
            sl = slice(start, start + 1000)
            mem.add(
                [{"text": t, "user_id": u} for t, u in zip(w.texts[sl], users[sl], strict=True)]
            )
        log(f"loaded {len(w.texts)} records in {time.perf_counter() - t0:.0f} s")
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("VACUUM ANALYZE records, chunks")
        built = side_tables(conn)
        log(f"side tables: {built}")
        version = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        conn.execute(f"SET hnsw.ef_search = {max(2 * limit, 40)}")
        store = mem._engine.store
        search = store._search
        now = int(time.time() * 1_000_000)

        def node_of(user: str | None) -> Node:
            live = Live(now)
            return live if user is None else Bool("and", (Cmp("str", "user_id", "$eq", user), live))

        def store_variant(
            prune: bool, first: float, factor: float = 2.0
        ) -> Callable[[str, str | None], list[Any]]:
            def call(q: str, user: str | None) -> list[Any]:
                search.prune_keywords = prune
                search.first_leave_out = first
                search.match_factor = factor
                hits = search.keyword_candidates(
                    "default", match_expression(q), node_of(user), limit
                )
                return [(h.chunk_id, h.score) for h in hits]

            return call

        def ts_rank_cd(q: str, user: str | None) -> list[Any]:
            sql, args = keyword_matches(tsquery_text(match_expression(q)), "default", _u(user))
            sql = sql.replace("ts_rank(", "ts_rank_cd(")
            rows = conn.execute(f"{sql} ORDER BY s DESC, id LIMIT {limit}", args).fetchall()
            return [(int(r[0]), float(r[4])) for r in rows]

        def lexemes(q: str) -> list[Any]:
            with mem._engine.store._db.read("probe", route=True) as c:
                terms = search.terms.terms(c, fts_words(match_expression(q)))
            assert terms is not None, q
            return terms

        def impact_sum(q: str, user: str | None) -> list[Any]:
            terms = lexemes(q)
            lex = sorted({t.lexeme for t in terms})
            user_sql = "" if user is None else " AND user_id = %s"
            rows = conn.execute(
                f"SELECT chunk_id, sum(w) / {len(lex)} AS s FROM kw_post WHERE term = ANY(%s)"
                f"{user_sql} GROUP BY chunk_id ORDER BY s DESC, chunk_id LIMIT {limit}",
                (lex, *_u(user)),
            ).fetchall()
            return [(int(r[0]), float(r[1])) for r in rows]

        def impact_maxscore(q: str, user: str | None) -> list[Any]:
            terms = lexemes(q)
            lex = sorted({t.lexeme for t in terms})
            n = len(lex)
            out = left_out(terms, n // 2)
            user_sql = "" if user is None else " AND user_id = %s"
            for _ in range(2):
                ess = [x for x in lex if x not in out]
                rows = conn.execute(
                    "WITH cand AS MATERIALIZED (SELECT DISTINCT chunk_id FROM kw_post "
                    f"WHERE term = ANY(%s){user_sql}) SELECT p.chunk_id, sum(p.w) / {n} AS s "
                    "FROM cand JOIN kw_post p ON p.chunk_id = cand.chunk_id AND p.term = ANY(%s) "
                    f"GROUP BY p.chunk_id ORDER BY s DESC, p.chunk_id LIMIT {limit}",
                    (ess, *_u(user), lex),
                ).fetchall()
                if not out or len(rows) < limit:
                    break
                allowed = allowed_out(n, float(rows[-1][1]))
                if len(out) <= allowed:
                    return [(int(r[0]), float(r[1])) for r in rows]
                out = left_out(terms, allowed)
            return impact_sum(q, user)

        def sparsevec_hnsw(q: str, user: str | None) -> list[Any]:
            terms = lexemes(q)
            lex = sorted({t.lexeme for t in terms})
            dims = sorted(
                {
                    int(r[0])
                    for r in conn.execute(
                        f"SELECT (hashtext(x) & {DIMS - 1}) + 1 FROM unnest(%s::text[]) x", (lex,)
                    ).fetchall()
                }
            )
            qv = "{" + ",".join(f"{d}:1" for d in dims) + f"}}/{DIMS}"
            user_sql = "" if user is None else " WHERE user_id = %s"
            rows = conn.execute(
                f"SELECT id, -(v <#> %s::sparsevec) / {len(lex)} FROM kw_sparse{user_sql} "
                f"ORDER BY v <#> %s::sparsevec LIMIT {limit}",
                (qv, *_u(user), qv),
            ).fetchall()
            return [(int(r[0]), float(r[1])) for r in rows]

        def truth(q: str, user: str | None) -> tuple[set[int], float]:
            """The chunks scoring at least the full ranking's last score on the page."""
            sql, args = keyword_matches(tsquery_text(match_expression(q)), "default", _u(user))
            rows = conn.execute(f"{sql} ORDER BY s DESC, id LIMIT {limit * 20}", args).fetchall()
            if not rows:
                return set(), 0.0
            cut = float(rows[min(limit, len(rows)) - 1][4])
            return {int(r[0]) for r in rows if float(r[4]) >= cut}, cut

        variants: dict[str, Callable[[str, str | None], list[Any]]] = {
            "today": store_variant(False, 0.5),
            "maxscore_half": store_variant(True, 0.5),
            "maxscore_half_blind": store_variant(True, 0.5, 0.0),
            "maxscore_third": store_variant(True, 0.34),
            "maxscore_two_thirds": store_variant(True, 0.67),
            "ts_rank_cd": ts_rank_cd,
            "impact_sum": impact_sum,
            "impact_maxscore": impact_maxscore,
            "sparsevec_hnsw": sparsevec_hnsw,
        }
        names = list(variants)
        scopes = ("filtered", "unfiltered")
        times: dict[str, dict[str, list[float]]] = {s: {n: [] for n in names} for s in scopes}
        same: dict[str, dict[str, int]] = {s: dict.fromkeys(names, 0) for s in scopes}
        overlap: dict[str, dict[str, float]] = {s: dict.fromkeys(names, 0.0) for s in scopes}
        nq = min(nq, len(w.query_texts))
        for i in range(min(10, nq)):  # warm caches (lexemes, statistics, buffers)
            for n in names:
                variants[n](w.query_texts[i], None)
        for i in range(nq):
            q = w.query_texts[i]
            for scope, user in (("filtered", w.user_name(w.query_users[i])), ("unfiltered", None)):
                rot = names[i % len(names) :] + names[: i % len(names)]
                if user is not None:  # counted untimed, as a hybrid search's vector side does
                    with search._db.read("probe", route=True) as c:
                        search.scopes.count(c, "default", user, search.exact_max_user_rows)
                got = {}
                for n in rot:
                    t0 = time.perf_counter()
                    got[n] = variants[n](q, user)
                    times[scope][n].append(time.perf_counter() - t0)
                top, _ = truth(q, user)
                for n in names:
                    same[scope][n] += same_top(got["today"], got[n], eps=1e-6)
                    ids = {r for r, _ in got[n]}
                    overlap[scope][n] += len(ids & top) / max(1, min(limit, len(top)))
            if i % 50 == 0:
                log(f"  query {i}")
        # Whole hybrid searches (the default mode, top 10), pruning off and on per query.
        hybrid: dict[str, dict[str, list[float]]] = {
            s: {"today": [], "maxscore": []} for s in scopes
        }
        same_hybrid = 0
        for i in range(nq):
            for scope, user in (("filtered", w.user_name(w.query_users[i])), ("unfiltered", None)):
                pages = {}
                for n in ("today", "maxscore") if i % 2 == 0 else ("maxscore", "today"):
                    search.prune_keywords = n == "maxscore"
                    search.first_leave_out, search.match_factor = 0.34, 2.0
                    t0 = time.perf_counter()
                    page = mem.search(
                        w.query_texts[i], top_k=10, user_id=user, query_vector=w.query_vectors[i]
                    )
                    hybrid[scope][n].append(time.perf_counter() - t0)
                    pages[n] = [(h.record.id, h.score) for h in page.hits]
                same_hybrid += pages["today"] == pages["maxscore"]
        conn.close()
    finally:
        if mem is not None:
            mem.close()
        remove(pg)
    out: dict[str, Any] = {
        "benchmark": "keyword_probe_pg",
        "machine": machine(),
        "pgvector": version[0] if version else None,
        "records": records,
        "queries": nq,
        "limit": limit,
        "side_tables": built,
    }
    out["hybrid_top10"] = {"same_answers_share": round(same_hybrid / (2 * nq), 4)}
    for scope, by in hybrid.items():
        out["hybrid_top10"][scope] = before_after("today", "maxscore", by)
    for scope in scopes:
        out[scope] = variants_against(times[scope], "today", same[scope], nq, overlap[scope])
    return out


def _u(user: str | None) -> list[str]:
    return [] if user is None else [user]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=30_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--out", default=str(RESULTS_DIR / "keyword_probe_pg.json"))
    a = ap.parse_args()
    report = run(a.records, a.queries, a.limit)
    from pathlib import Path

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("filtered", "unfiltered", "hybrid_top10")}, indent=2))


if __name__ == "__main__":
    main()
