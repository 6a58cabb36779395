"""An embedder's output is checked before it reaches a store: shape, finiteness, non-zero,
then normalised exactly as ``np.linalg.norm`` would (a search's scores depend on it)."""

from __future__ import annotations

import numpy as np
import pytest

from engramdb.embedders.base import check_vectors
from engramdb.errors import EmbeddingError


@pytest.mark.parametrize("shape", [(1, 384), (7, 384), (3, 16)])
def test_rows_are_normalised_bit_for_bit_as_linalg_norm(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    raw = rng.standard_normal(shape).astype(np.float32) * 37.5
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    got = check_vectors(raw.tolist(), shape[0], shape[1], "e")
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nan_or_infinity_anywhere_is_refused(bad: float) -> None:
    raw = np.ones((3, 8), np.float32)
    raw[2, 5] = bad
    with pytest.raises(EmbeddingError, match="NaN or infinite"):
        check_vectors(raw, 3, 8, "e")


def test_zero_rows_and_wrong_shapes_are_refused() -> None:
    with pytest.raises(EmbeddingError, match="all-zero"):
        check_vectors(np.zeros((2, 4), np.float32), 2, 4, "e")
    with pytest.raises(EmbeddingError, match="shape"):
        check_vectors(np.ones((2, 4), np.float32), 3, 4, "e")
    with pytest.raises(EmbeddingError, match="dimension"):
        check_vectors(np.ones((2, 4), np.float32), 2, 5, "e")


def test_finite_values_whose_norm_overflows_are_no_error() -> None:
    """Only NaN and infinity in the values are refused; float32 squares that overflow are
    the embedder's range, not an error (as before the norm was computed inline)."""
    with np.errstate(over="ignore"):
        got = check_vectors(np.full((1, 4), 1e30, np.float32), 1, 4, "e")
    assert got.shape == (1, 4)
