"""The benchmark command line: ``engramdb bench ...`` and ``python -m bench ...`` call :func:`main`.

Subcommands:

- ``store``: engramdb against Chroma on the same precomputed vectors (``store.json``);
- ``filters``: tag-filtered search, list and count, engramdb against Chroma
  (``filters.json``);
- ``ingest-parts``: where a batch of 1,000 goes on SQLite: the engine's Python, the
  store's, and the store's statements replayed alone into a fresh file, with and without
  parts of the schema (``ingest_parts.json``);
- ``ingest-embed``: ``Memory.add`` with the real MiniLM against the bare encoder, plus
  end-to-end search latency and torch thread settings (``ingest_embed.json``);
- ``embedder``: the text encoder on torch, ONNX Runtime (the default) and int8, plus CLI
  ``add`` and concurrent HTTP adds end to end (``embedder.json``);
- ``locomo``: retrieval quality on LoCoMo (``locomo.json``; options are ``bench.locomo``'s);
- ``postgres``: engramdb's PostgreSQL store against a plain pgvector table, plus the bulk
  load of ``migrate``, on a server the benchmark starts itself (``postgres.json``);
- ``migrate``: a Chroma store migrated into SQLite and PostgreSQL, vectors reused and
  re-embedded, beside Chroma's own read-out of the same data (``migrate.json``);
- ``search-pair``: search p50/p95 of this tree against another checkout on one store,
  alternated round by round (``search_pair.json``);
- ``keyword-floor``: hybrid search beside the parts it is made of and the floor of its
  exact keyword side, on ``search-pair``'s store (``keyword_floor.json``);
- ``core-share``: search beside a busy second core (a counting loop, a matrix product,
  the spaCy pipeline) against search alone, wall and CPU time (``core_share.json``);
- ``langgraph``: ``EngramStore`` and ``EngramSaver`` against LangGraph's in-memory,
  SQLite and PostgreSQL backends (``langgraph.json``);
- ``consolidate``: consolidation of 100,000 records with 10% planted near-duplicates:
  time and precision/recall of the merges (``consolidate.json``; ``--postgres``:
  ``consolidate_postgres.json``);
- ``service``: search and add in-process, over HTTP (``engramdb serve``) and over ZeroMQ
  with 1, 8 and 32 clients; the floor of a bare Python HTTP round trip; ``/health`` under
  heavy calls; a refused 300 MB body; a memory soak (``service.json``);
- ``all``: every one in sequence.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.common import RESULTS_DIR, log

DEFAULT_RECORDS = 100_000


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="folder for the JSON results (default: bench/results)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small smoke configuration (5k records, 100 queries, 600 texts to embed)",
    )


def _pair_store_args(p: argparse.ArgumentParser) -> None:
    """The options of a benchmark that searches ``search-pair``'s store."""
    _common(p)
    _store_args(p)
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the built store here and reuse it (search-pair's layout; default: a "
        "temporary folder)",
    )


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--records",
        type=int,
        default=DEFAULT_RECORDS,
        help="corpus size (default 100000; --quick caps it at 5000)",
    )
    p.add_argument("--users", type=int, default=None, help="users (default: 1000 per 100k records)")
    p.add_argument(
        "--queries", type=int, default=None, help="held-out queries (default 1000, quick 100)"
    )
    p.add_argument(
        "--hash-vectors",
        action="store_true",
        help="model-free HashEmbedder vectors instead of MiniLM (smoke runs only)",
    )


