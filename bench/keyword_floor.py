"""Hybrid search beside the floor of its keyword side: ``keyword-floor``.

Why: over a whole namespace of a million records, hybrid search misses its target (p95 of
8 ms) by its keyword side, which ranks the best ``search_pool`` (100) rows by bm25 exactly
(MaxScore over the derived keyword index, ``stores/sqlite/keyword_prune.py``). This
benchmark times, in one run and on one store, what such a search is made of and what the
exact keyword side cannot go below:

- ``hybrid``, ``vector``, ``keyword``: ``Memory.search`` in each mode, top 10;
- ``keyword_index``: the derived index's best ``search_pool`` rows alone (its term ids
  taken beforehand), without the engine, the record reads or the fusion;
- ``keyword_floor``: the same call told the page's last score in advance (``theta0``, from
  an untimed run of the same query). MaxScore then cuts from the first row as it would
  once the page is full, so it scores only the rows of the lists that can still reach the
  page (the "essential" lists) and looks each into the others only while it can. That is
  the least work of an exact document-at-a-time top-k with MaxScore's per-list bounds; a
  threshold guessed before the search can only come close to it. Block-wise bounds
  (block-max) were measured as a probe and skip nothing on these short texts (see
  docs/benchmarks.md, "The keyword side's floor at a million rows");
- ``floor_plus_vector``: per query, the floor's time plus the vector search's: the least a
  hybrid search that runs its two sides one after the other and does nothing else costs.

Each contender runs blocks of :data:`bench.store.SEARCH_BLOCK` queries, the contenders'
order rotating per block, over the whole namespace and filtered to the asking user. The
store is ``search-pair``'s (``--workdir`` keeps and reuses it), built with extraction off,
and searched in a copy. Output ``keyword_floor.json`` (``keyword_floor_1m.json`` at a
million records).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import finish, latency, log, machine
from bench.data import store_config
from bench.search_pair import searched_copy, workload_options
from bench.store import SEARCH_BLOCK, K
from bench.synthetic import result_name

CONTENDERS = ("hybrid", "vector", "keyword", "keyword_index", "keyword_floor")


class _Queries:
    """The workload's queries as each contender takes them: text, vector, user, and the
    derived index's term ids and page floor per scope (computed untimed)."""

    def __init__(self, mem: Any, texts: list[str], vectors: np.ndarray, users: list[str]):
        from engramdb.engine.keyword import match_expression
        from engramdb.stores.sqlite.keyword_search import match_words

        self.mem, self.texts, self.vectors, self.users = mem, texts, vectors, users
        self.index = mem.engine.store._keywords._index
        if self.index is None:
            raise SystemExit("the derived keyword index is not built: too few records?")
        self.pool = max(2 * K, mem.engine.settings.search_pool)
        self.tids = []
        for text in texts:
            words = match_words(match_expression(text)) or []
            self.tids.append(self.index.term_ids(words) or [])
        self.theta: dict[tuple[int, bool], float] = {}
        same = 0
        for i in range(len(texts)):
            for filtered in (True, False):
                page = self.page(i, filtered, 0.0)
                theta = page[-1][1] if len(page) == self.pool else 0.0
                self.theta[(i, filtered)] = theta
                same += self.page(i, filtered, theta) == page
        # The floor is a measuring stick only if it finds the page the index finds.
        self.same_pages = same / (2 * len(texts))

    def page(self, i: int, filtered: bool, theta0: float) -> list[tuple[int, float]]:
        user = self.users[i] if filtered else None
        return self.index.search(
            self.tids[i], self.mem.namespace, user, filtered, self.pool, theta0=theta0
        )

    def run(self, name: str, i: int, filtered: bool) -> Any:
        if name == "keyword_index":
            return self.page(i, filtered, 0.0)
        if name == "keyword_floor":
            return self.page(i, filtered, self.theta[(i, filtered)])
        return self.mem.search(
            self.texts[i],
            top_k=K,
            user_id=self.users[i] if filtered else None,
            mode=name,
            query_vector=self.vectors[i],
        )


def time_blocks(
    run: Callable[[str, int, bool], Any], nq: int
) -> dict[tuple[str, bool], list[float]]:
    """Seconds per query of every contender, filtered and not, in rotating blocks."""
    lat: dict[tuple[str, bool], list[float]] = {
        (n, f): [] for n in CONTENDERS for f in (True, False)
    }
    for b, start in enumerate(range(0, nq, SEARCH_BLOCK)):
        turn = b % len(CONTENDERS)
        for name in CONTENDERS[turn:] + CONTENDERS[:turn]:
            for filtered in (True, False):
                for i in range(start, min(nq, start + SEARCH_BLOCK)):
                    t0 = time.perf_counter()
                    run(name, i, filtered)
                    lat[(name, filtered)].append(time.perf_counter() - t0)
    return lat


def main(
    out: Path,
    records: int,
    quick: bool,
    hash_vectors: bool,
    *,
    users: int | None = None,
    queries: int | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the store, time every contender, write the JSON."""
    workload_args = workload_options(records, quick, hash_vectors, users, queries)
    report: dict[str, Any] = {
        "benchmark": "keyword_floor",
        "machine": machine(),
        "config": dict(workload_args),
    }
    cfg = store_config(**workload_args)  # type: ignore[arg-type]
    with searched_copy(workdir, workload_args, "floor", report) as (mem, q):
        texts = q.texts
        qs = _Queries(mem, texts, q.vectors, q.users)
        report["keyword_index"]["segments"] = len(qs.index.segments)
        log(f"timing {len(CONTENDERS)} contenders over {len(texts)} queries, twice each")
        for i in range(min(len(texts), 2 * SEARCH_BLOCK)):  # warm-up
            for name in CONTENDERS:
                qs.run(name, i, False)
        lat = time_blocks(qs.run, len(texts))
    figures: dict[str, Any] = {}
    for (name, filtered), samples in lat.items():
        figures[f"{name}_{'filtered' if filtered else 'unfiltered'}"] = latency(samples)
    for filtered in (True, False):
        scope = "filtered" if filtered else "unfiltered"
        both = np.add(lat[("keyword_floor", filtered)], lat[("vector", filtered)])
        figures[f"floor_plus_vector_{scope}"] = latency(both.tolist())
    report["latency"] = figures
    report["pool"] = qs.pool
    report["floor_same_pages"] = qs.same_pages
    report["summary"] = {
        "records": cfg.records,
        "queries": len(texts),
        "floor_same_pages": qs.same_pages,
        **{
            f"{fig}_{q}_ms": figures[fig][f"{q}_ms"]
            for fig in sorted(figures)
            for q in ("p50", "p95")
            if figures[fig]["n"]
        },
    }
    return finish(report, out, result_name("keyword_floor", cfg.records), quick)
