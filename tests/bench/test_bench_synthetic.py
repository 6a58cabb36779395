"""The large-workload mode of the store benchmarks: real rows plus rows drawn around them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.data import load_workload, store_config
from bench.synthetic import NOISE, describe_synthetic, result_name, synthesize, workload


def test_rows_above_the_real_ones_are_drawn_around_them(tmp_path: Path) -> None:
    cfg = store_config(1_500, False, True, queries=20)
    w = synthesize(cfg, real_rows=1_000, cache_dir=tmp_path)
    base = load_workload(store_config(1_000, False, True, users=10, queries=20), tmp_path)
    assert len(w.texts) == len(w.users) == len(w.vectors) == 1_500
    assert w.texts[:1_000] == base.texts
    assert np.array_equal(w.vectors[:1_000], base.vectors)
    assert w.query_texts == base.query_texts
    assert np.array_equal(w.query_vectors, base.query_vectors)
    assert len(set(w.texts)) == 1_500  # unique: no dedup merges rows
    assert np.allclose(np.linalg.norm(w.vectors, axis=1), 1.0, atol=1e-5)
    for row in (1_000, 1_234, 1_499):
        source_text, suffix = w.texts[row].rsplit(" #", 1)
        assert suffix == str(row)
        source = base.texts.index(source_text)
        cos = float(w.vectors[row] @ base.vectors[source])
        assert 0.8 < cos < 0.97  # a near neighbour of its source, not a copy
    sizes = np.bincount(w.users, minlength=cfg.users)
    assert sizes.sum() == 1_500 and sizes[0] == sizes.max()  # the same zipf law
    assert w.query_users.max() < cfg.users
    again = synthesize(cfg, real_rows=1_000, cache_dir=tmp_path)
    assert np.array_equal(again.vectors, w.vectors) and again.texts == w.texts


def test_result_names_and_report_entry() -> None:
    assert result_name("store", 100_000) == "store"
    assert result_name("store", 1_000_000) == "store_1m"
    assert result_name("postgres", 1_000_000) == "postgres_1m"
    assert result_name("store", 250_000) == "store_250k"
    cfg = store_config(1_000_000, False, True)
    assert describe_synthetic(cfg, 100_000) == {
        "real_rows": 100_000,
        "synthetic_rows": 900_000,
        "noise": NOISE,
    }
    assert describe_synthetic(store_config(1_000, False, True), 100_000) is None
    with pytest.raises(ValueError, match="must exceed"):
        synthesize(store_config(1_000, False, True), real_rows=1_000)


def test_workload_is_the_real_corpus_up_to_real_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.synthetic

    monkeypatch.setattr(bench.synthetic, "load_workload", lambda cfg: load_workload(cfg, tmp_path))
    w = workload(store_config(800, False, True, queries=10), real_rows=1_000)
    assert len(w.texts) == 800 and "#" not in "".join(w.texts)
