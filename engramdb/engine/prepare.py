"""Turning a caller's records and messages into the rows a store writes.

Everything here is checked before any write: a bad item raises a ``ValidationError`` that
names its field, and nothing reaches the store. The only outside call is the embedder (in
:func:`chunk_and_embed`), whose output the encoder checks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engramdb.config import Settings
from engramdb.engine import validation as v
from engramdb.engine.chunking import chunk_text
from engramdb.engine.encoder import Encoder
from engramdb.engine.gc_pause import gc_paused
from engramdb.engine.keyword import index_text
from engramdb.errors import ValidationError
from engramdb.ids import new_id
from engramdb.models import WRITABLE_RECORD_FIELDS
from engramdb.stores.prepared import PreparedChunk, PreparedEvent, PreparedRecord
from engramdb.timeutil import now_us

RECORD_FIELDS = frozenset(WRITABLE_RECORD_FIELDS)
MESSAGE_FIELDS = {"role", "content", "occurred_at", "metadata", "name"}


def prepare_record(
    item: dict[str, Any], defaults: dict[str, Any], settings: Settings
) -> PreparedRecord:
    """Check one record (its fields over ``defaults``) and return it ready to chunk.

    Raises:
        ValidationError: an unknown field, or a field's value is invalid.
    """
    if not RECORD_FIELDS.issuperset(item):
        unknown = sorted(set(item) - RECORD_FIELDS)
        raise ValidationError(f"unknown record field(s) {unknown}", fields=unknown)
    f = {**defaults, **{k: val for k, val in item.items() if val is not None}}
    text = v.check_text(f.get("text"), settings)
    caller_id = f.get("id") is not None
    rid = v.check_id(f["id"]) if caller_id else new_id()
    metadata_json = v.metadata_json(f.get("metadata"), settings)
    tags = v.check_tags(f.get("tags"), settings)
    occurred = v.check_time(f.get("occurred_at"), "occurred_at") or now_us()
    vf = v.check_time(f.get("valid_from"), "valid_from")
    vt = v.check_time(f.get("valid_to"), "valid_to")
    if vf is not None and vt is not None and vt <= vf:
        raise ValidationError("valid_to must be after valid_from", field="valid_to")
    return PreparedRecord(
        id=rid,
        caller_id=caller_id,
        text=text,
        content_hash=v.content_hash(text),
        type=v.check_type(f.get("type") or "semantic"),
        user_id=v.check_scope(f.get("user_id"), "user_id") or "",
        agent_id=v.check_scope(f.get("agent_id"), "agent_id") or "",
        thread_id=v.check_scope(f.get("thread_id"), "thread_id") or "",
        metadata_json=metadata_json,
        tags_json=json.dumps(tags, ensure_ascii=False) if tags else "[]",
        source=v.check_source(f.get("source")) or "",
        importance=v.check_importance(f.get("importance")),
        occurred_at=occurred,
        valid_from=vf,
        valid_to=vt,
        expires_at=v.check_time(f.get("expires_at"), "expires_at"),
    )


def prepare_messages(
    thread_id: str,
    user: str,
    agent_id: str | None,
    messages: Sequence[dict[str, Any]],
    remember: bool,
    settings: Settings,
) -> tuple[list[PreparedEvent], list[PreparedRecord]]:
    """Check conversation turns; return their events and (with ``remember``) their records.

    A turn without ``occurred_at`` gets the call's time plus its position in microseconds,
    so the turns of one call keep their order. Each record names its event.

    Raises:
        ValidationError: not a non-empty list, too many turns, or a malformed turn.
    """
    if not isinstance(messages, list | tuple) or not messages:
        raise ValidationError("messages must be a non-empty list", field="messages")
    if len(messages) > settings.max_batch:
        raise ValidationError(
            f"more than max_batch={settings.max_batch} messages", field="messages"
        )
    events: list[PreparedEvent] = []
    records: list[PreparedRecord] = []
    base = now_us()
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValidationError(f"message {i} must be an object", field="messages", index=i)
        extra = set(m) - MESSAGE_FIELDS
        if extra:
            raise ValidationError(f"message {i}: unknown field(s) {sorted(extra)}", index=i)
        role = m.get("role")
        if not isinstance(role, str) or not v.SCOPE_PATTERN.fullmatch(role):
            raise ValidationError(f"message {i}: role must be a non-empty string", index=i)
        text = v.check_text(m.get("content"), settings, field=f"messages[{i}].content")
        ts = v.check_time(m.get("occurred_at"), "occurred_at") or base + i
        meta = v.check_metadata(m.get("metadata"), settings)
        name = m.get("name")
        payload: dict[str, Any] = {"role": role, "content": text}
        if name is not None:
            payload["name"] = v.check_scope(name, "name")
        if meta:
            payload["metadata"] = meta
        ev_id = new_id()
        events.append(
            PreparedEvent(
                ev_id,
                thread_id,
                user,
                role,
                "message",
                json.dumps(payload, ensure_ascii=False),
                ts,
            )
        )
        if remember:
            rec = prepare_record(
                {
                    "text": text,
                    "type": "message",
                    "thread_id": thread_id,
                    "user_id": user or None,
                    "agent_id": agent_id,
                    "metadata": {**meta, "role": role, **({"name": name} if name else {})},
                    "occurred_at": m.get("occurred_at"),
                },
                {},
                settings,
            )
            rec.occurred_at = ts
            rec.event_id = ev_id
            records.append(rec)
    return events, records


def chunk_and_embed(records: list[PreparedRecord], encoder: Encoder) -> None:
    """Split each record into chunks that fit the embedder and attach their vectors.

    Raises:
        EmbeddingError: the embedder failed; no record is changed.
    """
    spans: list[tuple[PreparedRecord, int, int]] = []
    counter = encoder.count_tokens if encoder.max_chunk_tokens else None
    for rec in records:
        for start, end in chunk_text(rec.text, encoder.max_chunk_tokens, counter or len):
            spans.append((rec, start, end))
    vectors = encoder.embed([r.text[s:e] for r, s, e in spans])
    with gc_paused():
        for (rec, s, e), vec in zip(spans, vectors, strict=True):
            rec.chunks.append(PreparedChunk(s, e, vec, index_text(rec.text[s:e], rec.occurred_at)))
