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
    # np.linalg.norm's own arithmetic, without its dispatch (every query pays this). A NaN
    # or infinity anywhere makes its row's norm non-finite, so the values are only looked
    # at when a norm is (a norm overflowing from finite values is no error, as before).
    norms = np.sqrt(np.add.reduce(arr * arr, axis=1, keepdims=True))
    if not np.isfinite(norms).all() and not np.isfinite(arr).all():
        raise EmbeddingError(f"embedder {name!r} returned NaN or infinite values", embedder=name)
    if (norms == 0).any():
        raise EmbeddingError(f"embedder {name!r} returned an all-zero vector", embedder=name)
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


EMBEDDER_CHOICES = ("minilm", "minilm-torch", "minilm-int8", "hash")


def resolve_embedder(spec: str | Embedder | None, settings: Settings) -> Embedder:
    """Turn a settings name (one of :data:`EMBEDDER_CHOICES`, ``openai:<model>`` or
    ``st:/path``) or an embedder into an embedder.

    ``minilm`` is all-MiniLM-L6-v2 on ONNX Runtime and ``minilm-torch`` the same model
    through sentence-transformers: one embedder (same name, same vectors) on two runtimes.
    ``minilm-int8`` is a different embedder (its vectors differ). ``openai:<model>`` speaks
    an OpenAI-compatible embeddings API; ``st:/path`` loads a local sentence-transformers
    model.

    Raises:
        ValidationError: an unknown name, or an object that is not an Embedder.
    """
    from engramdb.embedders.hashing import HashEmbedder
    from engramdb.embedders.minilm import MiniLMEmbedder
    from engramdb.embedders.onnx_minilm import OnnxMiniLMEmbedder

    if spec is None:
        spec = settings.embedder
    if not isinstance(spec, str):
        if not isinstance(spec, Embedder):
            raise ValidationError(
                f"embedder must be one of {', '.join(map(repr, EMBEDDER_CHOICES))} "
                "or an Embedder object"
            )
        return spec
    if spec in ("minilm", "minilm-int8"):
        return OnnxMiniLMEmbedder(
            "fp32" if spec == "minilm" else "int8",
            threads=settings.onnx_threads,
            batch_threads=settings.onnx_batch_threads,
            batch_size=settings.embed_batch_size,
            cache_size=settings.query_cache_size,
            coalesce_ms=settings.embed_coalesce_ms,
            coalesce_lanes=settings.embed_coalesce_lanes,
            model_dir=settings.model_dir,
        )
    if spec == "minilm-torch":
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
        f"unknown embedder {spec!r}; use one of {', '.join(map(repr, EMBEDDER_CHOICES))}, "
        "'openai:<model>' or 'st:/path'",
        field="embedder",
    )


def setting_for_stored(name: str, dim: int) -> dict[str, object] | None:
    """The settings that open a store whose embedder is recorded as ``name``/``dim``.

    Returns None for an embedder that no settings name builds (a caller's own object).
    """
    from engramdb.embedders.onnx_minilm import NAME_INT8

    if name.startswith("hash-"):
        return {"embedder": "hash", "hash_dim": dim}
    if name == NAME_INT8:
        return {"embedder": "minilm-int8"}
    if name.endswith("all-MiniLM-L6-v2"):
        return {"embedder": "minilm"}
    return None
