"""Rewrite the benchmark tables from ``bench/results/*.json``.

Why: the README and docs/benchmarks.md state measured figures; generating them from the JSON
that the benchmark wrote keeps them from drifting apart. The README gets the short table a user
reads (each engramdb figure beside the alternative measured in the same run); the full table,
every figure with its target, goes to docs/benchmarks.md. Run after ``make bench`` (or one
``engramdb bench``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NOTEBOOK = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

# (file, summary key, label, target as stated in the issue)
ROWS: list[tuple[str, str, str, str]] = [
    ("store", "engramdb_filtered_p95_ms", "filtered top-10 p95, ms (engramdb)", "≤ 2"),
    ("store", "chroma_filtered_p95_ms", "filtered top-10 p95, ms (Chroma)", ""),
    ("store", "filtered_speedup_vs_chroma", "filtered speed-up vs Chroma", "≥ 20×"),
    ("store", "engramdb_recall_at_10", "filtered recall@10 (engramdb)", "≥ 0.99"),
    ("store", "engramdb_unfiltered_p95_ms", "unfiltered top-10 p95, ms (engramdb)", "≤ 3"),
    ("store", "chroma_unfiltered_p95_ms", "unfiltered top-10 p95, ms (Chroma)", ""),
    ("store", "numpy_exact_unfiltered_p95_ms", "unfiltered exact numpy scan p95, ms", ""),
    (
        "store",
        "engramdb_hybrid_filtered_p95_ms",
        "hybrid (vector + keyword) filtered p95, ms",
        "≤ 3",
    ),
    ("store", "engramdb_hybrid_unfiltered_p95_ms", "hybrid unfiltered p95, ms", "≤ 5"),
    (
        "store",
        "engramdb_hybrid_filtered_extraction_stopped_p95_ms",
        "hybrid filtered p95, ms, entity extraction backlog paused",
        "≤ 3",
    ),
    (
        "store",
        "engramdb_hybrid_unfiltered_extraction_stopped_p95_ms",
        "hybrid unfiltered p95, ms, entity extraction backlog paused",
        "≤ 5",
    ),
    (
        "store",
        "engramdb_filtered_extraction_stopped_p95_ms",
        "filtered top-10 p95, ms (engramdb), entity extraction backlog stopped",
        "≤ 2",
    ),
    (
        "store",
        "engramdb_unfiltered_extraction_stopped_p95_ms",
        "unfiltered top-10 p95, ms (engramdb), entity extraction backlog stopped",
        "≤ 3",
    ),
    (
        "core_share",
        "none_hybrid_filtered_p95_ms",
        "hybrid filtered p95, ms, search-pair's store, extraction off, nothing beside it",
        "",
    ),
    (
        "core_share",
        "spacy_hybrid_filtered_p95_vs_none",
        "the same beside the spaCy pipeline parsing on the other core ÷ alone",
        "",
    ),
    (
        "core_share",
        "spin_hybrid_filtered_p95_vs_none",
        "the same beside a pure-Python loop on the other core ÷ alone",
        "",
    ),
    (
        "core_share",
        "spacy_hybrid_unfiltered_p95_vs_none",
        "hybrid unfiltered beside the spaCy pipeline ÷ alone",
        "",
    ),
    ("store", "engramdb_unfiltered_recall_at_10", "unfiltered recall@10 (engramdb)", "≥ 0.98"),
    ("store", "engramdb_ingest_rec_per_s", "batch ingest, records/s (engramdb)", "≥ 25,000"),
    ("store", "chroma_ingest_rec_per_s", "batch ingest, records/s (Chroma)", ""),
    ("ingest_parts", "add_rec_per_s", "batch ingest alone (no Chroma beside it), records/s", ""),
    ("ingest_parts", "engine_ms_per_batch", "batch of 1,000: the engine's Python, ms", ""),
    ("ingest_parts", "store_ms_per_batch", "batch of 1,000: in the store (SQL + Python), ms", ""),
    (
        "ingest_parts",
        "sql_only_ms_per_batch",
        "batch of 1,000: the store's SQL replayed alone, ms (25k/s leaves 40 for all)",
        "",
    ),
    (
        "ingest_parts",
        "sql_only_without_random_order_indexes_ms_per_batch",
        "same, without the dedup and per-user indexes, ms",
        "",
    ),
    (
        "ingest_parts",
        "sql_only_without_keyword_index_ms_per_batch",
        "same, without the keyword index rows, ms",
        "",
    ),
    ("store", "engramdb_single_add_p50_ms", "single durable add p50, ms (engramdb)", "≤ 3"),
    ("store", "chroma_single_add_p50_ms", "single add p50, ms (Chroma)", ""),
    ("store", "engramdb_cold_open_first_search_s", "cold open + first search, s", "≤ 0.3"),
    ("store", "chroma_cold_open_first_search_s", "cold open + first search, s (Chroma)", ""),
    ("store", "engramdb_disk_mb", "size on disk, MB (engramdb)", ""),
    ("store", "chroma_disk_mb", "size on disk, MB (Chroma)", ""),
    ("store", "disk_ratio_vs_chroma", "size on disk ÷ Chroma's", "≤ 1.0"),
    (
        "store",
        "disk_floor_without_exact_copy_vs_chroma",
        "the same without the sidecar's float32 copy of the vectors (a floor)",
        "",
    ),
    (
        "store",
        "disk_floor_vectors_text_and_fts_vs_chroma",
        "the float32 vectors, the records and FTS5 alone, no other index (a floor)",
        "",
    ),
    (
        "store",
        "engramdb_rss_mb",
        "RSS of a fresh process after opening and 49 search pairs, MB (engramdb)",
        "",
    ),
    ("store", "chroma_rss_mb", "the same RSS, MB (Chroma)", ""),
    ("store", "rss_ratio_vs_chroma", "RSS ÷ Chroma's", "≤ 1.2"),
    ("store_1m", "engramdb_filtered_p95_ms", "1M records: filtered top-10 p95, ms", "≤ 5"),
    ("store_1m", "chroma_filtered_p95_ms", "1M records: filtered p95, ms (Chroma)", ""),
    ("store_1m", "engramdb_recall_at_10", "1M records: filtered recall@10", "≥ 0.95"),
    ("store_1m", "engramdb_unfiltered_p95_ms", "1M records: unfiltered top-10 p95, ms", "≤ 8"),
    ("store_1m", "chroma_unfiltered_p95_ms", "1M records: unfiltered p95, ms (Chroma)", ""),
    ("store_1m", "engramdb_unfiltered_recall_at_10", "1M records: unfiltered recall@10", "≥ 0.95"),
    ("store_1m", "engramdb_hybrid_filtered_p95_ms", "1M records: hybrid filtered p95, ms", "≤ 5"),
    (
        "store_1m",
        "engramdb_hybrid_unfiltered_p95_ms",
        "1M records: hybrid unfiltered p95, ms",
        "≤ 8",
    ),
    (
        "core_share_1m",
        "none_hybrid_filtered_p95_ms",
        "1M records: hybrid filtered p95, ms, search-pair's store, nothing beside it",
        "",
    ),
    (
        "core_share_1m",
        "spacy_hybrid_filtered_p95_vs_none",
        "1M records: the same beside the spaCy pipeline on the other core ÷ alone",
        "",
    ),
    (
        "keyword_floor_1m",
        "hybrid_unfiltered_p95_ms",
        "1M records: hybrid unfiltered p95, ms, extraction off, beside its floor",
        "≤ 8",
    ),
    (
        "keyword_floor_1m",
        "floor_plus_vector_unfiltered_p95_ms",
        "1M records: floor of that search (exact keyword top 100 with its last score "
        "known, plus the vector search), p95 ms",
        "",
    ),
    ("store_1m", "engramdb_ingest_rec_per_s", "1M records: batch ingest, records/s", ""),
    ("store_1m", "chroma_ingest_rec_per_s", "1M records: batch ingest, records/s (Chroma)", ""),
    (
        "store_1m",
        "engramdb_cold_open_first_search_s",
        "1M records: cold open + first search, s",
        "≤ 0.5",
    ),
    ("store_1m", "chroma_cold_open_first_search_s", "1M records: cold open, s (Chroma)", ""),
    ("store_1m", "engramdb_disk_mb", "1M records: size on disk, MB", ""),
    ("store_1m", "chroma_disk_mb", "1M records: size on disk, MB (Chroma)", ""),
    ("store_1m", "engramdb_rss_mb", "1M records: RSS, MB", ""),
    ("store_1m", "chroma_rss_mb", "1M records: RSS, MB (Chroma)", ""),
    ("postgres_1m", "engramdb_filtered_p95_ms", "1M on PostgreSQL: filtered top-10 p95, ms", ""),
    (
        "postgres_1m",
        "pgvector_filtered_p95_ms",
        "1M on PostgreSQL: filtered p95, ms (pgvector)",
        "",
    ),
    ("postgres_1m", "engramdb_recall_at_10", "1M on PostgreSQL: filtered recall@10", ""),
    (
        "postgres_1m",
        "pgvector_recall_at_10",
        "1M on PostgreSQL: filtered recall@10 (pgvector)",
        "",
    ),
    (
        "postgres_1m",
        "engramdb_unfiltered_p95_ms",
        "1M on PostgreSQL: unfiltered top-10 p95, ms",
        "",
    ),
    (
        "postgres_1m",
        "pgvector_unfiltered_p95_ms",
        "1M on PostgreSQL: unfiltered p95, ms (pgvector)",
        "",
    ),
    (
        "postgres_1m",
        "engramdb_unfiltered_recall_at_10",
        "1M on PostgreSQL: unfiltered recall@10",
        "",
    ),
    (
        "postgres_1m",
        "engramdb_hybrid_filtered_extraction_stopped_p95_ms",
        "1M on PostgreSQL: hybrid filtered p95, ms, extraction backlog stopped",
        "",
    ),
    (
        "postgres_1m",
        "engramdb_hybrid_unfiltered_extraction_stopped_p95_ms",
        "1M on PostgreSQL: hybrid unfiltered p95, ms, extraction backlog stopped",
        "",
    ),
    (
        "postgres_1m",
        "engramdb_ingest_rec_per_s",
        "1M on PostgreSQL: batch ingest onto 980k records, records/s",
        "",
    ),
    (
        "postgres_1m",
        "pgvector_ingest_rec_per_s",
        "1M on PostgreSQL: batch ingest onto 980k, records/s (pgvector)",
        "",
    ),
    (
        "postgres_1m",
        "bulk_load_rec_per_s",
        "1M on PostgreSQL: bulk load of 980k (migrate), records/s",
        "",
    ),
    (
        "postgres_1m",
        "pgvector_bulk_load_rec_per_s",
        "1M on PostgreSQL: bulk load, records/s (pgvector COPY + build)",
        "",
    ),
    ("postgres_1m", "engramdb_disk_mb", "1M on PostgreSQL: size on disk, MB", ""),
    ("postgres_1m", "pgvector_disk_mb", "1M on PostgreSQL: size on disk, MB (pgvector)", ""),
    (
        "postgres_1m",
        "engramdb_cold_open_first_search_s",
        "1M on PostgreSQL: new client's open + first search, s",
        "",
    ),
    ("filters", "engramdb_pref_search_p95_ms", "tag of 1% filtered top-10 p95, ms (engramdb)", ""),
    ("filters", "chroma_pref_search_p95_ms", "tag of 1% filtered top-10 p95, ms (Chroma)", ""),
    ("filters", "engramdb_food_search_p95_ms", "tag of 0.1% top-10 p95, ms (engramdb)", ""),
    ("filters", "chroma_food_search_p95_ms", "tag of 0.1% top-10 p95, ms (Chroma)", ""),
    ("filters", "engramdb_chat_search_p95_ms", "tag of 50% top-10 p95, ms (engramdb)", ""),
    ("filters", "chroma_chat_search_p95_ms", "tag of 50% top-10 p95, ms (Chroma)", ""),
    ("filters", "engramdb_pref_hybrid_p95_ms", "tag of 1% hybrid p95, ms (engramdb)", ""),
    ("filters", "engramdb_pref_recall_at_10", "tag of 1% recall@10 (engramdb)", ""),
    ("filters", "chroma_pref_recall_at_10", "tag of 1% recall@10 (Chroma)", ""),
    ("filters", "engramdb_pref_count_p50_ms", "count of a 1% tag p50, ms (engramdb)", ""),
    ("filters", "chroma_pref_count_p50_ms", "count of a 1% tag p50, ms (Chroma)", ""),
    ("filters", "engramdb_meta_doc_search_p95_ms", "metadata value of 1% top-10 p95, ms", ""),
    ("filters", "chroma_meta_doc_search_p95_ms", "same run, Chroma metadata of 1% p95, ms", ""),
    ("filters", "engramdb_meta_memo_hybrid_p95_ms", "metadata value of 0.1% hybrid p95, ms", ""),
    ("filters_postgres", "engramdb_pref_search_p95_ms", "PostgreSQL tag of 1% top-10 p95, ms", ""),
    ("filters_postgres", "chroma_pref_search_p95_ms", "same run, Chroma tag of 1% p95, ms", ""),
    (
        "filters_postgres",
        "engramdb_food_search_p95_ms",
        "PostgreSQL tag of 0.1% top-10 p95, ms",
        "",
    ),
    ("filters_postgres", "chroma_food_search_p95_ms", "same run, Chroma tag of 0.1% p95, ms", ""),
    ("filters_postgres", "engramdb_pref_hybrid_p95_ms", "PostgreSQL tag of 1% hybrid p95, ms", ""),
    (
        "filters_postgres",
        "engramdb_food_hybrid_p95_ms",
        "PostgreSQL tag of 0.1% hybrid p95, ms",
        "",
    ),
    ("ingest_embed", "engine_over_encoder_ratio", "MiniLM ingest / bare encoder", "≥ 0.85"),
    ("ingest_embed", "search_over_encoder_p95_ratio", "search e2e p95 / encoder p95", "≤ 1.3"),
    (
        "embedder",
        "default_over_torch_throughput",
        "MiniLM on ONNX Runtime (default) / torch, batch throughput",
        "≥ 1.2×",
    ),
    (
        "embedder",
        "default_top10_agreement_with_torch",
        "default top-10 agreement with torch",
        "1.0",
    ),
    ("embedder", "default_single_p50_over_torch", "default single-text p50 / torch's", "≤ 0.6"),
    ("embedder", "int8_over_torch_throughput", "int8 / torch, batch throughput", "≥ 2.5×"),
    ("embedder", "int8_top10_agreement_with_torch", "int8 top-10 agreement with torch", ""),
    ("embedder", "cold_start_s_default", "first vector in a new process, s (default)", ""),
    ("embedder", "cold_start_s_torch", "first vector in a new process, s (torch)", ""),
    ("embedder", "cli_add_wall_s_default", "CLI add on an existing store, wall s", "≤ 1.5"),
    ("embedder", "cli_add_wall_s_torch", "CLI add on an existing store, wall s (torch)", ""),
    ("embedder", "http_default_over_torch", "32 concurrent HTTP adds, default / torch", "≥ 3×"),
    (
        "embedder",
        "http_ceiling_over_torch",
        "32 concurrent HTTP adds, hash embedder (no encoder) / torch: the ceiling",
        "",
    ),
    (
        "embedder",
        "http_cpu_bound_ceiling_over_torch",
        "32 concurrent HTTP adds, default / torch at most where CPU is the limit (an add's "
        "CPU without encoder + each encoder's CPU per text)",
        "",
    ),
    ("locomo", "hybrid_recall_at_10", "LoCoMo hybrid Recall@10", "≥ 0.65"),
    ("locomo", "hybrid_ndcg_at_10", "LoCoMo hybrid NDCG@10", "≥ 0.45"),
    ("locomo", "keyword_recall_at_10", "LoCoMo keyword Recall@10", ""),
    ("locomo", "vector_recall_at_10", "LoCoMo vector Recall@10", ""),
    ("locomo", "search_p95_ms", "LoCoMo hybrid search p95, ms (incl. query embedding)", ""),
    ("postgres", "engramdb_filtered_p95_ms", "PostgreSQL filtered p95, ms (engramdb)", "≤ 8"),
    ("postgres", "pgvector_filtered_p95_ms", "PostgreSQL filtered p95, ms (raw pgvector)", ""),
    (
        "postgres",
        "filtered_p95_ratio_vs_pgvector",
        "PostgreSQL filtered p95 / pgvector's",
        "≤ 0.5",
    ),
    ("postgres", "engramdb_unfiltered_p95_ms", "PostgreSQL unfiltered p95, ms (engramdb)", ""),
    ("postgres", "engramdb_hybrid_filtered_p95_ms", "PostgreSQL hybrid filtered p95, ms", "≤ 8"),
    (
        "postgres",
        "engramdb_hybrid_unfiltered_p95_ms",
        "PostgreSQL hybrid unfiltered p95, ms",
        "≤ 15",
    ),
    (
        "postgres",
        "engramdb_hybrid_filtered_extraction_stopped_p95_ms",
        "PostgreSQL hybrid filtered p95, ms, extraction backlog stopped",
        "≤ 8",
    ),
    (
        "postgres",
        "engramdb_hybrid_unfiltered_extraction_stopped_p95_ms",
        "PostgreSQL hybrid unfiltered p95, ms, extraction backlog stopped",
        "≤ 15",
    ),
    (
        "postgres",
        "engramdb_hybrid_filtered_floor_p95_ms",
        "PostgreSQL hybrid filtered: its vector side + its one read after fusion, p95 ms (floor)",
        "",
    ),
    (
        "postgres",
        "engramdb_keyword_index_build_s",
        "PostgreSQL keyword index build in a process, s",
        "",
    ),
    ("postgres", "pgvector_unfiltered_p95_ms", "PostgreSQL unfiltered p95, ms (pgvector)", ""),
    (
        "postgres",
        "unfiltered_p95_ratio_vs_pgvector",
        "PostgreSQL unfiltered p95 / pgvector's",
        "≤ 1.5",
    ),
    ("postgres", "engramdb_recall_at_10", "PostgreSQL recall@10 (engramdb)", "≥ 0.99"),
    ("postgres", "engramdb_ingest_rec_per_s", "PostgreSQL ingest, rec/s (engramdb)", ""),
    ("postgres", "pgvector_ingest_rec_per_s", "PostgreSQL ingest, rec/s (pgvector)", ""),
    ("postgres", "ingest_ratio_vs_pgvector", "PostgreSQL ingest / pgvector's", "≥ 1.0"),
    ("postgres", "bulk_load_rec_per_s", "PostgreSQL bulk load incl. index, rec/s", "≥ 3,000"),
    ("consolidate", "consolidate_s", "consolidate 100k records (10% near-duplicates), s", ""),
    ("consolidate", "dry_run_s", "same, dry run (plan only), s", ""),
    ("consolidate", "precision", "merge precision vs planted pairs", ""),
    ("consolidate", "recall", "merge recall vs planted pairs", ""),
    ("service", "http_1_added_p50_ms", "HTTP, 1 client: search p50 added to in-process, ms", "≤ 1"),
    (
        "service",
        "http_8_throughput_over_inprocess",
        "HTTP, 8 clients (2 workers): search throughput / in-process",
        "≥ 0.8",
    ),
    (
        "service",
        "http_8_p95_over_inprocess",
        "HTTP, 8 clients (2 workers): search p95 / in-process",
        "≤ 1.5",
    ),
    ("service", "zmq_1_added_p50_ms", "ZeroMQ, 1 client: search p50 added, ms", ""),
    ("service", "health_p95_ms_under_heavy", "/health p95 under 8 heavy calls, ms", "≤ 50"),
    (
        "service",
        "huge_body_rss_growth_mb",
        "server RSS growth around a refused 300 MB body, MB",
        "",
    ),
    (
        "service",
        "huge_body_rss_growth_mb_later_rounds",
        "same, over the second and third rounds (bounded, not a leak), MB",
        "0",
    ),
    (
        "service",
        "http_floor_fastapi_thread_p50_ms",
        "HTTP floor: bare FastAPI, same models, one thread hop, 1 client p50, ms",
        "",
    ),
    (
        "service",
        "http_1_search_added_over_floor_ms",
        "HTTP, 1 client: search p50 added beyond that floor, ms",
        "",
    ),
    (
        "service",
        "soak_slope_mb_per_min",
        "server RSS slope over a 5-minute soak's second half, MB/min",
        "flat (≤ 1)",
    ),
]

# The README's short table: (file, engramdb key, alternative key or "", what, alternative, target)
HEADLINE: list[tuple[str, str, str, str, str, str]] = [
    (
        "store",
        "engramdb_filtered_p95_ms",
        "chroma_filtered_p95_ms",
        "search filtered to one user, top-10 p95, ms",
        "Chroma",
        "≤ 2",
    ),
    (
        "store",
        "engramdb_unfiltered_p95_ms",
        "chroma_unfiltered_p95_ms",
        "search over all users, top-10 p95, ms",
        "Chroma",
        "≤ 3",
    ),
    ("store", "engramdb_recall_at_10", "", "filtered recall@10", "", "≥ 0.99"),
    (
        "store",
        "engramdb_hybrid_filtered_p95_ms",
        "",
        "hybrid (vector + keyword, the default) filtered p95, ms, right after a bulk load "
        "(its entity extraction backlog running beside)",
        "",
        "≤ 3",
    ),
    (
        "store",
        "engramdb_hybrid_unfiltered_p95_ms",
        "",
        "the same over all users, p95 ms",
        "",
        "≤ 5",
    ),
    (
        "store_1m",
        "engramdb_filtered_p95_ms",
        "chroma_filtered_p95_ms",
        "1M records: search filtered to one user, top-10 p95, ms",
        "Chroma",
        "≤ 5",
    ),
    (
        "store",
        "engramdb_ingest_rec_per_s",
        "chroma_ingest_rec_per_s",
        "batch ingest, records/s",
        "Chroma",
        "≥ 25,000",
    ),
    (
        "store",
        "engramdb_single_add_p50_ms",
        "chroma_single_add_p50_ms",
        "one durable add, p50 ms",
        "Chroma",
        "≤ 3",
    ),
    (
        "store",
        "engramdb_cold_open_first_search_s",
        "chroma_cold_open_first_search_s",
        "cold open + first search, s",
        "Chroma",
        "≤ 0.3",
    ),
    ("store", "engramdb_disk_mb", "chroma_disk_mb", "size on disk, MB", "Chroma", "≤ 1.0×"),
    (
        "store",
        "engramdb_rss_mb",
        "chroma_rss_mb",
        "memory (RSS) after opening and 49 search pairs, MB",
        "Chroma",
        "≤ 1.2×",
    ),
    (
        "filters",
        "engramdb_pref_search_p95_ms",
        "chroma_pref_search_p95_ms",
        "search filtered by a tag on 1% of records, p95 ms",
        "Chroma",
        "",
    ),
    (
        "postgres",
        "engramdb_filtered_p95_ms",
        "pgvector_filtered_p95_ms",
        "PostgreSQL: filtered top-10 p95, ms",
        "raw pgvector",
        "≤ 8",
    ),
    (
        "postgres",
        "engramdb_hybrid_filtered_p95_ms",
        "",
        "PostgreSQL: hybrid (the default mode) filtered p95, ms",
        "",
        "≤ 8",
    ),
    (
        "postgres",
        "engramdb_hybrid_filtered_floor_p95_ms",
        "",
        "PostgreSQL: the same search's vector side + its one read after fusion, p95 ms (its floor)",
        "",
        "",
    ),
    (
        "postgres",
        "engramdb_hybrid_unfiltered_p95_ms",
        "",
        "PostgreSQL: hybrid unfiltered p95, ms",
        "",
        "≤ 15",
    ),
    (
        "postgres",
        "engramdb_ingest_rec_per_s",
        "pgvector_ingest_rec_per_s",
        "PostgreSQL: ingest, records/s",
        "raw pgvector",
        "",
    ),
    (
        "postgres_1m",
        "engramdb_filtered_p95_ms",
        "pgvector_filtered_p95_ms",
        "1M records on PostgreSQL: filtered top-10 p95, ms",
        "raw pgvector",
        "",
    ),
    (
        "embedder",
        "cold_start_s_default",
        "cold_start_s_torch",
        "first vector in a new process, s",
        "sentence-transformers",
        "",
    ),
    (
        "embedder",
        "cli_add_wall_s_default",
        "cli_add_wall_s_torch",
        "CLI add on an existing store, wall s",
        "sentence-transformers",
        "≤ 1.5",
    ),
    ("locomo", "hybrid_recall_at_10", "", "LoCoMo dev hybrid Recall@10", "", "≥ 0.65"),
    ("locomo", "hybrid_ndcg_at_10", "", "LoCoMo dev hybrid NDCG@10", "", "≥ 0.45"),
]

COMMANDS = {
    "store": "engramdb bench store",
    "store_1m": "engramdb bench store --records 1000000",
    "filters": "engramdb bench filters",
    "filters_postgres": "engramdb bench filters --postgres",
    "ingest_parts": "engramdb bench ingest-parts",
    "ingest_embed": "engramdb bench ingest-embed",
    "embedder": "engramdb bench embedder",
    "service": "engramdb bench service",
    "locomo": "engramdb bench locomo --data ../shared/data/locomo_dev.json "
    "--json bench/results/locomo.json",
    "postgres": "engramdb bench postgres",
    "postgres_1m": "engramdb bench postgres --records 1000000 --queries 300",
    "consolidate": "engramdb bench consolidate",
    "keyword_floor_1m": "engramdb bench keyword-floor --records 1000000",
    "core_share": "engramdb bench core-share",
    "core_share_1m": "engramdb bench core-share --records 1000000 --queries 300",
}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _machine(data: dict[str, Any]) -> str:
    machine = data.get("machine", {})
    load = machine.get("loadavg_at_start")
    started = machine.get("time", "")
    if load is None:
        return "machine load not recorded"
    return f"load average at start {load}" + (f", {started}" if started else "")


def _shown(data: dict[str, Any] | None, key: str) -> str:
    value = None if data is None or not key else data.get("summary", {}).get(key)
    if value is None:
        return "" if not key else "not run"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _notes(loaded: dict[str, dict[str, Any] | None]) -> list[str]:
    notes = []
    for name, data in sorted(loaded.items()):
        if data is not None:
            cfg = data.get("config", {})
            vec = cfg.get("hash_vectors")
            kind = "" if vec is None else (" (hash vectors)" if vec else " (MiniLM vectors)")
            notes.append(f"- `{name}.json`{kind}: `{COMMANDS[name]}`; {_machine(data)}")
    return notes


def headline() -> str:
    """Return the README's short table: engramdb beside its alternative, same run."""
    loaded = {name: _load(name) for name in {r[0] for r in HEADLINE}}
    lines = [
        "| figure | engramdb | alternative (same run) | target |",
        "|---|---|---|---|",
    ]
    for name, key, alt_key, label, alt, target in HEADLINE:
        data = loaded[name]
        other = f"{_shown(data, alt_key)} ({alt})" if alt_key else ""
        lines.append(f"| {label} | {_shown(data, key)} | {other} | {target} |")
    return "\n".join(lines + ["", *_notes(loaded)])


def section() -> str:
    """Return the markdown of the full table (docs/benchmarks.md)."""
    loaded = {name: _load(name) for name in {r[0] for r in ROWS}}
    lines = ["| figure | measured | target | file |", "|---|---|---|---|"]
    for name, key, label, target in ROWS:
        lines.append(f"| {label} | {_shown(loaded[name], key)} | {target} | `{name}.json` |")
    return "\n".join(lines + ["", *_notes(loaded)])


def _rewrite(path: Path, body: str) -> None:
    text = path.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{body}\n{END}{tail}")


def main() -> int:
    """Replace the sections between the bench markers; return the exit status."""
    _rewrite(README, headline())
    _rewrite(NOTEBOOK, section())
    return 0


if __name__ == "__main__":
    sys.exit(main())
