"""Write cost of entity extraction: records/s with extraction off, background and inline.

The same generated texts (``bench.data.generate_texts``: sentences naming people, places
and things) go into three fresh SQLite files through ``Memory.add``, with the hash embedder
so that the figures are the write path's and the extraction's, not the model's:

* batch adds (``--batch`` texts per call) and single adds (one text per call);
* ``off``: no extraction; ``background`` (the default): the worker extracts after the
  writes (parsing in the helper process of ``engramdb.extract.process``), and the report
  adds how long the queue then takes to drain (a read of the entities waits for it), i.e.
  the extraction throughput; ``inline``: each add extracts its texts, in this process,
  before it returns.

The modes run in turn per round, the order rotating each round, so that load from other
processes falls on all of them alike; the spaCy pipeline (here and in the helper) is
loaded before the first round. Writes ``extract.json``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import finish, log, machine
from bench.data import generate_texts

MODES = ("off", "background", "inline")


def _run(mode: str, texts: list[str], singles: list[str], batch: int, root: Path) -> dict[str, Any]:
    from engramdb import HashEmbedder, Memory, Settings

    url = f"sqlite:///{root / f'{mode}-{time.monotonic_ns()}.db'}"
    mem = Memory(url, embedder=HashEmbedder(384), settings=Settings(extract=mode))
    try:
        start = time.perf_counter()
        for i in range(0, len(texts), batch):
            mem.add(texts[i : i + batch], user_id=f"u{i // batch % 10}")
        batch_s = time.perf_counter() - start
        start = time.perf_counter()
        for i, text in enumerate(singles):
            mem.add(text, user_id=f"u{i % 10}")
        single_s = time.perf_counter() - start
        start = time.perf_counter()
        entities = len(mem.entities(limit=1000)) if mode != "off" else 0
        drain_s = time.perf_counter() - start
        stats = mem.stats()["entities"]
    finally:
        mem.close()
    n = len(texts) + len(singles)
    return {
        "batch_rec_per_s": len(texts) / batch_s,
        "single_rec_per_s": len(singles) / single_s,
        "drain_after_writes_s": drain_s,
        "write_then_extracted_rec_per_s": n / (batch_s + single_s + drain_s),
        "entities_listed": entities,
        "mentions": stats.get("mentions", 0),
        "pending_at_end": stats.get("pending", 0),
    }


def main(out: Path, texts: int, singles: int, batch: int, rounds: int, quick: bool) -> None:
    """Run the comparison and write ``extract.json``."""
    if quick:
        texts, singles, rounds = min(texts, 1000), min(singles, 100), 1
    rng = np.random.default_rng(7)
    seen: set[str] = set()
    corpus = generate_texts(texts, rng, seen)
    single_texts = generate_texts(singles, rng, seen)
    from engramdb.extract import ProcessExtractor, load_pipeline

    t0 = time.perf_counter()
    load_pipeline()  # inline mode parses in this process
    load_s = time.perf_counter() - t0
    ProcessExtractor().extract(["warm up"])  # background mode parses in the helper process
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="engram-extract-bench-") as tmp:
        for r in range(rounds):
            order = MODES[r % 3 :] + MODES[: r % 3]
            for mode in order:
                log(f"round {r + 1}/{rounds}: {mode}")
                results[mode].append(_run(mode, corpus, single_texts, batch, Path(tmp)))

    def best(mode: str, key: str) -> float:
        return round(max(x[key] for x in results[mode]), 1)

    summary: dict[str, Any] = {"pipeline_load_s": round(load_s, 2)}
    for mode in MODES:
        summary[f"{mode}_batch_rec_per_s"] = best(mode, "batch_rec_per_s")
        summary[f"{mode}_single_rec_per_s"] = best(mode, "single_rec_per_s")
    summary["background_drain_after_writes_s"] = round(
        min(x["drain_after_writes_s"] for x in results["background"]), 2
    )
    for mode in ("background", "inline"):
        summary[f"{mode}_extracted_rec_per_s"] = best(mode, "write_then_extracted_rec_per_s")
    report = {
        "summary": summary,
        "runs": results,
        "config": {"texts": texts, "singles": singles, "batch": batch, "rounds": rounds},
        "machine": machine(),
    }
    finish(report, out, "extract", quick)
