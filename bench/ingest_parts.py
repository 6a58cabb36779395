"""Where a batch of 1,000 goes on the SQLite store: the engine's Python, the store's, SQL.

The store benchmark's batch ingest (``bench store``) gives one figure per system. This one
splits engramdb's into parts, to tell which targets the write path can reach at all:

1. ``Memory.add`` of the store workload in batches of 1,000 into a fresh file (the same
   records, vectors and settings as ``bench store``), timing the whole call and the store's
   ``add_records`` inside it; the difference is the engine (validation, ids, hashing,
   chunking, keyword text, the embedder lookup). Every statement the store runs on its
   writer connection is recorded with its parameters.
2. The recorded statements are replayed, batch by batch, into another fresh file made the
   same way, on a writer connection of the store's own making (same pragmas) with the
   store's own checkpointer poked after each commit, exactly as the store does. No Python
   runs in a batch beyond binding the rows: this is the time SQLite itself needs for the
   writes, the floor under any Python write path on this schema and machine.
3. The same replay into files without parts of the schema, to size them: without the
   keyword index's rows, and without the two indexes whose keys arrive in random order
   (``records_dedup``, the unique dedup index, and ``records_ns_user``, a user's records in
   id order). Those files are not valid stores; they only measure.

Writes ``ingest_parts.json``. A diagnostic, not a comparison: ``bench store`` is where
engramdb and Chroma ingest side by side.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import finish, log, machine, ratio
from bench.data import DataConfig, Workload, describe, load_workload, store_config
from bench.store import BATCH, LookupEmbedder, embedder_name

TARGET_REC_PER_S = 25_000  # issue 2's batch-ingest target
RANDOM_ORDER_INDEXES = ("records_dedup", "records_ns_user")


@dataclass
class _Statement:
    kind: str  # "one" (execute) or "many" (executemany)
    sql: str
    args: Any


@dataclass
class _Recorder:
    """Stands in for the store's writer connection: runs each statement and keeps it."""

    conn: sqlite3.Connection
    batch: list[_Statement] = field(default_factory=list)

    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        self.batch.append(_Statement("one", sql, args))
        return self.conn.execute(sql, args)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        rows = list(rows)
        self.batch.append(_Statement("many", sql, rows))
        return self.conn.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def _batches(w: Workload) -> list[list[dict[str, Any]]]:
    users = [w.user_name(u) for u in w.users]
    return [
        [
            {"text": t, "user_id": u}
            for t, u in zip(w.texts[s : s + BATCH], users[s : s + BATCH], strict=True)
        ]
        for s in range(0, len(w.texts), BATCH)
    ]


def _open(path: Path, emb: LookupEmbedder, w: Workload) -> Any:
    """A fresh store at ``path`` holding the embedder and one record (both files alike)."""
    from engramdb import Memory

    mem = Memory(f"sqlite:///{path}", embedder=emb)
    mem.add(w.add_texts[0], user_id="warm-up")
    return mem


