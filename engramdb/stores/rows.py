"""SQL text and row helpers that both stores share (the schemas are the same in both).

The record row both select, the history rows of updates and deletes, the write generation,
the slot compare-and-set checks: written once here so that the two stores cannot drift.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from engramdb.errors import ConflictError, NotFoundError, QuotaExceededError
from engramdb.models import AddResult, HistoryEntry, MemoryRecord
from engramdb.stores.prepared import PreparedRecord, RecordChanges
from engramdb.timeutil import from_us, from_us_req

# The per-namespace write generation (migration 0002): ``{p}`` is the driver's placeholder.
# A namespace's generation is its own row plus the store-wide row ``''`` (bumped by imports,
# re-embedding, repairs and restore), so it rises with every write that can change a read.
GENERATION_SQL = (
    "SELECT COALESCE(SUM(generation), 0) FROM namespace_generations WHERE namespace IN ({p}, '')"
)
BUMP_GENERATION_SQL = (
    "INSERT INTO namespace_generations(namespace, generation) VALUES ({p}, 1) "
    "ON CONFLICT (namespace) DO UPDATE SET generation = namespace_generations.generation + 1"
)
# After a restore: the store-wide row jumps past every generation seen before it.
RESTORE_GENERATION_SQL = (
    "INSERT INTO namespace_generations(namespace, generation) VALUES ('', {p}) "
    "ON CONFLICT (namespace) DO UPDATE SET generation = excluded.generation"
)
# The distinct user scopes of a namespace's live records: one probe of the (namespace,
# user_id) index per scope (a loose index scan), not a read of every record.
_NEXT_USER = (
    "SELECT user_id FROM records WHERE namespace = {p} AND user_id > {x} "
    "AND (expires_at IS NULL OR expires_at > {p}) ORDER BY user_id LIMIT 1"
)
DISTINCT_USERS_SQL = (
    "WITH RECURSIVE u(v) AS (SELECT ("
    + _NEXT_USER.replace("{x}", "{p}")
    + ") UNION ALL SELECT ("
    + _NEXT_USER.replace("{x}", "u.v")
    + ") FROM u WHERE u.v IS NOT NULL) SELECT v FROM u WHERE v IS NOT NULL"
)
NEXT_EXPIRY_SQL = "SELECT MIN(expires_at) FROM records WHERE namespace = {p} AND expires_at > {p}"
MAX_GENERATION_SQL = (
    "SELECT COALESCE(MAX(generation), 0) + COALESCE((SELECT generation FROM "
    "namespace_generations WHERE namespace = ''), 0) FROM namespace_generations"
)


# The columns both stores select for a record, in this order (``r`` the records table), as
# ``{meta}``: SQLite's ``metadata`` text, PostgreSQL's ``metadata_raw`` (the JSON as given).
RECORD_SELECT = (
    "r.rid, r.id, r.namespace, r.user_id, r.agent_id, r.thread_id, r.type, r.text, "
    "r.content_hash, r.{meta}, r.tags, r.source, r.importance, r.occurred_at, r.created_at, "
    "r.updated_at, r.valid_from, r.valid_to, r.expires_at, r.version, r.event_id"
)
NCOLS = 21
ID_COL, VERSION_COL = 1, 19  # where a record's id and version sit in RECORD_SELECT


def row_to_record(row: Sequence[Any], offset: int = 0) -> MemoryRecord:
    """Build a MemoryRecord from a row of :data:`RECORD_SELECT` starting at ``offset``.

    Metadata arrives as JSON text; tags as JSON text (SQLite) or already decoded from
    ``jsonb`` (PostgreSQL). Empty ones skip the parser (most records have neither).
    Every search builds its page's records here, so the work per row is kept small: the
    JSON is decoded without ``json.loads``'s wrapper layers (:func:`_json`); an update
    time equal to the creation time shares its datetime; the record is built positionally
    (:data:`_FIELD_ORDER` pins the order it relies on).
    """
    (
        _,
        rid,
        ns,
        user,
        agent,
        thread,
        typ,
        text,
        chash,
        meta,
        tags,
        source,
        imp,
        occ,
        cre,
        upd,
        vf,
        vt,
        exp,
        ver,
        ev,
    ) = row[offset : offset + NCOLS]
    created = from_us(cre)
    return MemoryRecord(
        rid,
        ns,
        text,
        typ,
        user or None,
        agent or None,
        thread or None,
        {} if meta == "{}" else _json(meta),
        tags if isinstance(tags, list) else [] if tags == "[]" else _json(tags),
        source or None,
        imp,
        from_us(occ),
        created,
        created if upd == cre else from_us(upd),
        from_us(vf),
        from_us(vt),
        from_us(exp),
        ver,
        chash,
        ev,
    )


# The field order row_to_record passes positionally (a test compares it with the model).
_FIELD_ORDER = (
    "id",
    "namespace",
    "text",
    "type",
    "user_id",
    "agent_id",
    "thread_id",
    "metadata",
    "tags",
    "source",
    "importance",
    "occurred_at",
    "created_at",
    "updated_at",
    "valid_from",
    "valid_to",
    "expires_at",
    "version",
    "content_hash",
    "event_id",
)
# Decodes one JSON document from the start of a string, returning (value, end).
_decode = json.JSONDecoder().raw_decode


def _json(text: str) -> Any:
    """``json.loads(text)``, minus its wrapper layers for text that is one JSON document
    from start to end (the store's own); anything else (surrounding whitespace, an error)
    goes through ``json.loads``, which accepts and rejects exactly as before."""
    try:
        value, end = _decode(text)
    except ValueError:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def inserted_record(ns: str, it: PreparedRecord, now: datetime) -> MemoryRecord:
    """The MemoryRecord of a freshly inserted prepared row (version 1); both stores use it."""
    return MemoryRecord(
        id=it.id,
        namespace=ns,
        text=it.text,
        type=it.type,
        user_id=it.user_id or None,
        agent_id=it.agent_id or None,
        thread_id=it.thread_id or None,
        metadata=json.loads(it.metadata_json) if it.metadata_json != "{}" else {},
        tags=json.loads(it.tags_json) if it.tags_json != "[]" else [],
        source=it.source or None,
        importance=it.importance,
        occurred_at=from_us(it.occurred_at),
        created_at=now,
        updated_at=now,
        valid_from=from_us(it.valid_from),
        valid_to=from_us(it.valid_to),
        expires_at=from_us(it.expires_at),
        version=1,
        content_hash=it.content_hash,
        event_id=it.event_id,
    )


def check_quota(namespace: str, limit: int, before: int, results: list[AddResult]) -> None:
    """Raise when the records a write added take the namespace past its quota.

    Called inside the write's transaction after its inserts (so duplicates, which add
    nothing, never count); raising rolls the whole write back.

    Raises:
        QuotaExceededError: ``before`` plus the written records exceed ``limit`` (> 0).
    """
    adding = sum(1 for r in results if r.outcome == "written")
    if limit and before + adding > limit:
        raise QuotaExceededError(
            f"namespace {namespace!r} holds {before} records; adding {adding} would pass its "
            f"quota namespace_max_records={limit}; nothing was written",
            namespace=namespace,
            limit=limit,
            records=before,
            adding=adding,
        )


def existing_id_outcome(existing: MemoryRecord, it: PreparedRecord, index: int) -> AddResult:
    """The outcome of an add whose caller-given id is already stored (both stores).

    The same text makes the add idempotent (``unchanged``, the stored record): retrying an
    add after an unknown commit outcome is safe. Other text under that id is a conflict.

    Raises:
        ConflictError: the id exists with a different text.
    """
    if existing.content_hash == it.content_hash:
        return AddResult(index, "unchanged", existing)
    raise ConflictError(f"record {it.id!r} already exists with a different text", id=it.id)


_RECORD_FIELDS = tuple(MemoryRecord.__dataclass_fields__)


def record_image(record: MemoryRecord) -> str:
    """The record as history JSON: the same output as ``to_dict`` without its deep copy."""
    out: dict[str, Any] = {}
    for name in _RECORD_FIELDS:
        value = getattr(record, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return json.dumps(out, ensure_ascii=False)


def change_row(
    namespace: str,
    before: MemoryRecord,
    after: MemoryRecord | None,
    at: int,
    op: str | None = None,
) -> tuple[Any, ...]:
    """The history row of an update (``after`` given) or a delete (``after`` None) in the
    column order of ``transfer_rows.HISTORY_COLUMNS``; a delete's version is the one the
    record would have had next. ``op`` names another kind of change (``merge``...)."""
    return (
        namespace,
        before.id,
        before.user_id or "",
        before.thread_id or "",
        op or ("update" if after else "delete"),
        after.version if after else before.version + 1,
        record_image(before),
        record_image(after) if after else None,
        at,
    )


# A record's history, oldest first (``{p}``: the driver's placeholder); rows for
# :func:`history_entry`.
HISTORY_SQL = (
    "SELECT seq, record_id, namespace, op, version, before, after, at FROM history "
    "WHERE namespace = {p} AND record_id = {p} ORDER BY seq"
)


def history_entry(row: Sequence[Any]) -> HistoryEntry:
    """One row of :data:`HISTORY_SQL` as a HistoryEntry (images parsed)."""
    seq, record_id, namespace, op, version, before, after, at = row
    return HistoryEntry(
        seq=seq,
        record_id=record_id,
        namespace=namespace,
        op=op,
        version=version,
        before=json.loads(before) if before else None,
        after=json.loads(after) if after else None,
        at=from_us_req(at),
    )


def check_slot_version(thread_id: str, current: int, expected: int | None) -> None:
    """Raise ConflictError when a compare-and-set of slots expected another version."""
    if expected is not None and expected != current:
        raise ConflictError(
            f"slots of thread {thread_id!r} are at version {current}, not the expected {expected}",
            thread_id=thread_id,
            version=current,
            expected_version=expected,
        )


def write_slot_values(
    execute: Callable[[str, tuple[Any, ...]], Any],
    ph: str,
    namespace: str,
    thread_id: str,
    values: dict[str, Any],
) -> None:
    """Write a thread's slot changes in the open transaction: a value is upserted, None
    removes the slot (``ph``: the driver's placeholder)."""
    for name, value in values.items():
        if value is None:
            execute(
                f"DELETE FROM slots WHERE namespace = {ph} AND thread_id = {ph} AND name = {ph}",
                (namespace, thread_id, name),
            )
        else:
            execute(
                f"INSERT INTO slots(namespace, thread_id, name, value) "
                f"VALUES ({ph},{ph},{ph},{ph}) "
                "ON CONFLICT (namespace, thread_id, name) DO UPDATE SET value = excluded.value",
                (namespace, thread_id, name, json.dumps(value, ensure_ascii=False)),
            )


def checked_for_update(
    row_record: MemoryRecord | None, namespace: str, record_id: str, expected_version: int | None
) -> MemoryRecord:
    """The record an update starts from, after the checks both stores make.

    Raises:
        NotFoundError: no such record in the namespace.
        ConflictError: ``expected_version`` is given and the record is at another one.
    """
    if row_record is None:
        raise NotFoundError(
            f"record {record_id!r} not found in namespace {namespace!r}", id=record_id
        )
    if expected_version is not None and row_record.version != expected_version:
        raise ConflictError(
            f"record {record_id!r} is at version {row_record.version}, "
            f"not the expected {expected_version}",
            id=record_id,
            version=row_record.version,
            expected_version=expected_version,
        )
    return row_record


UPDATABLE_COLUMNS = (
    "text",
    "content_hash",
    "type",
    "importance",
    "valid_from",
    "valid_to",
    "expires_at",
    "occurred_at",
)


def scalar_set_clauses(changes: RecordChanges, ph: str) -> tuple[list[str], list[Any]]:
    """The ``SET`` clauses (with the driver's placeholder ``ph``) of an update's plain
    columns: a given value is set, a cleared column becomes NULL."""
    sets: list[str] = []
    params: list[Any] = []
    for col in UPDATABLE_COLUMNS:
        value = getattr(changes, col)
        if value is not None:
            sets.append(f"{col} = {ph}")
            params.append(value)
        elif col in changes.clear:
            sets.append(f"{col} = NULL")
    return sets, params


# The record a deduplicated add met: the dedup index's key (``{p}``: the driver's placeholder).
DEDUP_LOOKUP_SQL = (
    "SELECT {cols} FROM records r WHERE namespace = {p} AND user_id = {p} AND "
    "agent_id = {p} AND thread_id = {p} AND type = {p} AND content_hash = {p}"
)


def dedup_key(ns: str, it: PreparedRecord) -> tuple[str, ...]:
    """The arguments of :data:`DEDUP_LOOKUP_SQL` for one prepared record."""
    return (ns, it.user_id, it.agent_id, it.thread_id, it.type, it.content_hash)


def record_params(ns: str, it: PreparedRecord, now: int) -> tuple[Any, ...]:
    """A new record's column values in the stores' insert order (created = updated = now)."""
    return (
        it.id,
        ns,
        it.user_id,
        it.agent_id,
        it.thread_id,
        it.type,
        it.text,
        it.content_hash,
        it.metadata_json,
        it.tags_json,
        it.source,
        it.importance,
        it.occurred_at,
        now,
        now,
        it.valid_from,
        it.valid_to,
        it.expires_at,
        it.event_id,
    )


CHECKPOINT_TABLES = ("thread_checkpoints", "thread_checkpoint_blobs", "thread_checkpoint_writes")


def forget_checkpoints(c: Any, p: str, namespace: str, thread_id: str | None) -> int:
    """Delete a thread's (or, without one, the namespace's) agent checkpoints, blobs and
    writes on ``c`` inside the caller's ``forget`` transaction; return the checkpoints.

    ``p`` is the dialect's placeholder (``?`` or ``%s``).
    """
    cond = f"namespace = {p}" + (f" AND thread_id = {p}" if thread_id is not None else "")
    args = (namespace, thread_id) if thread_id is not None else (namespace,)
    counts = [c.execute(f"DELETE FROM {t} WHERE {cond}", args).rowcount for t in CHECKPOINT_TABLES]
    return int(counts[0])
