"""Keyword top-k on PostgreSQL without ranking every match: MaxScore over the GIN index.

Why: the keyword side ranks every chunk that matches any query word with ``ts_rank``, and
a ten-word query matches a large share of a namespace through its common words, so most
of a keyword search was reading and ranking chunks that could never reach the page.

The rule that makes skipping them exact. Every tsvector the store writes comes from
``to_tsvector`` (weight D, 0.1, on every position; ``doctor`` checks ``fts`` against the
body), and the store's query is an OR of lexemes. ``ts_rank`` of such a query is the sum,
over the query's distinct lexemes that the chunk holds, of ``0.1 * sum(1/j^2, j = 1..tf)
/ 1.64493406685`` (tf capped at 256), divided by the number ``n`` of distinct lexemes:
each lexeme adds less than ``0.1 / n`` and nothing depends on other rows (no IDF). So a
chunk holding none of a set E of the query's lexemes scores below ``(n - |E|) * 0.1 / n``.
A search ranks only the chunks matching E (the query without its commonest lexemes, by
``ANALYZE``'s element statistics), with the whole query's ``ts_rank``; when the k-th best
of them scores above that bound, no chunk left out can reach the page, ties included, and
the page is the one ranking every match gives, score for score. Otherwise fewer lexemes
are left out (as many as the k-th score allows) and, when none may be, every match is
ranked as before.

Nothing here is stored: the statistics only choose which lexemes to leave out, so stale,
missing or replica-side statistics cost time, never a different answer.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from engramdb.query.filters import Bool, Cmp, Live, Node
from engramdb.stores.postgres.search_sql import words_tsquery

BOUND = 0.1  # above what one lexeme adds to ts_rank before the division by n (see above)
MARGIN = 1e-4  # relative slack over the bound: ts_rank's float rounding stays far below it
FIRST_LEAVE_OUT = 0.34  # most of the query's lexemes a search first leaves out (a share)
MATCH_FACTOR = 2.0  # what is left must be expected to match this many times the page
MIN_LEAVE_OUT = 0.002  # a lexeme in fewer chunks than this share is never left out
STATS_TTL_S = 60.0  # how long ANALYZE's lexeme frequencies are reused
WORD_CACHE = 50_000  # query words whose lexeme is remembered
_LEXEME = re.compile(r"^'((?:[^']|'')*)'$")


def allowed_out(n_lexemes: int, kth: float) -> int:
    """How many lexemes a page whose k-th best score is ``kth`` lets a search leave out:
    the largest m with ``m * BOUND / n * (1 + MARGIN) < kth`` (at most n - 1)."""
    m = 0
    while m < n_lexemes - 1 and (m + 1) * BOUND / n_lexemes * (1 + MARGIN) < kth:
        m += 1
    return m


def scope_only(node: Node | None) -> bool:
    """Whether a filter is nothing but user equalities and the expiry check (those the
    chunk scope and the records' expiry pass almost always, so the page's first ``limit``
    matches are worth ranking alone)."""
    stack: list[Node] = [] if node is None else [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Bool) and n.op == "and":
            stack.extend(n.items)
        elif isinstance(n, Live):
            continue
        elif not (isinstance(n, Cmp) and n.field == "user_id" and n.op == "$eq"):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Term:
    """One query word, its lexeme, and the estimated share of chunks holding the lexeme."""

    word: str
    lexeme: str
    share: float


class KeywordTerms:
    """Query words' lexemes (remembered) and ANALYZE's lexeme frequencies (for a minute)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lexemes: dict[str, str | None] = {}
        self._stats: tuple[float, dict[str, float]] | None = None

    def terms(self, c: psycopg.Connection[Any], words: Sequence[str]) -> list[Term] | None:
        """The query's words, commonest lexeme first; None when a word is not exactly one
        lexeme (a phrase ranks differently) or there are no statistics yet."""
        shares = self._shares(c)
        if not shares:
            return None
        lexemes = self._lexemes_of(c, words)
        out = []
        for w in words:
            lex = lexemes.get(w)
            if lex is None:
                return None
            out.append(Term(w, lex, shares.get(lex, 0.0)))
        out.sort(key=lambda t: (-t.share, t.lexeme, t.word))
        return out

    def lexemes(self, c: psycopg.Connection[Any], words: Sequence[str]) -> list[str] | None:
        """Each query word's lexeme, in order; None when a word is not exactly one lexeme
        (a phrase, or nothing the configuration keeps: ``ts_rank`` treats those apart)."""
        known = self._lexemes_of(c, words)
        out = [known.get(w) for w in words]
        return None if any(lex is None for lex in out) else [str(lex) for lex in out]

    def _lexemes_of(
        self, c: psycopg.Connection[Any], words: Sequence[str]
    ) -> dict[str, str | None]:
        with self._lock:
            missing = [w for w in dict.fromkeys(words) if w not in self._lexemes]
            known = {w: self._lexemes[w] for w in words if w in self._lexemes}
        if missing:
            rows = c.execute(
                "SELECT to_tsquery('engram', t)::text FROM unnest(%s::text[]) "
                "WITH ORDINALITY AS u(t, i) ORDER BY i",
                ([words_tsquery([w]) for w in missing],),
            ).fetchall()
            for w, (text,) in zip(missing, rows, strict=True):
                m = _LEXEME.match(text or "")
                known[w] = m.group(1).replace("''", "'") if m else None
            with self._lock:
                if len(self._lexemes) > WORD_CACHE:
                    self._lexemes.clear()
                self._lexemes.update({w: known[w] for w in missing})
        return known

    def _shares(self, c: psycopg.Connection[Any]) -> dict[str, float]:
        now = time.monotonic()
        with self._lock:
            if self._stats is not None and now - self._stats[0] < STATS_TTL_S:
                return self._stats[1]
        row = c.execute(
            "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
            "WHERE schemaname = current_schema() AND tablename = 'chunks' AND attname = 'fts'"
        ).fetchone()
        shares: dict[str, float] = {}
        if row is not None and row[0] is not None and row[1] is not None:
            shares = {str(lex): float(f) for lex, f in zip(row[0], row[1], strict=False)}
        with self._lock:
            self._stats = (now, shares)
        return shares


def left_out(terms: Sequence[Term], count: int) -> set[str]:
    """The ``count`` commonest distinct lexemes of ``terms`` (commonest first), skipping
    any rarer than ``MIN_LEAVE_OUT`` (their matches cost little to rank)."""
    lexemes = list(dict.fromkeys(t.lexeme for t in terms if t.share >= MIN_LEAVE_OUT))
    return set(lexemes[:count])


def first_out(
    terms: Sequence[Term], scope_rows: int, limit: int, most: float, factor: float
) -> set[str]:
    """The lexemes a search first leaves out: the commonest, at most a ``most`` share of
    them, while the rest are still expected to match ``factor`` times ``limit`` chunks of
    a scope of ``scope_rows`` (lexemes taken as independent). Empty when even the whole
    query is not expected to match that many: ranking every match is cheap then, and a
    short page could not bound the others anyway."""
    lexemes = list(dict.fromkeys((t.lexeme, t.share) for t in terms))
    need = factor * limit
    best = 0
    for j in range(1, int(len(lexemes) * most) + 1):
        miss = 1.0
        for _, share in lexemes[j:]:
            miss *= 1.0 - min(share, 1.0)
        if scope_rows * (1.0 - miss) < need:
            break
        best = j
    return left_out(terms, best)
