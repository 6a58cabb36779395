"""What consolidation would do, decided without I/O: near-duplicate groups, retention, expiry.

Pure functions over the records of a scan (records with their unit vectors), shared by a
real run and a dry run, so that ``dry_run=True`` reports exactly the plan a real run
applies.

Near-duplicates: two live records of the same scope (user, agent, thread, type and
validity) whose vectors' cosine is at least the threshold and whose metadata do not
disagree on any key. Records are taken richest first (longest text, then most tags and
metadata, then oldest); each unclaimed record claims its unclaimed near-duplicates, so a
group is a star around its survivor and a chain A~B~C never joins A and C through B.
The turns of a thread and summaries are never merged: they are a thread's account of
itself, not facts that repeat. A turn is any record of a thread but a derived statement
(``stores.prepared.is_turn``: the rule thread context follows), whichever path wrote it:
``add_messages`` (type ``message``) or ``add(thread_id=...)``. Two turns with the same
words are two things said at two times; merging them would drop one from the thread, move
the other's time and leave a gap in its neighbours' context. Facts extracted from a
thread, being statements about it, still merge.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from engramdb.models import MemoryRecord
from engramdb.stores.prepared import is_turn

#: Types never merged (with or without a thread): conversation turns and summaries.
UNMERGED_TYPES = frozenset({"message", "summary"})
# Pairwise similarities are computed this many matrix cells at a time (bounded memory).
_BLOCK_CELLS = 1 << 23
_DAY_S = 86400.0


@dataclass(slots=True)
class Scanned:
    """A live record of the scan with its unit vector (mean of its chunks', renormalised)."""

    record: MemoryRecord
    vector: np.ndarray
    chunks: list[tuple[int, int, bytes, str]] = field(default_factory=list)


@dataclass(slots=True)
class MergeGroup:
    """A survivor (index into the scan) and the near-duplicates it absorbs."""

    survivor: int
    members: list[int]
    similarity: float


def record_vector(chunks: Sequence[tuple[int, int, bytes, str]]) -> np.ndarray | None:
    """The unit vector standing for a record: its chunks' vectors averaged and renormalised."""
    if not chunks:
        return None
    if len(chunks) == 1:
        mean = np.frombuffer(chunks[0][2], dtype=np.float32)
    else:
        vecs = np.stack([np.frombuffer(blob, dtype=np.float32) for _, _, blob, _ in chunks])
        mean = vecs.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else None


def mergeable(rec: MemoryRecord) -> bool:
    """Neither a summary nor a turn of a thread (see the module docstring)."""
    return rec.type not in UNMERGED_TYPES and not is_turn(rec.type, rec.thread_id)


def scope_key(rec: MemoryRecord) -> tuple[object, ...]:
    """Records merge only within one key: same user, agent, thread, type and validity."""
    return (rec.user_id, rec.agent_id, rec.thread_id, rec.type, rec.valid_from, rec.valid_to)


def richness(rec: MemoryRecord) -> tuple[int, int, int, str]:
    """Sort key, richest first: longer text, more tags, more metadata, then older id."""
    return (-len(rec.text.strip()), -len(rec.tags), -len(rec.metadata), rec.id)


def metadata_compatible(a: MemoryRecord, b: MemoryRecord) -> bool:
    """No key holds different values in the two records' metadata."""
    return all(b.metadata[k] == val for k, val in a.metadata.items() if k in b.metadata)


def near_duplicate_pairs(
    vectors: np.ndarray, threshold: float
) -> dict[int, list[tuple[int, float]]]:
    """Every pair of rows whose cosine is at least ``threshold``, both directions."""
    n = len(vectors)
    adj: dict[int, list[tuple[int, float]]] = defaultdict(list)
    step = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, n, step):
        sims = vectors[start : start + step] @ vectors.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if c > i:
                s = float(sims[r, c])
                adj[i].append((c, s))
                adj[c].append((i, s))
    return adj


def merge_groups(scan: Sequence[Scanned], threshold: float) -> list[MergeGroup]:
    """Near-duplicate groups of the scan (see the module docstring for the rule)."""
    by_scope: dict[tuple[object, ...], list[int]] = defaultdict(list)
    for i, s in enumerate(scan):
        if mergeable(s.record):
            by_scope[scope_key(s.record)].append(i)
    groups: list[MergeGroup] = []
    for idx in by_scope.values():
        if len(idx) < 2:
            continue
        adj = near_duplicate_pairs(np.stack([scan[i].vector for i in idx]), threshold)
        if not adj:
            continue
        claimed: set[int] = set()
        for local in sorted(adj, key=lambda k: richness(scan[idx[k]].record)):
            if local in claimed:
                continue
            lead = scan[idx[local]].record
            members: list[int] = []
            worst = 1.0
            for other, sim in sorted(adj[local], key=lambda p: richness(scan[idx[p[0]]].record)):
                if other in claimed or not metadata_compatible(lead, scan[idx[other]].record):
                    continue
                if all(
                    metadata_compatible(scan[idx[m]].record, scan[idx[other]].record)
                    for m in members
                ):
                    members.append(other)
                    worst = min(worst, sim)
            if members:
                claimed.add(local)
                claimed.update(members)
                groups.append(MergeGroup(idx[local], [idx[m] for m in members], worst))
    groups.sort(key=lambda g: scan[g.survivor].record.id)
    return groups


def retention_score(rec: MemoryRecord, now: datetime, half_life_days: float) -> float | None:
    """``importance * 0.5 ** (age / half-life)``, age from ``occurred_at``; None without an
    importance or before the record is one half-life old (never archived then)."""
    if rec.importance is None:
        return None
    when = rec.occurred_at or rec.created_at
    if when is None:
        return None
    age_days = (now - when).total_seconds() / _DAY_S
    if age_days < half_life_days:
        return None
    return float(rec.importance * 0.5 ** (age_days / half_life_days))


def is_expired(rec: MemoryRecord, now: datetime) -> bool:
    """The record's ``expires_at`` has passed."""
    return rec.expires_at is not None and rec.expires_at <= now
