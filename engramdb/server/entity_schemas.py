"""Wire schemas of the entity routes (and of the ``entities`` field of a search hit)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    """Base of the entity response bodies: read from library objects by attribute."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)


class MentionOut(_Out):
    """Where an entity is named: record, span of its text, sentence, confidence."""

    record_id: str
    text: str
    start: int
    end: int
    sentence: str
    confidence: float


class EntityOut(_Out):
    """A canonical entity: its name as first written, type, aliases and mention count."""

    id: int
    namespace: str
    user_id: str | None
    name: str
    type: str
    aliases: list[str]
    mention_count: int
    mentions: list[MentionOut] | None = None


class RelationOut(_Out):
    """A relation between two entities, with the records (and sentences) stating it."""

    id: int
    source_id: int
    target_id: int
    type: str
    confidence: float
    record_ids: list[str]
    evidence: list[str]


class EntityGraphOut(_Out):
    """Entities and the relations between them."""

    entities: list[EntityOut]
    relations: list[RelationOut]


class EntitiesOut(_Out):
    """A namespace's entities, most mentioned first."""

    entities: list[EntityOut]


class EntityLinkOut(_Out):
    """One entry of an entity's alias log (a join or a separation)."""

    seq: int
    entity_id: int
    name: str
    op: str
    target_id: int | None
    target_name: str | None
    reason: str
    at: int


class EntityHistoryOut(_Out):
    """An entity's alias log, oldest first."""

    entries: list[EntityLinkOut]

    @classmethod
    def of(cls, entries: list[dict[str, Any]]) -> EntityHistoryOut:
        """Build from ``Memory.entity_history`` output."""
        return cls(entries=[EntityLinkOut(**e) for e in entries])
