"""The embedder as the engine uses it: in batches, its output checked, its failures wrapped.

An embedder is outside code (a model, or an object the caller passed): whatever it raises
becomes an :class:`~engramdb.errors.EmbeddingError`, and a vector of the wrong shape, NaN or
all zeros never reaches a store.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Sequence

import numpy as np

from engramdb.config import Settings
from engramdb.embedders.base import Embedder, check_vectors
from engramdb.errors import EmbeddingError, EngramError
from engramdb.observe import timing


class Encoder:
    """One engine's embedder behind the checks; ``reembed`` swaps ``embedder`` in place.

    Every part of the engine reads the embedder through the one ``Encoder`` it shares, so
    after a switch no part keeps embedding with the old model.
    """

    def __init__(self, settings: Settings, embedder: Embedder) -> None:
        self.settings = settings
        self.embedder = embedder

    @property
    def max_chunk_tokens(self) -> int:
        """The chunk size: the setting, or the embedder's window."""
        return self.settings.max_chunk_tokens or self.embedder.max_tokens

    def count_tokens(self, text: str) -> int:
        """Measure text with the embedder's tokenizer (outside code: its failures are wrapped).

        Raises:
            EmbeddingError: the tokenizer raised or returned something other than an integer.
        """
        try:
            return operator.index(self.embedder.count_tokens(text))
        except EngramError:
            raise
        except Exception as exc:
            raise EmbeddingError(
                f"embedder {self.embedder.name!r} failed to count tokens "
                f"({type(exc).__name__}; the cause is chained and logged)"
            ) from exc

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Embed texts in batches, checking the (untrusted) output of the embedder.

        Raises:
            EmbeddingError: the embedder raised, or returned vectors that fail the checks.
        """
        if not texts:
            return np.empty((0, self.embedder.dim), np.float32)
        parts = []
        step = self.settings.embed_batch_size * 8
        for i in range(0, len(texts), step):
            batch = list(texts[i : i + step])
            start = time.perf_counter()
            try:
                raw = self.embedder.embed(batch, query=query)
            except EngramError:
                raise
            except Exception as exc:  # the embedder is outside code: wrap whatever it raises
                raise EmbeddingError(
                    f"embedder {self.embedder.name!r} failed "
                    f"({type(exc).__name__}; the cause is chained and logged)"
                ) from exc
            timing("embedding", time.perf_counter() - start)
            parts.append(check_vectors(raw, len(batch), self.embedder.dim, self.embedder.name))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]
