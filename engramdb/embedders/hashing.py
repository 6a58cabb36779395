"""A deterministic, model-free embedder for tests and ``--no-model`` mode."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Feature hashing of lower-cased word unigrams and bigrams into ``dim`` buckets.

    Texts sharing words get similar vectors, so it is good enough for tests that need
    "nearby" without semantics. Same input, same vector, on every machine.
    """

    max_tokens = 256

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.name = f"hash-{dim}"

    def count_tokens(self, text: str) -> int:
        """Count word tokens."""
        return len(_TOKEN.findall(text))

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Return unit vectors built by hashing words and word pairs."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            feats = words + [a + " " + b for a, b in zip(words, words[1:], strict=False)]
            if not feats:
                feats = [text]
            for f in feats:
                h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = float(np.linalg.norm(out[i]))
            if norm == 0:
                out[i, 0] = 1.0
            else:
                out[i] /= norm
        return out
