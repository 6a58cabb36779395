"""Proving a legacy migration: counts, content checksums and sampled retrieval.

Only what this run wrote is compared (the target may hold other namespaces and records):
for each namespace, the source side is every mapped record the run meant to write
(``Ledger``, filled while reading), the target side is those ids read back from the
target. Both sides hash the same line per record: provenance (source id), text, user,
agent, thread, type and the mapped metadata (the provenance keys removed), so a record
that lost a field, or landed under another id, changes the checksum. Then
``sample_size`` random records are read back by id and searched for by their own text,
and each must come back first.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engramdb.models import MemoryRecord

PROVENANCE = ("migrated_from", "migrated_at")


def content_line(
    ref: str,
    text: str,
    user_id: str,
    agent_id: str,
    thread_id: str,
    rtype: str,
    metadata: dict[str, Any],
) -> bytes:
    """The digest of one record's migrated content (what both sides must agree on)."""
    meta = {k: v for k, v in metadata.items() if k not in PROVENANCE}
    line = "\t".join(
        (ref, text, user_id, agent_id, thread_id, rtype, json.dumps(meta, sort_keys=True))
    )
    return hashlib.sha256(line.encode("utf-8")).digest()


def record_line(rec: MemoryRecord) -> bytes:
    """:func:`content_line` of a record read back from the target."""
    return content_line(
        str(rec.metadata.get("migrated_from", "")),
        rec.text,
        rec.user_id or "",
        rec.agent_id or "",
        rec.thread_id or "",
        rec.type,
        rec.metadata,
    )


def checksum(digests: dict[str, bytes]) -> str:
    """SHA-256 over ``(id, record digest)`` in id order."""
    h = hashlib.sha256()
    for rid in sorted(digests):
        h.update(rid.encode() + b"\0" + digests[rid])
    return h.hexdigest()


@dataclass
class Ledger:
    """What the run means to write: per namespace, id -> content digest (and the text)."""

    digests: dict[str, dict[str, bytes]] = field(default_factory=dict)
    texts: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)

    def add(self, namespace: str, rid: str, digest: bytes, text: str, user_id: str) -> None:
        """Record one mapped record."""
        self.digests.setdefault(namespace, {})[rid] = digest
        self.texts.setdefault(namespace, {})[rid] = (text, user_id)

    def counts(self) -> dict[str, int]:
        """Records per namespace."""
        return {ns: len(d) for ns, d in sorted(self.digests.items())}


def compare(
    ledger: Ledger,
    read: Callable[[str, list[str]], list[MemoryRecord]],
    total: Callable[[str], int],
) -> dict[str, Any]:
    """Compare the ledger with the target (``read(ns, ids)`` reads records back).

    Returns ``{"namespaces": {ns: {...}}, "mismatches": [text, ...]}``.
    """
    out: dict[str, Any] = {}
    mismatches: list[str] = []
    for ns, want in sorted(ledger.digests.items()):
        got: dict[str, bytes] = {}
        ids = sorted(want)
        for start in range(0, len(ids), 500):
            for rec in read(ns, ids[start : start + 500]):
                got[rec.id] = record_line(rec)
        missing = [i for i in ids if i not in got]
        differ = [i for i in ids if i in got and got[i] != want[i]]
        src_sum, dst_sum = checksum(want), checksum(got)
        out[ns] = {
            "source": len(want),
            "target": len(got),
            "target_namespace_total": total(ns),
            "checksum": src_sum,
            "target_checksum": dst_sum,
            "missing": missing[:20],
            "different": differ[:20],
        }
        if len(got) != len(want):
            mismatches.append(
                f"namespace {ns!r}: {len(want)} records from the source, {len(got)} in the "
                f"target ({len(missing)} missing)"
            )
        if src_sum != dst_sum:
            mismatches.append(
                f"namespace {ns!r}: content checksum differs ({len(differ)} record(s) differ)"
            )
    return {"namespaces": out, "mismatches": mismatches}


def sample(
    ledger: Ledger,
    size: int,
    get: Callable[[str, str], MemoryRecord | None],
    search: Callable[[str, str, str], list[MemoryRecord]],
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Look ``size`` random records up by id and search each by its own text.

    ``search(namespace, text, user_id)`` returns hits best first; a hit counts as first
    when it is the record, or holds exactly its text (an identical text elsewhere ranks
    equal by construction).
    """
    rng = rng or random.Random()
    pool = [(ns, rid) for ns, d in sorted(ledger.texts.items()) for rid in sorted(d)]
    chosen = rng.sample(pool, min(size, len(pool)))
    failures: list[dict[str, Any]] = []
    found = first = 0
    for ns, rid in chosen:
        text, user = ledger.texts[ns][rid]
        rec = get(ns, rid)
        if rec is None or rec.text != text:
            failures.append({"namespace": ns, "id": rid, "problem": "not found by id"})
            continue
        found += 1
        hits = search(ns, text, user)
        if hits and (hits[0].id == rid or hits[0].text == text):
            first += 1
        else:
            failures.append(
                {
                    "namespace": ns,
                    "id": rid,
                    "problem": "its own text did not find it first",
                    "top_hit": hits[0].id if hits else None,
                }
            )
    return {
        "size": len(chosen),
        "found_by_id": found,
        "first_by_own_text": first,
        "failures": failures,
    }
