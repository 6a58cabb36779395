"""Child process of the store benchmark: cold open of an existing store plus the first search.

Run by ``bench.store`` in a fresh interpreter so nothing is warm but the OS page cache:

    python -m bench.coldopen engramdb|chroma PATH QUERIES.npy QUERIES.json EMBEDDER_NAME

Prints one JSON object: import time, open time, first search time, warm search latencies
over the remaining queries, and RSS after each step. The model is never loaded: engramdb is
given a :class:`FixedEmbedder` with the store's embedder name and dimension, and every query
comes with its precomputed vector.
"""

from __future__ import annotations

import json
import sys
import time

T_START = time.perf_counter()


class FixedEmbedder:
    """An embedder that only names itself: every query here comes with its vector."""

    max_tokens = 256

    def __init__(self, name: str, dim: int) -> None:
        self.name = name
        self.dim = dim

    def count_tokens(self, text: str) -> int:
        """Count words (never used for search)."""
        return len(text.split())

    def embed(self, texts: object, *, query: bool = False) -> object:
        """Refuse: the benchmark passes query vectors, so nothing should be embedded here."""
        raise RuntimeError("FixedEmbedder does not embed; pass query_vector=")


def _rss() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def run_engramdb(path: str, qvecs: object, queries: list[dict[str, str]], name: str) -> dict:
    t0 = time.perf_counter()
    from engramdb import Memory, Settings

    t_import = time.perf_counter() - t0
    rss_import = _rss()
    t1 = time.perf_counter()
    mem = Memory(f"sqlite:///{path}", embedder=FixedEmbedder(name, 384), settings=Settings())
    t_open = time.perf_counter() - t1
    t2 = time.perf_counter()
    first = queries[0]
    mem.search(first["text"], top_k=10, user_id=first["user"], mode="vector", query_vector=qvecs[0])
    t_first = time.perf_counter() - t2
    rss_first = _rss()
    warm = []
    for i, q in enumerate(queries[1:], start=1):
        s = time.perf_counter()
        mem.search(q["text"], top_k=10, user_id=q["user"], mode="vector", query_vector=qvecs[i])
        mem.search(q["text"], top_k=10, mode="vector", query_vector=qvecs[i])
        warm.append(time.perf_counter() - s)
    rss_warm = _rss()
    mem.close()
    return _result(t_import, t_open, t_first, rss_import, rss_first, rss_warm, warm)


def run_chroma(path: str, qvecs: object, queries: list[dict[str, str]], name: str) -> dict:
    t0 = time.perf_counter()
    import chromadb

    t_import = time.perf_counter() - t0
    rss_import = _rss()
    t1 = time.perf_counter()
    client = chromadb.PersistentClient(
        path=path, settings=chromadb.Settings(anonymized_telemetry=False)
    )
    col = client.get_collection("bench", embedding_function=None)
    t_open = time.perf_counter() - t1
    t2 = time.perf_counter()
    first = queries[0]
    col.query(query_embeddings=[qvecs[0]], n_results=10, where={"user_id": first["user"]})
    t_first = time.perf_counter() - t2
    rss_first = _rss()
    warm = []
    for i, q in enumerate(queries[1:], start=1):
        s = time.perf_counter()
        col.query(query_embeddings=[qvecs[i]], n_results=10, where={"user_id": q["user"]})
        col.query(query_embeddings=[qvecs[i]], n_results=10)
        warm.append(time.perf_counter() - s)
    rss_warm = _rss()
    return _result(t_import, t_open, t_first, rss_import, rss_first, rss_warm, warm)


def _result(
    t_import: float,
    t_open: float,
    t_first: float,
    rss_import: float,
    rss_first: float,
    rss_warm: float,
    warm: list[float],
) -> dict:
    warm.sort()
    return {
        "import_s": round(t_import, 4),
        "open_s": round(t_open, 4),
        "first_search_s": round(t_first, 4),
        "open_plus_first_search_s": round(t_open + t_first, 4),
        "process_start_to_first_result_s": round(time.perf_counter() - T_START, 4),
        "rss_after_import_mb": rss_import,
        "rss_after_first_search_mb": rss_first,
        "rss_after_warm_searches_mb": rss_warm,
        "warm_pairs": len(warm),
        "warm_pair_p50_ms": round(warm[len(warm) // 2] * 1000, 3) if warm else None,
    }


def main(argv: list[str]) -> int:
    system, path, qfile, jfile, name = argv
    import numpy as np

    qvecs = np.load(qfile, allow_pickle=False)
    with open(jfile, encoding="utf-8") as fh:
        queries = json.load(fh)
    fn = run_engramdb if system == "engramdb" else run_chroma
    print(json.dumps(fn(path, qvecs, queries, name)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
