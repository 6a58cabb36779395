"""Helpers shared by the contract suite (no fixtures: those live in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from engramdb import Memory, MemoryRecord

# Short texts sharing words in overlapping sets (cat, garden, bakery, monday, weekend...):
# searches over them have both keyword and vector-only candidates, and close scores.
CORPUS = [
    "the cat sat on the warm mat",
    "a dog chased the cat around the garden",
    "stock markets fell sharply on monday",
    "the garden needs watering every morning",
    "rain is expected over the weekend in the garden",
    "she bought fresh bread at the bakery",
    "the bakery opens early on monday morning",
    "quantum computers use qubits",
    "my cat likes fresh fish",
    "weekend plans include hiking and fishing",
    "the old dog sleeps all day",
    "markets and bakeries are busy on the weekend",
]


def all_records(mem: Memory, **kwargs: Any) -> list[MemoryRecord]:
    """Every record of the namespace (following cursors), expired ones included."""
    kwargs.setdefault("include_expired", True)
    out: list[MemoryRecord] = []
    cursor = None
    while True:
        page = mem.list(limit=1000, cursor=cursor, **kwargs)
        out.extend(page.records)
        cursor = page.next_cursor
        if cursor is None:
            return out


def state(mem: Memory) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """A comparable picture of a store: every record, the count and the namespace counts."""
    recs = [r.to_dict() for r in all_records(mem)]
    return recs, mem.count(include_expired=True), mem.namespaces()


def brute_force(mem: Memory, query: str, records: list[MemoryRecord]) -> dict[str, float]:
    """Cosine similarity of ``query`` to each record, computed from the embedder itself."""
    emb = mem.embedder
    q = np.asarray(emb.embed([query], query=True), np.float64)[0]
    q /= np.linalg.norm(q)
    vecs = np.asarray(emb.embed([r.text for r in records]), np.float64)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return {r.id: float(v @ q) for r, v in zip(records, vecs, strict=True)}
