"""Any sentence-transformers model from a local folder (``ENGRAM_EMBEDDER=st:/path/to/model``).

Teams that embedded their memories with another model keep their vectors by naming the same
model here. The model loads offline from the folder, on the CPU, when the embedder is built
(its dimension and window are read from it). The recorded name is ``st:<folder name>``, so
the same model moved to another path still matches the store.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engramdb.errors import EmbeddingError, ValidationError

PREFIX = "st:"


class SentenceTransformerPathEmbedder:
    """A sentence-transformers model loaded from ``path``."""

    def __init__(self, path: str, *, batch_size: int = 64) -> None:
        folder = Path(path).expanduser()
        if not path or not folder.is_dir():
            raise ValidationError(
                f"st: embedder: {path!r} is not a folder holding a sentence-transformers model",
                field="embedder",
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddingError(
                "sentence-transformers is not installed; install engramdb[model]"
            ) from exc
        try:
            self._model: Any = SentenceTransformer(str(folder), device="cpu")
        except Exception as exc:  # the library raises many kinds for a bad folder
            raise ValidationError(
                f"st: embedder: cannot load a model from {str(folder)!r}: {type(exc).__name__}",
                field="embedder",
            ) from None
        dim = self._model.get_sentence_embedding_dimension()
        if not dim:
            raise ValidationError(
                f"st: embedder: the model at {str(folder)!r} does not state its dimension",
                field="embedder",
            )
        self.name = f"{PREFIX}{folder.resolve().name}"
        self.dim = int(dim)
        self.max_tokens = int(self._model.max_seq_length or 256)
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        """Count the model's tokens in ``text`` (without special tokens)."""
        ids = self._model.tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
        return len(ids)

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Return an (n, dim) float32 array of unit vectors."""
        with self._lock:
            out = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)
