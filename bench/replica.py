"""Read-replica latency: reads on the primary vs on a streaming replica, and the fallback.

Starts a local primary and a ``pg_basebackup -R`` replica (bench/pgserver.py), loads a few
hundred records through one ``Memory`` and then times, on the same data:

* ``primary``: a Memory without ``read_url`` (every read on the primary);
* ``replica``: a Memory with ``read_url``, the replica caught up (probe cached);
* ``replica_probe_each_read``: the same with the probe cache disabled (``PROBE_S = 0``),
  which is what caching the replay position saves;
* ``write``: one add with and without the commit-position read that read-your-writes needs;
* ``fallback``: the replica stopped: the first read (which meets the dead replica) and the
  following ones (replica skipped).

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.replica   # writes bench/results/replica.json
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.pgserver import (
    fresh_schema,
    prepare_test_database,
    remove,
    start_local,
    start_replica,
)
from engramdb import HashEmbedder, Memory, Settings
from engramdb.stores.postgres import replica as pg_replica

N_RECORDS = 300
N_READS = 300


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 3),
    }


def wait_caught_up(primary_admin: str, replica_admin: str) -> None:
    with psycopg.connect(primary_admin, autocommit=True) as c:
        row = c.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    target = pg_replica.parse_lsn(row[0])
    while True:
        with psycopg.connect(replica_admin, autocommit=True) as c:
            got = c.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()
        if got and pg_replica.parse_lsn(got[0]) >= target:
            return
        time.sleep(0.02)


def reads(m: Memory, ids: list[str]) -> dict[str, dict[str, float]]:
    get = [timed(lambda i=i: m.get(ids[i % len(ids)])) for i in range(N_READS)]
    search = [timed(lambda i=i: m.search(f"note {i} about topic", top_k=10)) for i in range(100)]
    return {"get": summary(get), "search": summary(search)}


def main() -> None:
    primary = start_local()
    replica = None
    try:
        db_url = prepare_test_database(primary.admin_url)
        replica = start_replica(primary)
        with fresh_schema(db_url) as url:
            replica_url = url.replace(f":{primary.port}/", f":{replica.port}/")

            def memory(read: bool) -> Memory:
                settings = Settings(embedder="hash", hash_dim=64)
                if read:
                    settings = settings.model_copy(update={"read_url": replica_url})
                return Memory(url, embedder=HashEmbedder(64), settings=settings)

            out: dict[str, Any] = {"records": N_RECORDS, "reads": N_READS}
            with memory(False) as plain, memory(True) as routed:
                ids = [
                    r.record.id
                    for r in plain.add([f"note {i} about topic {i % 17}" for i in range(N_RECORDS)])
                    if r.record is not None
                ]
                wait_caught_up(primary.admin_url, replica.admin_url)
                reads(plain, ids)  # warm both servers' caches
                reads(routed, ids)
                saved = pg_replica.PROBE_S
                pg_replica.PROBE_S = 0.0
                try:
                    out["replica_probe_each_read"] = reads(routed, ids)
                finally:
                    pg_replica.PROBE_S = saved
                out["replica"] = reads(routed, ids)
                out["primary"] = reads(plain, ids)
                out["write"] = {
                    "without_read_url": summary(
                        [timed(lambda i=i: plain.add(f"w{i} plain")) for i in range(100)]
                    ),
                    "with_read_url": summary(
                        [timed(lambda i=i: routed.add(f"w{i} routed")) for i in range(100)]
                    ),
                }
                wait_caught_up(primary.admin_url, replica.admin_url)
                routed.get(ids[0])
                replica.stop("immediate")
                first = timed(lambda: routed.get(ids[0]))
                rest = [timed(lambda i=i: routed.get(ids[i % len(ids)])) for i in range(100)]
                out["fallback"] = {
                    "first_read_ms": round(first, 1),
                    "later_reads": summary(rest),
                    "counters": routed.engine.store.stats()["replica"],
                }
        print(json.dumps(out, indent=2))
        target = Path(__file__).parent / "results" / "replica.json"
        target.write_text(json.dumps(out, indent=2) + "\n")
    finally:
        if replica is not None:
            remove(replica)
        remove(primary)


if __name__ == "__main__":
    main()