def _ingest(path: Path, emb: LookupEmbedder, w: Workload) -> tuple[dict[str, float], list[Any]]:
    """Part 1: the real ingest, timed whole and in the store, recording the statements."""
    mem = _open(path, emb, w)
    store = mem.engine.store
    recorder = _Recorder(store._db.writer())
    store._db.writer = lambda: recorder  # the store asks for its writer per transaction
    inner = store.add_records
    in_store = [0.0]

    def add_records(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            in_store[0] += time.perf_counter() - t0

    store.add_records = add_records
    log_per_batch: list[list[_Statement]] = []
    total = 0.0
    batches = _batches(w)
    for i, items in enumerate(batches):
        recorder.batch = []
        t0 = time.perf_counter()
        mem.add(items)
        total += time.perf_counter() - t0
        log_per_batch.append(recorder.batch)
        if (i + 1) % 20 == 0:
            log(f"  ingest batch {i + 1}/{len(batches)}")
    counts = _row_counts(recorder.conn)
    mem.close()
    n = len(batches)
    return {
        "rows": counts,
        "add_ms_per_batch": total / n * 1000,
        "store_ms_per_batch": in_store[0] / n * 1000,
        "engine_ms_per_batch": (total - in_store[0]) / n * 1000,
        "add_rec_per_s": len(w.texts) / total,
    }, log_per_batch


@contextmanager
def _replay_target(
    path: Path, emb: LookupEmbedder, w: Workload, drop: tuple[str, ...]
) -> Iterator[Any]:
    """A store file made like the ingest's, with ``drop`` indexes removed, and its store."""
    _open(path, emb, w).close()
    if drop:
        with sqlite3.connect(path) as plain:
            for name in drop:
                plain.execute(f"DROP INDEX {name}")
        plain.close()
    from engramdb.stores.sqlite import SQLiteStore

    store = SQLiteStore(path)
    try:
        yield store
    finally:
        store.close()


def _replay(
    path: Path,
    emb: LookupEmbedder,
    w: Workload,
    logs: list[list[_Statement]],
    drop: tuple[str, ...] = (),
    skip_keyword: bool = False,
) -> dict[str, Any]:
    """Parts 2 and 3: the recorded statements alone, into a fresh file."""
    per_statement: Counter[str] = Counter()
    total = 0.0
    with _replay_target(path, emb, w, drop) as store:
        conn = store._db.writer()
        for batch in logs:
            for st in batch:
                if skip_keyword and "chunks_fts" in st.sql:
                    continue
                t0 = time.perf_counter()
                if st.kind == "many":
                    conn.executemany(st.sql, st.args)
                else:
                    conn.execute(st.sql, st.args).fetchall()
                took = time.perf_counter() - t0
                total += took
                per_statement[" ".join(st.sql.split())[:60]] += took
                if st.sql == "COMMIT":
                    store._db.checkpointer.kick()  # as Connections.write does after a commit
        rows = _row_counts(conn)
    n = len(logs)
    records = len(w.texts)
    return {
        "rows": rows,
        "ms_per_batch": total / n * 1000,
        "rec_per_s": records / total,
        "statements_ms_per_batch": {
            k: round(v / n * 1000, 2) for k, v in per_statement.most_common(8)
        },
    }


def _row_counts(conn: Any) -> dict[str, int]:
    """Records and chunks in the file: a replay must leave the same as the ingest."""
    return {
        t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
        for t in ("records", "chunks")
    }


def _check_same(ingest: dict[str, Any], replays: dict[str, dict[str, Any]]) -> None:
    for name, rep in replays.items():
        if rep["rows"] != ingest["rows"]:
            raise RuntimeError(f"replay {name} left {rep['rows']}, the ingest {ingest['rows']}")


def run(cfg: DataConfig) -> dict[str, Any]:
    """Measure the parts; return the report."""
    w = load_workload(cfg)
    vectors = np.concatenate([w.vectors, w.add_vectors])
    emb = LookupEmbedder(embedder_name(cfg), w.texts + w.add_texts, vectors)
    with tempfile.TemporaryDirectory(prefix="engramdb-bench-parts-") as tmp:
        root = Path(tmp)
        log(f"ingest {len(w.texts)} records in batches of {BATCH}, recording the statements")
        ingest, logs = _ingest(root / "ingest.db", emb, w)
        log("replay: the statements alone")
        full = _replay(root / "replay.db", emb, w, logs)
        log("replay without the keyword index rows")
        no_kw = _replay(root / "no_keyword.db", emb, w, logs, skip_keyword=True)
        log("replay without the two random-order indexes")
        no_rand = _replay(root / "no_random.db", emb, w, logs, drop=RANDOM_ORDER_INDEXES)
    _check_same(ingest, {"full": full, "no_keyword": no_kw, "no_random": no_rand})
    budget_ms = BATCH / TARGET_REC_PER_S * 1000
    summary = {
        "records": len(w.texts),
        "replayed_records": full["rows"]["records"],
        "batch": BATCH,
        "target_rec_per_s": TARGET_REC_PER_S,
        "budget_ms_per_batch": round(budget_ms, 2),
        "add_rec_per_s": round(ingest["add_rec_per_s"], 1),
        "add_ms_per_batch": round(ingest["add_ms_per_batch"], 2),
        "engine_ms_per_batch": round(ingest["engine_ms_per_batch"], 2),
        "store_ms_per_batch": round(ingest["store_ms_per_batch"], 2),
        "sql_only_ms_per_batch": round(full["ms_per_batch"], 2),
        "sql_only_rec_per_s": round(full["rec_per_s"], 1),
        "sql_only_over_budget": ratio(full["ms_per_batch"], budget_ms),
        "sql_only_without_keyword_index_ms_per_batch": round(no_kw["ms_per_batch"], 2),
        "sql_only_without_random_order_indexes_ms_per_batch": round(no_rand["ms_per_batch"], 2),
    }
    return {
        "benchmark": "ingest_parts",
        "machine": machine(),
        "workload": describe(w),
        "config": {"batch": BATCH, "records": len(w.texts), "synchronous": "FULL"},
        "summary": summary,
        "details": {
            "sql_only": full["statements_ms_per_batch"],
            "sql_only_without_keyword_index": no_kw["statements_ms_per_batch"],
            "sql_only_without_random_order_indexes": no_rand["statements_ms_per_batch"],
        },
    }


def main(
    out_dir: Path,
    records: int,
    quick: bool,
    hash_vectors: bool,
    users: int | None = None,
) -> dict[str, Any]:
    """Run with CLI-level options, write ``ingest_parts.json`` and print the summary."""
    cfg = store_config(records, quick, hash_vectors, users, None)
    return finish(run(cfg), out_dir, "ingest_parts", quick)
