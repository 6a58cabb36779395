"""``reconcile``: which records one store holds and the other lacks or holds differently.

Records are matched by id (dual-write and migration keep ids) and compared by a digest of
their content hash and the fields a caller sets (scopes, type, source, tags, metadata,
importance and the record's times), not by times a store or a migration assigns
(``created_at``, ``version``, the ``migrated_at`` metadata key); a side that holds no time
for a record (a legacy item without one) does not make it differ by its time. With
``repair`` a record missing on one side is copied from the other with its id, and a record
that differs is rewritten on ``b`` from ``a`` (``a`` is the reference: the primary of a dual
write). A side named in ``read_only`` is never written: what repair would write there is
left, and counted as a difference that remains. ``run_every`` repeats a job on a schedule
until told to stop.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engramdb.sidebyside.dual import record_item

PAGE = 1000
LISTED_IDS = 1000  # ids named in a report per kind and namespace (the counts are complete)


def record_digest(record: Any, ignore: Collection[str] = ()) -> str:
    """A digest of what a caller set on a record (not what a store assigned), leaving out
    the fields named in ``ignore``."""
    item = record_item(record)
    for name in ("id", "text", *ignore):
        item.pop(name, None)
    item["content_hash"] = record.content_hash
    item["tags"] = sorted(item.get("tags", []))
    # ``migrated_at`` is the time a migration wrote the record, as store-assigned as
    # ``created_at``: a legacy store never holds it, and the copy it came from is the same.
    meta = {k: val for k, val in item.get("metadata", {}).items() if k != "migrated_at"}
    item.pop("metadata", None)
    if meta:
        item["metadata"] = meta
    raw = json.dumps(item, sort_keys=True, default=_iso)
    return hashlib.sha256(raw.encode()).hexdigest()


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(type(value).__name__)


# A record's digest without its time, and its time (None: the side holds none).
Fingerprint = tuple[str, str | None]


def _fingerprint(record: Any, ignore: Collection[str]) -> Fingerprint:
    when = record.occurred_at
    kept = None if when is None or "occurred_at" in ignore else _iso(when)
    return record_digest(record, (*ignore, "occurred_at")), kept


def _same(x: Fingerprint, y: Fingerprint) -> bool:
    """Equal digests, and equal times unless a side holds none (a legacy item without a
    time, which its copy got when it was written)."""
    return x[0] == y[0] and (x[1] is None or y[1] is None or x[1] == y[1])


def _digests(mem: Any, ignore: Collection[str]) -> dict[str, Fingerprint]:
    out: dict[str, Fingerprint] = {}
    cursor = None
    while True:
        page = mem.list(limit=PAGE, cursor=cursor, include_expired=True)
        for record in page.records:
            out[record.id] = _fingerprint(record, ignore)
        cursor = page.next_cursor
        if not cursor:
            return out


@dataclass
class NamespaceDiff:
    """The differences of one namespace."""

    a: int = 0
    b: int = 0
    missing_in_a: list[str] = field(default_factory=list)
    missing_in_b: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    repaired: int = 0

    @property
    def differences(self) -> int:
        """Records missing on a side or different."""
        return len(self.missing_in_a) + len(self.missing_in_b) + len(self.different)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (id lists cut to ``LISTED_IDS``; the counts are complete)."""
        return {
            "a": self.a,
            "b": self.b,
            "missing_in_a": len(self.missing_in_a),
            "missing_in_b": len(self.missing_in_b),
            "different": len(self.different),
            "repaired": self.repaired,
            "ids": {
                "missing_in_a": self.missing_in_a[:LISTED_IDS],
                "missing_in_b": self.missing_in_b[:LISTED_IDS],
                "different": self.different[:LISTED_IDS],
            },
        }


def reconcile(
    a: Any,
    b: Any,
    *,
    repair: bool = False,
    namespaces: Sequence[str] | None = None,
    read_only: Collection[str] = (),
    ignore: Collection[str] = (),
) -> dict[str, Any]:
    """Compare (and with ``repair`` fix) every namespace of two stores.

    ``a`` and ``b`` are ``Memory`` objects (anything with ``namespaces``,
    ``with_namespace``, ``list``, ``get_many``, ``add`` and ``delete``, such as a
    :class:`~engramdb.ops.legacy_memory.LegacyMemory`). ``read_only`` names the sides
    (``"a"``, ``"b"``) repair must not write; ``ignore`` the record fields left out of the
    comparison (those a legacy side cannot keep: ``LegacyMemory.unheld_fields``). Returns
    the report: ``{"at", "differences", "repaired", "namespaces": {ns: {...}}}``;
    ``differences`` counts what was found before any repair.
    """
    names = sorted(set(namespaces or (*a.namespaces(), *b.namespaces())))
    report: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "namespaces": {}}
    total = repaired = 0
    for ns in names:
        side_a, side_b = a.with_namespace(ns), b.with_namespace(ns)
        da, db = _digests(side_a, ignore), _digests(side_b, ignore)
        diff = NamespaceDiff(a=len(da), b=len(db))
        diff.missing_in_b = sorted(set(da) - set(db))
        diff.missing_in_a = sorted(set(db) - set(da))
        diff.different = sorted(i for i in set(da) & set(db) if not _same(da[i], db[i]))
        if repair and "b" not in read_only:
            diff.repaired += _copy(side_a, side_b, diff.missing_in_b)
            for rid in diff.different:
                side_b.delete(rid)
            diff.repaired += _copy(side_a, side_b, diff.different)
        if repair and "a" not in read_only:
            diff.repaired += _copy(side_b, side_a, diff.missing_in_a)
        total += diff.differences
        repaired += diff.repaired
        report["namespaces"][ns] = diff.as_dict()
    report["differences"] = total
    report["repaired"] = repaired
    return report


def _batches(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), PAGE):
        yield ids[start : start + PAGE]


def _copy(source: Any, target: Any, ids: list[str]) -> int:
    n = 0
    for batch in _batches(ids):
        records = source.get_many(batch)
        if records:
            target.add([record_item(r) for r in records])
            n += len(records)
    return n


def run_every(
    interval_s: float,
    job: Callable[[int], Any],
    stop: threading.Event,
    *,
    max_runs: int | None = None,
) -> int:
    """Run ``job(run_number)`` now and then every ``interval_s`` seconds until ``stop`` is set
    or ``max_runs`` runs are done; return the number of runs. A job that raises stops the
    schedule (its error is the caller's)."""
    runs = 0
    while not stop.is_set():
        runs += 1
        job(runs)
        if max_runs is not None and runs >= max_runs:
            break
        if stop.wait(interval_s):
            break
    return runs


def parse_interval(text: str) -> float:
    """``"24h"``, ``"30m"``, ``"90s"``, ``"1d"`` (or plain seconds) → seconds.

    Raises:
        ValueError: not a positive number with one of the units s, m, h, d.
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in units else "s"
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise ValueError(f"--every {text!r}: use a number with s, m, h or d, e.g. 24h") from None
    if not value > 0 or value != value:
        raise ValueError(f"--every {text!r}: the interval must be positive")
    return value
