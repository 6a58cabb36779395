"""Summaries of long texts and threads: extractive by default, an LLM when configured.

:class:`ExtractiveSummarizer` ranks sentences with TextRank over their embeddings (the
store's own embedder, so no model is downloaded and nothing leaves the machine): a graph
whose edges are the cosine similarities between sentences, PageRank over it, and the
best-ranked sentences in their original order. :class:`HTTPSummarizer` asks any
OpenAI-compatible chat endpoint (Ollama, vLLM, llama.cpp's server) instead. Both satisfy
:class:`Summarizer`, which is what the engine calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from engramdb.errors import ExtractionError, ValidationError

# A sentence ends at ., ! or ? followed by space, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Sentences shorter than this many characters carry too little to stand in a summary.
_MIN_SENTENCE_CHARS = 12
_DAMPING = 0.85
_ITERATIONS = 60


class Summarizer(Protocol):
    """Turns texts (a thread's turns, in order) into one short summary."""

    name: str

    def summarize(self, texts: Sequence[str], max_sentences: int) -> str:
        """Return a summary of ``texts`` of at most about ``max_sentences`` sentences.

        Raises:
            ExtractionError: the summarizer failed (an HTTP endpoint unreachable...).
        """
        ...


def split_sentences(texts: Sequence[str]) -> list[str]:
    """The sentences of ``texts`` in order (short fragments dropped unless nothing else)."""
    out: list[str] = []
    for text in texts:
        out.extend(s.strip() for s in _SENTENCE_END.split(text) if s and s.strip())
    long = [s for s in out if len(s) >= _MIN_SENTENCE_CHARS]
    return long or out


def textrank(vectors: np.ndarray) -> np.ndarray:
    """PageRank scores of sentences over their cosine-similarity graph.

    ``vectors``: one row per sentence, unit length (the embedders' output). Negative
    similarities count as no edge; a sentence with no edge spreads its rank evenly.
    """
    n = len(vectors)
    if n == 0:
        return np.zeros(0)
    sim = np.clip(vectors @ vectors.T, 0.0, None).astype(np.float64)
    np.fill_diagonal(sim, 0.0)
    out_weight = sim.sum(axis=1, keepdims=True)
    trans = np.where(out_weight > 0, sim / np.where(out_weight > 0, out_weight, 1.0), 1.0 / n)
    rank = np.full(n, 1.0 / n)
    for _ in range(_ITERATIONS):
        new = (1 - _DAMPING) / n + _DAMPING * (trans.T @ rank)
        if np.abs(new - rank).sum() < 1e-9:
            rank = new
            break
        rank = new
    return rank


class ExtractiveSummarizer:
    """TextRank over sentence embeddings: the summary is the thread's own best sentences.

    Example::

        s = ExtractiveSummarizer(embed)   # embed: list[str] -> unit vectors
        s.summarize(["We met in Lisbon.", "Bob moved to Porto in May."], 1)
    """

    name = "extractive"

    def __init__(self, embed: Callable[[list[str]], np.ndarray]) -> None:
        self._embed = embed

    def summarize(self, texts: Sequence[str], max_sentences: int) -> str:
        """Return the ``max_sentences`` best-ranked sentences, in their original order."""
        sentences = split_sentences(texts)
        if len(sentences) <= max_sentences:
            return " ".join(sentences)
        rank = textrank(np.asarray(self._embed(sentences), dtype=np.float32))
        best = sorted(np.argsort(-rank, kind="stable")[:max_sentences])
        return " ".join(sentences[i] for i in best)


class HTTPSummarizer:
    """An OpenAI-compatible ``/chat/completions`` endpoint writes the summary.

    Works with a local Ollama (``http://127.0.0.1:11434/v1``) or vLLM; tested against a
    small server that speaks the protocol, not against a real model.
    """

    name = "http"

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 60.0
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValidationError(
                f"summarizer_url must be an http(s) URL, got {base_url!r}", field="summarizer_url"
            )
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._key = api_key
        self._timeout = timeout_s

    def summarize(self, texts: Sequence[str], max_sentences: int) -> str:
        """Ask the endpoint for a summary of at most ``max_sentences`` sentences."""
        import httpx

        body: dict[str, Any] = {
            "model": self._model,
            "temperature": 0,
            "messages": [
                {
                    "role": "system",
                    "content": f"Summarize the conversation in at most {max_sentences} "
                    "sentences. Keep names, places, dates and decisions. Answer with the "
                    "summary only.",
                },
                {"role": "user", "content": "\n".join(texts)},
            ],
        }
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            resp = httpx.post(self._url, json=body, headers=headers, timeout=self._timeout)
            resp.raise_for_status()
            text = resp.json()["choices"][0]["message"]["content"]
        except httpx.HTTPError as exc:
            raise ExtractionError(f"summarizer {self._url} failed: {exc}") from exc
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ExtractionError(
                f"summarizer {self._url} gave an answer without choices[0].message.content"
            ) from exc
        if not isinstance(text, str) or not text.strip():
            raise ExtractionError(f"summarizer {self._url} gave an empty summary")
        return text.strip()
