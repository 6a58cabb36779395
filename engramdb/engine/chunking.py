"""Sentence-boundary chunking of long texts so each chunk fits the embedder's window."""

from __future__ import annotations

import re
from collections.abc import Callable

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n{2,}")


def approx_tokens(text: str) -> int:
    """Estimate word-piece tokens without a tokenizer (about 1.3 per word, plus punctuation)."""
    return int(len(text.split()) * 1.3) + text.count(",") + 1


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Return (start, end) character spans of the sentences of ``text``."""
    spans = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        if m.start() > start:
            spans.append((start, m.start()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans or [(0, len(text))]


def chunk_text(
    text: str, max_tokens: int, count_tokens: Callable[[str], int] = approx_tokens
) -> list[tuple[int, int]]:
    """Split text into spans of whole sentences of at most ``max_tokens`` each.

    A text that fits is one span covering it all. A sentence longer than the window becomes
    its own chunks, cut at word boundaries. Spans index into the original text, so the stored
    text stays exactly as given.
    """
    if count_tokens(text) <= max_tokens:
        return [(0, len(text))]
    chunks: list[tuple[int, int]] = []
    cur_start: int | None = None
    cur_end = 0
    for s, e in split_sentences(text):
        if count_tokens(text[s:e]) > max_tokens:
            if cur_start is not None:
                chunks.append((cur_start, cur_end))
                cur_start = None
            chunks.extend(_split_words(text, s, e, max_tokens, count_tokens))
            continue
        if cur_start is None:
            cur_start, cur_end = s, e
        elif count_tokens(text[cur_start:e]) <= max_tokens:
            cur_end = e
        else:
            chunks.append((cur_start, cur_end))
            cur_start, cur_end = s, e
    if cur_start is not None:
        chunks.append((cur_start, cur_end))
    return chunks


def _split_words(
    text: str, start: int, end: int, max_tokens: int, count_tokens: Callable[[str], int]
) -> list[tuple[int, int]]:
    out = []
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    i = 0
    while i < len(words):
        j = i + 1
        while j < len(words) and count_tokens(text[words[i][0] : words[j][1]]) <= max_tokens:
            j += 1
        out.append((words[i][0], words[j - 1][1]))
        i = j
    return out
