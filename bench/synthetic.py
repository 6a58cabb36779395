"""Workloads larger than the embedded corpus: real rows plus synthetic rows drawn around them.

Why: embedding a million texts with MiniLM takes hours, and the store benchmarks measure the
stores, not the model. Above ``real_rows`` (100,000: the corpus ``bench store`` embeds and
caches), the workload is:

* the first ``real_rows`` rows: the real corpus of the ``real_rows`` workload (same seed,
  1,000 users per 100k rows), texts and vectors unchanged, so its vector cache is reused;
* every further row: a real row ``j`` picked uniformly, text ``"<text j> #<row>"`` (unique,
  so no dedup merges rows, and the same words as a real text for the keyword side), vector
  ``normalize(v_j + e)`` with ``e`` drawn from N(0, NOISE^2) per dimension. NOISE 0.025 puts
  a synthetic row at cosine ~0.9 from its source: a near neighbour, not a duplicate, so the
  graph and the exact scan see dense clusters as real sentence embeddings have;
* users: every row gets a user from the same zipf law (``zipf_s``) over ``users`` users (1,000
  per 100k rows); queries and single adds: the real held-out texts and vectors, their users
  drawn from the same law.

Everything is seeded: the same config gives the same workload.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.common import log
from bench.data import DataConfig, Workload, load_workload, zipf_sizes

REAL_ROWS = 100_000
NOISE = 0.025
_STEP = 65_536  # synthetic rows drawn per step (bounds the temporary noise matrix)


def result_name(kind: str, records: int, real_rows: int = REAL_ROWS) -> str:
    """``store`` / ``postgres`` up to ``real_rows`` records; above, the size is in the name
    (``store_1m``, ``postgres_250k``) so a large run never replaces the 100k results."""
    if records <= real_rows:
        return kind
    label = f"{records / 1_000_000:g}m" if records % 1_000_000 == 0 else f"{records // 1000}k"
    return f"{kind}_{label}"


def synthesize(
    cfg: DataConfig, real_rows: int = REAL_ROWS, cache_dir: Path | None = None
) -> Workload:
    """The workload of ``cfg`` when ``cfg.records`` exceeds ``real_rows`` (see the module)."""
    if cfg.records <= real_rows:
        raise ValueError(f"records ({cfg.records}) must exceed real_rows ({real_rows})")
    base_users = max(10, round(cfg.users * real_rows / cfg.records))
    base_cfg = replace(cfg, records=real_rows, users=min(base_users, real_rows))
    base = load_workload(base_cfg) if cache_dir is None else load_workload(base_cfg, cache_dir)
    extra = cfg.records - real_rows
    log(f"drawing {extra} synthetic rows around {real_rows} real ones (noise {NOISE})")
    rng = np.random.default_rng(cfg.seed + 1)
    src = rng.integers(real_rows, size=extra)
    dim = base.vectors.shape[1]
    vectors = np.empty((cfg.records, dim), np.float32)
    vectors[:real_rows] = base.vectors
    for start in range(0, extra, _STEP):
        part = src[start : start + _STEP]
        v = base.vectors[part] + rng.standard_normal((len(part), dim), dtype=np.float32) * NOISE
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        vectors[real_rows + start : real_rows + start + len(part)] = v
    texts = base.texts + [f"{base.texts[j]} #{real_rows + i}" for i, j in enumerate(src.tolist())]
    sizes = zipf_sizes(cfg.records, cfg.users, cfg.zipf_s)
    users = np.repeat(np.arange(cfg.users), sizes)
    rng.shuffle(users)
    p = sizes / sizes.sum()
    return Workload(
        config=cfg,
        texts=texts,
        users=users,
        vectors=vectors,
        query_texts=base.query_texts,
        query_users=rng.choice(cfg.users, size=len(base.query_texts), p=p),
        query_vectors=base.query_vectors,
        add_texts=base.add_texts,
        add_users=rng.choice(cfg.users, size=len(base.add_texts), p=p),
        add_vectors=base.add_vectors,
        embed_seconds=base.embed_seconds,
        from_cache=base.from_cache,
    )


def workload(cfg: DataConfig, real_rows: int = REAL_ROWS) -> Workload:
    """The store benchmarks' workload: the embedded corpus, synthesised above ``real_rows``."""
    return load_workload(cfg) if cfg.records <= real_rows else synthesize(cfg, real_rows)


def describe_synthetic(cfg: DataConfig, real_rows: int) -> dict[str, object] | None:
    """The ``config.synthetic`` entry of a report (None when every row is real)."""
    if cfg.records <= real_rows:
        return None
    return {"real_rows": real_rows, "synthetic_rows": cfg.records - real_rows, "noise": NOISE}
