"""One round of ``search-pair`` (bench/search_pair.py) in one source tree.

Run as a script, with the tree under test first on ``sys.path`` (``PYTHONPATH``): it imports
that tree's ``engramdb``, ``bench.data`` and ``bench.store``. Arguments: the store file, the
workload options as JSON, and ``--prepare`` for the untimed first run. Prints one JSON line:
p50/p95 (ms) of vector and hybrid search, filtered to the asking user and not, each mode's
queries run as a block after a warm-up.
"""

from __future__ import annotations

import gc
import json
import sys
import time

import numpy as np

from bench.data import store_config
from bench.store import LookupEmbedder, embedder_name, wait_for_ann, wait_for_keyword_index
from bench.synthetic import workload
from engramdb import Memory, Settings

K = 10
WARM = 100


def main(store: str, workload_args: dict[str, object], prepare: bool) -> dict[str, object]:
    """Wait for the store's ANN graphs and keyword index, then time the searches; with
    ``prepare`` only the wait, which brings the derived indexes to this tree's own format
    (a tree ignores sidecars of a format it does not know and rebuilds them; they are
    saved on close)."""
    cfg = store_config(**workload_args)  # type: ignore[arg-type]
    w = workload(cfg)
    # Searches pass their query vectors: the embedder only names the store's model. The
    # corpus is dropped, so that the store's files, not a second copy of its vectors, have
    # the memory (a million rows' vectors are 1.5 GB).
    query_texts, query_vectors = list(w.query_texts), np.array(w.query_vectors)
    emb = LookupEmbedder(embedder_name(cfg), query_texts, query_vectors)
    query_users = [w.user_name(int(u)) for u in w.query_users]
    del w
    gc.collect()
    out: dict[str, object] = {}
    with Memory(f"sqlite:///{store}", embedder=emb, settings=Settings(extract="off")) as mem:
        # The ANN graphs and the keyword index (and whatever they load beside them) in
        # before any timing: a fresh process loads them from their files in background
        # threads, which at a million rows outlasts the warm-up, and searches meanwhile
        # scan exactly or rank with FTS5. The rounds time the steady state.
        out["ann"] = wait_for_ann(mem, query_vectors[0], query_users)
        out["keyword_index"] = wait_for_keyword_index(mem, query_texts[0], query_vectors[0])
        if prepare:
            return out
        n = len(query_texts)
        for mode in ("vector", "hybrid"):
            for filtered in (True, False):
                lat = []
                for j in range(WARM + n):
                    i = j % n
                    uid = query_users[i] if filtered else None
                    t0 = time.perf_counter()
                    mem.search(
                        query_texts[i],
                        top_k=K,
                        user_id=uid,
                        mode=mode,
                        query_vector=query_vectors[i],
                    )
                    if j >= WARM:
                        lat.append(time.perf_counter() - t0)
                ms = np.asarray(lat) * 1000.0
                out[f"{mode}_{'filtered' if filtered else 'unfiltered'}"] = {
                    "p50_ms": round(float(np.percentile(ms, 50)), 4),
                    "p95_ms": round(float(np.percentile(ms, 95)), 4),
                }
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]), "--prepare" in sys.argv[3:])))
