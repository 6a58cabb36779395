"""The checkpoint of a copy that several connections load at once: a log of batches.

Why not one "copied up to here" mark: with two loader connections a later batch can
commit before an earlier one, and a kill then leaves a hole. So each batch commits, in
the same transaction as its rows, one entry naming the span of the source stream it
covers: ``prev``, the key of the record just before its first one as the reader saw
the stream (None at the start), and ``last``, the key of its last record. Every record
after ``prev`` up to ``last`` is then in the target (the span's own records, or records
of an earlier committed span the reader skipped).

On resume the entries chain from the start (``None -> last -> ...``) to the point the
copy surely reached (:attr:`ResumePlan.after`); the entries left over are islands
further on, committed out of order, which :func:`skip_islands` steps over so that no
record is copied twice. Keys are (namespace, id) pairs and are only compared for
equality, so this holds whatever order the source iterates in, as long as it is the
same order each run (``iter_all`` orders by namespace and id).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

Key = tuple[str, str]
T = TypeVar("T")

ENTRY_INFIX = "#batch:"


def log_prefix(checkpoint_key: str) -> str:
    """What every ``meta`` key of the batch log of ``checkpoint_key`` starts with."""
    return checkpoint_key + ENTRY_INFIX


def entry_key(checkpoint_key: str, seq: int) -> str:
    """The ``meta`` key of batch ``seq`` of the copy checkpointed under ``checkpoint_key``."""
    return f"{log_prefix(checkpoint_key)}{seq:09d}"


def entry_value(prev: Key | None, last: Key, records: int) -> str:
    """The JSON entry a batch commits: its span and how many records it holds."""
    return json.dumps(
        {"prev": None if prev is None else list(prev), "last": list(last), "records": records}
    )


@dataclass
class ResumePlan:
    """Where a resumed copy starts and what it must step over."""

    after: Key | None = None
    """Every record up to this key (in source order) is in the target."""
    islands: dict[Key, Key] = field(default_factory=dict)
    """Committed spans past ``after``: the key before each span -> the span's last key."""
    records: int = 0
    """Records the logged batches hold (exactly what a killed run left in the target)."""
    next_seq: int = 0
    """The sequence number for the next batch (entries are never overwritten)."""


def plan_resume(entries: dict[str, str], checkpoint_key: str) -> ResumePlan:
    """Read the batch log (``meta`` key -> JSON entry) of ``checkpoint_key``."""
    spans: dict[Key | None, Key] = {}
    plan = ResumePlan()
    prefix = log_prefix(checkpoint_key)
    for name, raw in entries.items():
        if not name.startswith(prefix):
            continue
        entry = json.loads(raw)
        prev = None if entry["prev"] is None else _key(entry["prev"])
        spans[prev] = _key(entry["last"])
        plan.records += int(entry["records"])
        plan.next_seq = max(plan.next_seq, int(name[len(prefix) :]) + 1)
    while plan.after in spans:
        plan.after = spans.pop(plan.after)
    plan.islands = {prev: last for prev, last in spans.items() if prev is not None}
    return plan


def skip_islands(
    items: Iterable[T], after: Key | None, islands: dict[Key, Key], key_of: Callable[[T], Key]
) -> Iterator[tuple[Key | None, T]]:
    """Yield ``(key before it, item)`` for the items of ``items`` not inside an island.

    ``items`` is the source stream after ``after`` (``key_of`` gives an item's key); the
    key before an item is the key of
    the item just before it in the stream, skipped or not, so a batch that starts right
    after an island records that island's last key as its ``prev``.
    """
    seen = after
    until: Key | None = None
    for item in items:
        key = key_of(item)
        if until is None and seen in islands:
            until = islands[seen]
        if until is not None:
            if key == until:
                until = None
            seen = key
            continue
        yield seen, item
        seen = key


def _key(value: Any) -> Key:
    namespace, record_id = value
    return (str(namespace), str(record_id))
