"""Keyword-side probe: today's FTS5 ``bm25()`` ranking against candidate query plans.

Run: ``python -m bench.keyword_probe --records 30000 [--queries 300] [--out FILE]``.

Builds (once, cached under ``bench/.cache/``) a SQLite store of the store benchmark's
workload with hash vectors (only the keyword side is timed), then times, per query and
interleaved in a rotating order so that machine load falls on every variant alike:

- ``fts5_today``: the store's ``keyword_candidates`` (what hybrid search calls);
- ``fts5_rank``: FTS5's own ``ORDER BY rank LIMIT`` plan with the same weights;
- ``derived_index``: what was built from that prototype
  (:mod:`engramdb.stores.sqlite.keyword_index` behind ``keyword_candidates``);
- ``numpy_sparse``: a derived in-memory index read from the FTS5 index itself (so the
  tokenisation, stemming and stop words are today's), per-term posting arrays scored with
  FTS5's exact bm25 formula in numpy; filtered queries score only the user's slice of each
  posting list (postings sorted by user, then row).

Every variant's top ``--limit`` row ids are compared with today's (ties at the cut count
as equal) and the share of identical answers is reported. ``tantivy`` and ``bm25s`` are
not installed in the project environment; the report says so instead of timing them.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CACHE_DIR, RESULTS_DIR, before_after, log, machine, variants_against
from bench.data import load_workload, store_config
from engramdb.stores.sqlite.keyword_index import _varints

K1, B = 1.2, 0.75


def build_store(records: int, path: Path) -> None:
    """Ingest the store workload (hash vectors) into ``path`` in batches of 1,000."""
    from bench.store import LookupEmbedder
    from engramdb import Memory

    w = load_workload(store_config(records, False, True))
    emb = LookupEmbedder("hash-384", w.texts, w.vectors)
    tmp = path.with_name(path.name + ".building")
    for p in tmp.parent.glob(tmp.name + "*"):
        p.unlink()
    mem = Memory(f"sqlite:///{tmp}", embedder=emb)
    users = [w.user_name(u) for u in w.users]
    for start in range(0, len(w.texts), 1000):
        sl = slice(start, start + 1000)
        mem.add([{"text": t, "user_id": u} for t, u in zip(w.texts[sl], users[sl], strict=True)])
    mem.close()
    tmp.rename(path)
    for p in tmp.parent.glob(tmp.name + "*"):
        p.unlink()


class SparseBM25:
    """A read-only derived keyword index: FTS5's postings as numpy arrays, scored exactly.

    Per term: row positions sorted by (user, rowid) with the body term frequency, and the
    number of rows holding the term in any column (FTS5's IDF counts those). Row lengths
    are every column's tokens, as FTS5's bm25 reads them.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        t0 = time.perf_counter()
        sizes = conn.execute("SELECT id, sz FROM chunks_fts_docsize ORDER BY id").fetchall()
        self.rowids = np.array([r[0] for r in sizes], dtype=np.int64)
        self.doclen = np.array([sum(_varints(r[1])) for r in sizes], dtype=np.float64)
        self.n = len(sizes)
        self.avgdl = float(self.doclen.sum()) / self.n
        pos_of = {int(r): i for i, r in enumerate(self.rowids)}
        user_rows = conn.execute(
            "SELECT c.id, r.user_id FROM chunks c JOIN records r ON r.rid = c.rid"
        ).fetchall()
        names = sorted({u or "" for _, u in user_rows})
        self.user_index = {u: i for i, u in enumerate(names)}
        self.user_of = np.full(self.n, -1, dtype=np.int32)
        for cid, u in user_rows:
            if cid in pos_of:
                self.user_of[pos_of[cid]] = self.user_index[u or ""]
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.v_row USING fts5vocab(main, chunks_fts, row)"
        )
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.v_inst "
            "USING fts5vocab(main, chunks_fts, instance)"
        )
        self.nhit = dict(conn.execute("SELECT term, doc FROM temp.v_row").fetchall())
        tf: dict[str, dict[int, int]] = {}
        for term, doc, _ in conn.execute(
            "SELECT term, doc, count(*) FROM temp.v_inst WHERE col = 'body' GROUP BY term, doc"
        ):
            tf.setdefault(term, {})[doc] = _
        self.post: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for term, d in tf.items():
            pos = np.fromiter((pos_of[r] for r in d), dtype=np.int64, count=len(d))
            f = np.fromiter(d.values(), dtype=np.float64, count=len(d))
            order = np.lexsort((pos, self.user_of[pos]))
            self.post[term] = (pos[order], f[order], self.user_of[pos][order])
        self.build_s = time.perf_counter() - t0
        self._tok = sqlite3.connect(":memory:")
        self._tok.execute(
            "CREATE VIRTUAL TABLE t USING fts5(x, "
            "tokenize = 'porter unicode61 remove_diacritics 2')"
        )
        self._tok.execute("CREATE VIRTUAL TABLE ti USING fts5vocab(t, instance)")
        self._tokens: dict[str, tuple[str, ...]] = {}
        self._scratch = np.zeros(self.n, dtype=np.float64)

    def tokens(self, word: str) -> tuple[str, ...]:
        """The tokens FTS5 makes of one query word (cached)."""
        got = self._tokens.get(word)
        if got is None:
            self._tok.execute("DELETE FROM t")
            self._tok.execute("INSERT INTO t(rowid, x) VALUES (1, ?)", (word,))
            got = tuple(
                r[0] for r in self._tok.execute("SELECT term FROM ti ORDER BY offset").fetchall()
            )
            self._tokens[word] = got
        return got

    def idf(self, term: str) -> float:
        n_hit = self.nhit.get(term, 0)
        idf = float(np.log((0.5 + self.n - n_hit) / (0.5 + n_hit)))
        return idf if idf > 0.0 else 1e-6

    def search(self, words: list[str], user: str | None, limit: int) -> list[tuple[int, float]]:
        """Top ``limit`` (rowid, bm25 score) by FTS5's order: score desc, rowid asc.

        Terms are added in the query's order into a reused dense scratch array, so each
        row's sum is formed in FTS5's order (the same doubles, so the same ties).
        """
        acc = self._scratch
        u = None if user is None else self.user_index.get(user, -2)
        touched: list[np.ndarray] = []
        for w in words:
            toks = self.tokens(w)
            if len(toks) != 1:
                raise NotImplementedError("multi-token phrase")  # not in this workload
            p = self.post.get(toks[0])
            if p is None:
                continue
            pos, f, us = p
            if u is not None:
                lo, hi = np.searchsorted(us, [u, u + 1])
                pos, f = pos[lo:hi], f[lo:hi]
            idf = self.idf(toks[0])
            dl = self.doclen[pos]
            acc[pos] += idf * ((f * (K1 + 1.0)) / (f + K1 * (1 - B + B * dl / self.avgdl)))
            touched.append(pos)
        if not touched:
            return []
        cand = np.unique(np.concatenate(touched))
        sc = acc[cand]
        acc[cand] = 0.0
        if len(cand) > limit:
            kth = np.partition(-sc, limit - 1)[limit - 1]
            keep = -sc <= kth
            cand, sc = cand[keep], sc[keep]
        rid = self.rowids[cand]
        order = np.lexsort((rid, -sc))[:limit]
        return list(zip(rid[order].tolist(), sc[order].tolist(), strict=True))


