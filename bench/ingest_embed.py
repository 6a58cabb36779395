"""Ingest and search with the real all-MiniLM-L6-v2, against the bare encoder, in one run.

- Ingest: records/s of ``Memory.add`` in batches (engine's ``MiniLMEmbedder``, default
  settings, ``synchronous=FULL``) against bare ``SentenceTransformer.encode`` on the same
  texts with the same batch size (64) and the same torch thread policy (the embedder's
  ``batch_threads``, or a measuring ``ThreadChooser`` of its own). Chunks alternate
  between the two (and who goes first), so machine load falls on both alike. The ratio
  shows the engine's overhead (validation, token counting for chunking, the store's
  transaction).
- Search: ``Memory.search`` (default hybrid mode, scoped to the query's user) end to end,
  query embedding included, against one bare single-query ``encode`` with the thread
  count the engine uses for single queries. Each query text is asked once (no cache hits).
- Threads: bare single-query latency and batch throughput at 1 vs 2 torch intra-op threads,
  interleaved, to check the engine's choice (1 thread for <= 4 texts; batches by measurement).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import latency, log, machine, ratio, write_report
from bench.data import generate_texts, load_model, zipf_sizes
from engramdb.embedders.minilm import ThreadChooser

BATCH = 64
SEED = 7_700_001


def _encode(model: Any, texts: list[str], threads: int, batch: int = BATCH) -> np.ndarray:
    import torch

    torch.set_num_threads(threads)
    with torch.inference_mode():
        return model.encode(
            texts,
            batch_size=batch,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


def run(n_texts: int, n_queries: int, chunk: int, thread_rounds: int) -> dict[str, Any]:
    """Run the benchmark; return the report."""
    import torch

    from engramdb import Memory, MiniLMEmbedder, Settings

    rng = np.random.default_rng(SEED)
    seen: set[str] = set()
    texts = generate_texts(n_texts, rng, seen)
    queries = generate_texts(n_queries, rng, seen)
    # Unseen texts: vector-mode queries, then the thread study's single queries, then batches.
    thread_texts = generate_texts(2 * n_queries + thread_rounds * 256, rng, seen)
    n_users = max(5, n_texts // 100)
    sizes = zipf_sizes(n_texts, n_users, 1.0)
    users = np.repeat(np.arange(n_users), sizes)
    rng.shuffle(users)
    query_users = rng.choice(n_users, size=n_queries, p=sizes / sizes.sum())

    tmp = Path(tempfile.mkdtemp(prefix="engramdb-bench-embed-"))
    report: dict[str, Any] = {"benchmark": "ingest_embed", "machine": machine()}
    try:
        t0 = time.perf_counter()
        model = load_model(2)
        _encode(model, ["warm up the bare encoder"] * BATCH, 2)
        bare_load = time.perf_counter() - t0
        emb = MiniLMEmbedder()
        t0 = time.perf_counter()
        emb.embed(["warm up the engine's embedder"] * BATCH)
        engine_load = time.perf_counter() - t0
        mem = Memory(
            f"sqlite:///{tmp / 'embed.db'}", embedder=emb, settings=Settings(synchronous="FULL")
        )
        mem.add("a first record to create the schema and warm the store", user_id="warm")

        # ---------------------------------------------------------------- ingest
        log(f"ingest {n_texts} texts in chunks of {chunk}: engine vs bare encoder")
        e_time = b_time = 0.0
        bare_chooser = ThreadChooser(emb.chooser.options)
        for c, start in enumerate(range(0, n_texts, chunk)):
            part = texts[start : start + chunk]
            items = [
                {"text": t, "user_id": f"u{int(users[start + j]):04d}"} for j, t in enumerate(part)
            ]

            def do_engine(items: list[dict[str, str]] = items) -> float:
                t0 = time.perf_counter()
                res = mem.add(items)
                dt = time.perf_counter() - t0
                assert all(r.outcome == "written" for r in res)
                return dt

            def do_bare(part: list[str] = part) -> float:
                # The same thread policy as the engine's embedder (a fixed count, or its own
                # measuring chooser), so the ratio shows the engine's overhead only.
                threads = emb.batch_threads or bare_chooser.pick()
                t0 = time.perf_counter()
                _encode(model, part, threads)
                dt = time.perf_counter() - t0
                bare_chooser.record(threads, len(part), dt)
                return dt

            if c % 2:
                db, de = do_bare(), do_engine()
            else:
                de, db = do_engine(), do_bare()
            e_time += de
            b_time += db
            log(f"  chunk {c}: engine {len(part) / de:.0f}/s, encoder {len(part) / db:.0f}/s")
        ingest = {
            "engine_rec_per_s": round(n_texts / e_time, 1),
            "encoder_rec_per_s": round(n_texts / b_time, 1),
            "engine_seconds": round(e_time, 2),
            "encoder_seconds": round(b_time, 2),
        }

        # ---------------------------------------------------------------- search e2e
        log(f"search: {n_queries} queries end to end vs bare single-query encode")
        e2e: list[float] = []
        bare_q: list[float] = []
        vec_e2e: list[float] = []
        for i, q in enumerate(queries):
            uid = f"u{int(query_users[i]):04d}"

            def one_search(q: str = q, uid: str = uid) -> float:
                t0 = time.perf_counter()
                mem.search(q, user_id=uid, top_k=10)
                return time.perf_counter() - t0

            def one_bare(q: str = q) -> float:
                t0 = time.perf_counter()
                _encode(model, [q], emb.threads)
                return time.perf_counter() - t0

            if i % 2:
                bare_q.append(one_bare())
                e2e.append(one_search())
            else:
                e2e.append(one_search())
                bare_q.append(one_bare())
            # Vector-only, end to end, with a query the engine has not seen either.
            vq = thread_texts[i]
            t0 = time.perf_counter()
            mem.search(vq, user_id=uid, top_k=10, mode="vector")
            vec_e2e.append(time.perf_counter() - t0)
        search = {
            "engine_hybrid_e2e": latency(e2e),
            "engine_vector_e2e": latency(vec_e2e),
            "encoder_single_query": latency(bare_q),
            "encoder_threads_for_single_query": emb.threads,
        }

        # ---------------------------------------------------------------- threads
        log(f"torch threads: single queries and {thread_rounds} batches of 256 at 1 vs 2")
        single: dict[int, list[float]] = {1: [], 2: []}
        for i, q in enumerate(thread_texts[n_queries : 2 * n_queries]):
            order = (1, 2) if i % 2 else (2, 1)
            for th in order:
                t0 = time.perf_counter()
                _encode(model, [q], th)
                single[th].append(time.perf_counter() - t0)
        batch_time = {1: 0.0, 2: 0.0}
        base = 2 * n_queries
        for r in range(thread_rounds):
            part = thread_texts[base + r * 256 : base + (r + 1) * 256]
            order = (1, 2) if r % 2 else (2, 1)
            for th in order:
                t0 = time.perf_counter()
                _encode(model, part, th)
                batch_time[th] += time.perf_counter() - t0
        n_batch = thread_rounds * 256
        threads = {
            "torch_default_threads": torch.get_num_threads(),
            "single_query_1_thread": latency(single[1]),
            "single_query_2_threads": latency(single[2]),
            "batch_texts_per_s_1_thread": round(n_batch / batch_time[1], 1),
            "batch_texts_per_s_2_threads": round(n_batch / batch_time[2], 1),
            "batch_texts": n_batch,
            "engine_choice": {
                "single_query_threads": emb.threads,
                "batch_threads": emb.batch_threads,
            },
        }
        mem.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    s1, s2 = threads["single_query_1_thread"], threads["single_query_2_threads"]
    summary = {
        "texts": n_texts,
        "engine_rec_per_s": ingest["engine_rec_per_s"],
        "encoder_rec_per_s": ingest["encoder_rec_per_s"],
        "engine_over_encoder_ratio": ratio(ingest["engine_rec_per_s"], ingest["encoder_rec_per_s"]),
        "search_e2e_p50_ms": search["engine_hybrid_e2e"]["p50_ms"],
        "search_e2e_p95_ms": search["engine_hybrid_e2e"]["p95_ms"],
        "vector_search_e2e_p95_ms": search["engine_vector_e2e"]["p95_ms"],
        "encoder_single_query_p50_ms": search["encoder_single_query"]["p50_ms"],
        "encoder_single_query_p95_ms": search["encoder_single_query"]["p95_ms"],
        "search_over_encoder_p95_ratio": ratio(
            search["engine_hybrid_e2e"]["p95_ms"], search["encoder_single_query"]["p95_ms"]
        ),
        "single_query_p50_ms_1_thread": s1["p50_ms"],
        "single_query_p95_ms_1_thread": s1["p95_ms"],
        "single_query_p50_ms_2_threads": s2["p50_ms"],
        "single_query_p95_ms_2_threads": s2["p95_ms"],
        "batch_texts_per_s_1_thread": threads["batch_texts_per_s_1_thread"],
        "batch_texts_per_s_2_threads": threads["batch_texts_per_s_2_threads"],
        "model_load_s": round(bare_load, 2),
        "engine_model_load_s": round(engine_load, 2),
    }
    report.update(
        {
            "summary": summary,
            "config": {
                "texts": n_texts,
                "queries": n_queries,
                "chunk": chunk,
                "batch_size": BATCH,
                "thread_rounds": thread_rounds,
                "users": n_users,
                "seed": SEED,
                "engramdb_settings": {"synchronous": "FULL", "search_mode": "hybrid"},
            },
            "ingest": ingest,
            "search": search,
            "threads": threads,
        }
    )
    return report


def main(out_dir: Path, n_texts: int) -> dict[str, Any]:
    """Run with CLI-level options, write ``ingest_embed.json`` and print the summary."""
    quick = n_texts <= 600
    report = run(
        n_texts,
        n_queries=50 if quick else 200,
        chunk=300 if quick else 500,
        thread_rounds=2 if quick else 6,
    )
    path = write_report(report, out_dir, "ingest_embed")
    print(json.dumps(report["summary"], indent=2))
    log(f"wrote {path}")
    return report
