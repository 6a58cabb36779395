"""The embedder protocol and the checks every embedder's output goes through."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from engramdb.errors import EmbeddingError, ValidationError

if TYPE_CHECKING:
    from engramdb.config import Settings


@runtime_checkable
class Embedder(Protocol):
    """What the engine needs of an embedding model.

    ``name`` and ``dim`` are recorded in the store (the embedder is part of the data);
    ``embed`` returns one L2-normalised float32 row per text; ``max_tokens`` is the model's
    window, used as the default chunk size; ``count_tokens`` measures a text in its tokens.
    """

    name: str
    dim: int
    max_tokens: int

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Return an (n, dim) float32 array of unit vectors."""
        ...

    def count_tokens(self, text: str) -> int:
        """Return the number of model tokens in ``text``."""
        ...


def check_vectors(vectors: object, n: int, dim: int, name: str) -> np.ndarray:
    """Validate an embedder's output (untrusted): shape, finiteness, non-zero; normalise.

    Raises:
        EmbeddingError: wrong count or dimension, NaN/inf, or an all-zero vector.
    """
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EmbeddingError(f"embedder {name!r} returned non-numeric output: {exc}") from exc
    if arr.ndim != 2 or arr.shape[0] != n:
        raise EmbeddingError(
            f"embedder {name!r} returned shape {arr.shape} for {n} texts", embedder=name
        )
    if arr.shape[1] != dim:
        raise EmbeddingError(
            f"embedder {name!r} returned dimension {arr.shape[1]}, expected {dim}", embedder=name
        )
    if not np.isfinite(arr).all():
        raise EmbeddingError(f"embedder {name!r} returned NaN or infinite values", embedder=name)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms == 0).any():
        raise EmbeddingError(f"embedder {name!r} returned an all-zero vector", embedder=name)
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


def resolve_embedder(spec: str | Embedder | None, settings: Settings) -> Embedder:
    """Turn a settings name (``minilm``, ``hash``, ``openai:<model>``, ``st:/path``) or an
    embedder object into an embedder."""
    from engramdb.embedders.hashing import HashEmbedder
    from engramdb.embedders.minilm import MiniLMEmbedder

    if spec is None:
        spec = settings.embedder
    if not isinstance(spec, str):
        if not isinstance(spec, Embedder):
            raise ValidationError("embedder must be 'minilm', 'hash' or an Embedder object")
        return spec
    if spec == "minilm":
        return MiniLMEmbedder(
            threads=settings.torch_threads,
            batch_threads=settings.torch_batch_threads,
            batch_size=settings.embed_batch_size,
            cache_size=settings.query_cache_size,
        )
    if spec == "hash":
        return HashEmbedder(dim=settings.hash_dim)
    if spec.startswith("openai:"):
        from engramdb.embedders.openai_http import OpenAIEmbedder

        return OpenAIEmbedder.from_settings(spec.removeprefix("openai:"), settings)
    if spec.startswith("st:"):
        from engramdb.embedders.st_path import SentenceTransformerPathEmbedder

        return SentenceTransformerPathEmbedder(
            spec.removeprefix("st:"), batch_size=settings.embed_batch_size
        )
    raise ValidationError(
        f"unknown embedder {spec!r}; use 'minilm', 'hash', 'openai:<model>' or 'st:/path'",
        field="embedder",
    )