def same_top(a: list[tuple[int, float]], b: list[tuple[int, float]], eps: float = 1e-9) -> bool:
    """Whether two rankings agree, rows with equal scores (within eps) interchangeable."""
    if len(a) != len(b):
        return False
    if any(abs(x[1] - y[1]) > eps * max(1.0, abs(x[1])) for x, y in zip(a, b, strict=True)):
        return False
    if not a:
        return True
    cut = a[-1][1]
    above_a = {r for r, s in a if s > cut + eps}
    above_b = {r for r, s in b if s > cut + eps}
    return above_a == above_b


def run(records: int, nq: int, limit: int) -> dict[str, Any]:
    """Build or reuse the store, then time the variants over ``nq`` queries, both scopes."""
    from bench.store import LookupEmbedder
    from engramdb import Memory
    from engramdb.engine.keyword import match_expression
    from engramdb.query.filters import Cmp

    path = CACHE_DIR / f"keyword_probe-{records}.db"
    if not path.exists():
        log(f"building {path.name}")
        t0 = time.perf_counter()
        build_store(records, path)
        log(f"built in {time.perf_counter() - t0:.0f} s")
    w = load_workload(store_config(records, False, True))
    emb = LookupEmbedder("hash-384", w.texts, w.vectors)
    mem = Memory(f"sqlite:///{path}", embedder=emb)
    store = mem._engine.store
    ns = mem.namespace
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    idx = SparseBM25(conn)
    log(f"sparse index built from FTS5 in {idx.build_s:.1f} s")
    rank_sql = (
        "SELECT rowid, -rank FROM chunks_fts WHERE chunks_fts MATCH ? AND rank MATCH "
        "'bm25(1.0, 0.0)' ORDER BY rank, rowid LIMIT ?"
    )

    from engramdb.stores.sqlite.keyword_search import KeywordSearch

    fts5_only = KeywordSearch(store._db, min_rows=2**62)  # today: FTS5 answers everything
    derived = KeywordSearch(store._db, min_rows=0)  # engramdb.stores.sqlite.keyword_index
    t0 = time.perf_counter()
    derived.keyword_candidates(ns, '"cafe"', None, 1)
    while derived._index is None:
        time.sleep(0.05)
    derived_build_s = time.perf_counter() - t0
    log(f"derived keyword index built in {derived_build_s:.1f} s (background thread)")

    def run_with(ks: KeywordSearch, q: str, user: str | None) -> list[tuple[int, float]]:
        node = None if user is None else Cmp("str", "user_id", "$eq", user)
        hits = ks.keyword_candidates(ns, match_expression(q), node, limit)
        return [(h.chunk_id, h.score) for h in hits]

    def today(q: str, user: str | None) -> list[tuple[int, float]]:
        return run_with(fts5_only, q, user)

    def derived_index(q: str, user: str | None) -> list[tuple[int, float]]:
        return run_with(derived, q, user)

    def fts5_rank(q: str, user: str | None) -> list[tuple[int, float]]:
        from engramdb.stores.sqlite.keys import scope_token

        m = match_expression(q)
        if user is not None:
            m = f'({m}) AND scope:"{scope_token(ns, "user_id", user)}"'
        return [(r[0], r[1]) for r in conn.execute(rank_sql, (m, limit)).fetchall()]

    def sparse(q: str, user: str | None) -> list[tuple[int, float]]:
        words = [t.strip('"') for t in match_expression(q).split(" OR ")]
        return idx.search(words, user, limit)

    # Query words' tokens are cached per word (a derived index would keep that cache): warm
    # it so the first scope timed does not pay for the whole vocabulary.
    for q in w.query_texts[:nq]:
        for t in match_expression(q).split(" OR "):
            idx.tokens(t.strip('"'))
    variants: dict[str, Callable[[str, str | None], list[tuple[int, float]]]] = {
        "fts5_today": today,
        "fts5_rank": fts5_rank,
        "numpy_sparse": sparse,
        "derived_index": derived_index,
    }
    names = list(variants)
    times: dict[str, dict[str, list[float]]] = {
        s: {n: [] for n in names} for s in ("filtered", "unfiltered")
    }
    agree: dict[str, dict[str, int]] = {
        s: {n: 0 for n in names} for s in ("filtered", "unfiltered")
    }
    for i in range(min(nq, len(w.query_texts))):
        q = w.query_texts[i]
        for scope, user in (("filtered", w.user_name(w.query_users[i])), ("unfiltered", None)):
            rot = names[i % len(names) :] + names[: i % len(names)]
            got: dict[str, list[tuple[int, float]]] = {}
            for n in rot:
                t0 = time.perf_counter()
                got[n] = variants[n](q, user)
                times[scope][n].append(time.perf_counter() - t0)
            for n in names:
                agree[scope][n] += same_top(got["fts5_today"], got[n])
    # Whole hybrid searches (the default mode), the store's keyword side swapped per query.
    hybrid: dict[str, dict[str, list[float]]] = {
        s: {"fts5_today": [], "derived_index": []} for s in ("filtered", "unfiltered")
    }
    sides = {"fts5_today": fts5_only, "derived_index": derived}
    same_hybrid = 0
    for i in range(min(nq, len(w.query_texts))):
        for scope, user in (("filtered", w.user_name(w.query_users[i])), ("unfiltered", None)):
            pages = {}
            for n in list(sides) if i % 2 == 0 else list(sides)[::-1]:
                store._keywords = sides[n]
                t0 = time.perf_counter()
                page = mem.search(
                    w.query_texts[i], top_k=10, user_id=user, query_vector=w.query_vectors[i]
                )
                hybrid[scope][n].append(time.perf_counter() - t0)
                pages[n] = [(h.record.id, h.score) for h in page.hits]
            same_hybrid += pages["fts5_today"] == pages["derived_index"]
    answered = derived.answered
    derived.stop()
    mem.close()
    out: dict[str, Any] = {
        "benchmark": "keyword_probe",
        "machine": machine(),
        "records": records,
        "queries": nq,
        "limit": limit,
        "sparse_build_s": round(idx.build_s, 2),
        "derived_build_s": round(derived_build_s, 2),
        "derived_answered": answered,
        "not_measured": {
            "tantivy": "not installed in the project venv (installs are not allowed here)",
            "bm25s": "not installed in the project venv (installs are not allowed here)",
        },
    }
    for scope in times:
        out[scope] = variants_against(times[scope], "fts5_today", agree[scope], nq)
    out["hybrid_top10"] = {"same_answers_share": round(same_hybrid / (2 * nq), 4)}
    for scope, by in hybrid.items():
        out["hybrid_top10"][scope] = before_after("fts5_today", "derived_index", by)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=30_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "keyword_probe.json")
    a = ap.parse_args()
    report = run(a.records, a.queries, a.limit)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("filtered", "unfiltered", "hybrid_top10")}, indent=2))


if __name__ == "__main__":
    main()