def _synthetic_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--real-rows",
        type=int,
        default=100_000,
        help="rows with embedded vectors; above it rows are drawn around them with noise and "
        "the results go to <name>_<size>.json, e.g. store_1m.json (bench/synthetic.py)",
    )


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--texts", type=int, default=3_000, help="texts to ingest (default 3000; quick 600)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``engramdb bench``."""
    parser = argparse.ArgumentParser(
        prog="engramdb bench",
        description="Run engramdb's benchmarks and write JSON results (see bench/README.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "store",
        help="store speed against Chroma (store.json)",
        description="engramdb vs Chroma on the same precomputed MiniLM vectors: ingest, "
        "single add, filtered/unfiltered top-10 search, recall@10, RSS, disk, cold open.",
    )
    _common(p)
    _store_args(p)
    _synthetic_args(p)
    p = sub.add_parser(
        "filters",
        help="tag-filtered reads against Chroma (filters.json)",
        description="engramdb vs Chroma on the store workload with tags of 50%%, 1%% and "
        "0.1%% of records and one nobody has: filtered top-10 search p50/p95 and recall@10, "
        "a first page of 20, a count.",
    )
    _common(p)
    _store_args(p)
    p.add_argument(
        "--postgres",
        action="store_true",
        help="engramdb on a PostgreSQL server started for the run (filters_postgres.json)",
    )
    p = sub.add_parser(
        "ingest-parts",
        help="SQLite batch ingest split into engine, store and SQL alone (ingest_parts.json)",
        description="Memory.add of the store workload in batches of 1,000, timed whole and in "
        "the store; then the store's recorded statements replayed alone into a fresh file "
        "(the SQL floor), without the keyword index rows, and without the two random-order "
        "indexes.",
    )
    _common(p)
    _store_args(p)
    p = sub.add_parser(
        "ingest-embed",
        help="ingest and search with the real MiniLM vs the bare encoder (ingest_embed.json)",
        description="Memory.add throughput with MiniLMEmbedder vs bare SentenceTransformer."
        "encode on the same texts; search p95 end to end vs one bare query encoding; torch "
        "thread settings.",
    )
    _common(p)
    _ingest_args(p)
    p = sub.add_parser(
        "postgres",
        help="PostgreSQL store against a plain pgvector table (postgres.json)",
        description="engramdb's PostgresStore vs a pgvector table (HNSW m=16, "
        "ef_construction=100, ef_search=64) on the store workload, on a PostgreSQL started "
        "for the run: ingest, single add, filtered/unfiltered top-10, recall@10, and the "
        "bulk load of `engramdb migrate`.",
    )
    _common(p)
    _store_args(p)
    _synthetic_args(p)
    p = sub.add_parser(
        "embedder",
        help="the text encoder: torch vs ONNX Runtime vs int8 (embedder.json)",
        description="all-MiniLM-L6-v2 through sentence-transformers, through ONNX Runtime "
        "(the default) and int8: batch throughput, single-text latency, cold start, RSS, "
        "agreement with torch; CLI add wall time and 32 concurrent single adds over HTTP.",
    )
    _common(p)
    p.add_argument(
        "--http-only",
        action="store_true",
        help="only the concurrent HTTP adds and the encoder floor under them (embedder.json "
        "then holds those parts and their summary lines)",
    )
    p.add_argument(
        "--http-variants",
        default="torch,default,hash,noop",
        help="comma-separated HTTP variants, interleaved (torch, default, hash, noop, "
        "default-1lane; default: torch,default,hash,noop)",
    )
    p = sub.add_parser(
        "migrate",
        help="Chroma -> engramdb migration speed vs Chroma's own read-out (migrate.json)",
        description="records/s of `engramdb migrate` from a Chroma store into SQLite and "
        "PostgreSQL, with reused vectors and with MiniLM re-embedding, beside the time "
        "Chroma takes to read the same records out with collection.get, in one run.",
    )
    _common(p)
    _store_args(p)
    p.add_argument(
        "--reembed-records",
        type=int,
        default=None,
        help="records re-embedded with MiniLM (default 5000; quick 300)",
    )
    p.add_argument("--no-postgres", action="store_true", help="SQLite target only")
    p = sub.add_parser(
        "search-pair",
        help="search p50/p95 of this tree against another checkout, alternated (search_pair.json)",
        description="Build one SQLite store of the store workload, then time vector and hybrid "
        "search, filtered and unfiltered, in this tree and in --base (another checkout of the "
        "project, e.g. a git worktree of the commit before a change), round after round in "
        "fresh processes; report each tree's medians and the ratio head / base.",
    )
    _common(p)
    _store_args(p)
    p.add_argument("--base", type=Path, required=True, help="the checkout to compare against")
    p.add_argument("--rounds", type=int, default=3, help="rounds per tree (default 3)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the built store here and reuse it in later runs of the same workload "
        "(default: a temporary folder)",
    )
    p = sub.add_parser(
        "keyword-floor",
        help="hybrid search beside the floor of its keyword side (keyword_floor.json)",
        description="On search-pair's store: hybrid, vector and keyword search, the derived "
        "keyword index alone, and that index told the page's last score in advance (the "
        "floor of exact MaxScore), over the whole namespace and filtered to the user.",
    )
    _pair_store_args(p)
    p = sub.add_parser(
        "core-share",
        help="search beside a busy second core against search alone (core_share.json)",
        description="On search-pair's store: hybrid and vector search, filtered to the user "
        "and over the namespace, alone and beside a niced neighbour process on the other "
        "core (a counting loop, a matrix product, the spaCy pipeline), in rotating blocks; "
        "each search's wall time and its thread's CPU time.",
    )
    _pair_store_args(p)
    p = sub.add_parser(
        "langgraph",
        help="EngramStore/EngramSaver vs LangGraph's own stores and savers (langgraph.json)",
        description="LangGraph items from the store workload: put throughput, top-10 search "
        "p95 within a user's namespace and across all, recall@10 against exact, for EngramStore "
        "vs InMemoryStore and LangGraph's PostgresStore; aput+aget_tuple p95 on 50-step "
        "threads for EngramSaver vs LangGraph's SQLite and PostgreSQL savers.",
    )
    _common(p)
    _store_args(p)
    p.add_argument(
        "--no-postgres",
        action="store_true",
        help="skip the PostgreSQL stores and savers (no server is started)",
    )
    p = sub.add_parser(
        "extract",
        help="add throughput with entity extraction off, background and inline (extract.json)",
        description="Memory.add of the same texts (hash embedder) with ENGRAM_EXTRACT off, "
        "background and inline: batch and single adds, and how long the background queue "
        "takes to drain after the writes.",
    )
    _common(p)
    p.add_argument("--texts", type=int, default=5000, help="Texts added in batches")
    p.add_argument("--singles", type=int, default=300, help="Texts added one per call")
    p.add_argument("--batch", type=int, default=100, help="Texts per batch add")
    p.add_argument("--rounds", type=int, default=2, help="Rounds (modes rotate each round)")
    p = sub.add_parser(
        "consolidate",
        help="consolidation time and merge precision/recall on planted duplicates "
        "(consolidate.json)",
        description="Memory.add of --records texts (hash embedder), 10% of them planted "
        "near-duplicates, then consolidate (dry run and real), scored against the planted pairs.",
    )
    _common(p)
    p.add_argument("--records", type=int, default=DEFAULT_RECORDS, help="records (default 100000)")
    p.add_argument("--users", type=int, default=100, help="users (scopes) the records spread over")
    p.add_argument("--batch", type=int, default=1000, help="records per add call")
    p.add_argument(
        "--postgres",
        action="store_true",
        help="on a PostgreSQL server started for the run (consolidate_postgres.json)",
    )
    p = sub.add_parser(
        "service",
        help="the service over HTTP and ZeroMQ against in-process calls (service.json)",
        description="User-filtered hybrid search and single add (hash embedder, 5,000 "
        "records) in-process from 1/8/32 threads, then over HTTP and ZeroMQ from 1/8/32 "
        "clients against a real `engramdb serve` (1 worker, then --workers 2); /health p95 "
        "under 8 heavy calls; server RSS around a refused 300 MB body; the floor of a bare "
        "FastAPI round trip; server RSS through a mixed-load soak (--soak-seconds).",
    )
    _common(p)
    p.add_argument("--records", type=int, default=5000, help="records seeded (default 5000)")
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="seconds per measured phase (default 6; quick 1.5)",
    )
    p.add_argument(
        "--soak-seconds",
        type=float,
        default=None,
        help="seconds of the mixed-load memory soak (default 300; quick 3)",
    )
    sub.add_parser(
        "locomo",
        help="retrieval quality on LoCoMo (locomo.json); options as bench.locomo",
        add_help=False,
    )
    p = sub.add_parser(
        "all",
        help="store, filters, postgres, ingest-parts, ingest-embed, embedder, langgraph and "
        "locomo in sequence",
        description="Run every benchmark; each writes <out>/<name>.json.",
    )
    _common(p)
    _store_args(p)
    _ingest_args(p)
    p.add_argument("--data", type=Path, default=None, help="LoCoMo JSON (default ../shared/...)")
    return parser


def _locomo(argv: list[str]) -> int:
    from bench import locomo  # another module's options; imported only when asked for

    return int(locomo.main(argv))


def main(argv: list[str]) -> int:
    """Parse ``argv`` (without the program name), run the benchmark(s); return an exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv and argv[0] == "locomo":
        return _locomo(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command in ("store", "all"):
        from bench import store

        store.main(
            args.out,
            args.records,
            args.quick,
            args.hash_vectors,
            users=args.users,
            queries=args.queries,
            real_rows=getattr(args, "real_rows", 100_000),
        )
    if args.command in ("filters", "all"):
        from bench import filters

        filters.main(
            args.out,
            args.records,
            args.quick,
            args.hash_vectors,
            users=args.users,
            queries=args.queries,
            postgres=getattr(args, "postgres", False),
        )
    if args.command in ("postgres", "all"):
        from bench import postgres

        postgres.main(
            args.out,
            args.records,
            args.quick,
            args.hash_vectors,
            users=args.users,
            queries=args.queries,
            real_rows=getattr(args, "real_rows", 100_000),
        )
    if args.command in ("ingest-parts", "all"):
        from bench import ingest_parts

        ingest_parts.main(args.out, args.records, args.quick, args.hash_vectors, users=args.users)
    if args.command in ("ingest-embed", "all"):
        from bench import ingest_embed

        ingest_embed.main(args.out, min(args.texts, 600) if args.quick else args.texts)
    if args.command in ("embedder", "all"):
        from bench import embedder

        embedder.main(
            args.out,
            args.quick,
            http_only=getattr(args, "http_only", False),
            http_variants=getattr(args, "http_variants", "torch,default,hash,noop").split(","),
        )
    if args.command == "migrate":
        from bench import migrate

        migrate.main(
            args.out,
            args.records,
            args.quick,
            args.hash_vectors,
            reembed_records=args.reembed_records,
            postgres=not args.no_postgres,
        )
    if args.command == "search-pair":
        from bench import search_pair

        search_pair.main(
            args.out,
            args.base,
            args.records,
            args.quick,
            args.hash_vectors,
            rounds=args.rounds,
            users=args.users,
            queries=args.queries,
            workdir=args.workdir,
        )
    if args.command in ("keyword-floor", "core-share"):
        from bench import core_share, keyword_floor

        run = keyword_floor.main if args.command == "keyword-floor" else core_share.main
        run(
            args.out,
            args.records,
            args.quick,
            args.hash_vectors,
            users=args.users,
            queries=args.queries,
            workdir=args.workdir,
        )
    if args.command in ("langgraph", "all"):
        from bench import langgraph

        langgraph.main(
            args.out,
            args.records,
            args.quick,
            args.hash_vectors,
            users=args.users,
            queries=args.queries,
            postgres=not getattr(args, "no_postgres", False),
        )
    if args.command == "extract":
        from bench import extract

        extract.main(args.out, args.texts, args.singles, args.batch, args.rounds, args.quick)
    if args.command == "consolidate":
        from bench import consolidate

        consolidate.main(
            args.out, args.records, args.users, args.batch, args.quick, postgres=args.postgres
        )
    if args.command == "service":
        from bench import service

        service.main(
            args.out,
            args.quick,
            records=args.records,
            seconds=args.seconds,
            soak_seconds=args.soak_seconds,
        )
    if args.command == "all":
        loc = ["--json", str(args.out / "locomo.json")]
        if args.data is not None:
            loc += ["--data", str(args.data)]
        log("locomo")
        rc = _locomo(loc)
        if rc:
            return rc
    return 0
