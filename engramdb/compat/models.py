"""The seeds' own models: what the teams' MemoryManager v2 code builds and reads back.

Separate from :class:`engramdb.MemoryRecord` on purpose: the teams set a few fields
(``user_id, text, type, source, tags``; ``event_id, user_id, thread_id, source, action,
payload``) and read ``.text`` and ``.score`` back; the adapters map them onto the library.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryRecord(BaseModel):
    """A memory as the MemoryManager v2 code writes it (``awrite([MemoryRecord(...)])``)."""

    model_config = ConfigDict(extra="forbid")

    text: str
    user_id: str | None = None
    type: str = "semantic"
    source: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    thread_id: str | None = None
    agent_id: str | None = None
    importance: float | None = None
    id: str | None = None
    created_at: datetime | None = None


class RetrievedMemory(MemoryRecord):
    """One result of ``aretrieve``: the record and its relevance (higher is closer)."""

    score: float = 0.0


class WriteResult(BaseModel):
    """One result per record of ``awrite``: its id, or why it was refused."""

    index: int
    id: str | None
    ok: bool
    status: str
    error: str | None = None


class AuditEvent(BaseModel):
    """An audit event as the MemoryManager v2 code logs it (``alog_audit(AuditEvent(...))``)."""

    model_config = ConfigDict(extra="forbid")

    thread_id: str
    action: str
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    user_id: str | None = None
    source: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime = Field(default_factory=_now)


class ThreadSnapshot(BaseModel):
    """``asnapshot_thread``: the thread's events (as audit events), its slots and a readable
    account; ``str(snapshot)`` is the account."""

    thread_id: str
    events: list[AuditEvent]
    slots: dict[str, Any]
    slots_version: int
    text: str

    def __str__(self) -> str:
        return self.text
