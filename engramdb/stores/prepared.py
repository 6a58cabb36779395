"""The rows the engine prepares for a store, and the candidates a store hands back.

Plain data with no I/O: the engine fills them after validation, chunking and embedding; a
store writes them in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from engramdb.models import MemoryRecord


@dataclass(slots=True)
class PreparedChunk:
    """One indexed piece of a record: its span in the text, its vector, its keyword text."""

    start: int
    end: int
    vector: np.ndarray
    index_text: str


@dataclass(slots=True)
class PreparedRecord:
    """A validated record ready to insert (times in epoch microseconds)."""

    id: str
    caller_id: bool
    text: str
    content_hash: str
    type: str
    user_id: str
    agent_id: str
    thread_id: str
    metadata_json: str
    tags_json: str
    source: str
    importance: float | None
    occurred_at: int
    valid_from: int | None
    valid_to: int | None
    expires_at: int | None
    chunks: list[PreparedChunk] = field(default_factory=list)
    event_id: str | None = None


@dataclass(slots=True)
class PreparedEvent:
    """A validated event ready to append."""

    id: str
    thread_id: str
    user_id: str
    actor: str
    action: str
    payload_json: str
    ts: int


@dataclass(slots=True)
class RecordChanges:
    """An update: only the fields that are not None change; tags change atomically in SQL."""

    text: str | None = None
    content_hash: str | None = None
    chunks: list[PreparedChunk] | None = None
    metadata_json: str | None = None
    add_tags: list[str] | None = None
    remove_tags: list[str] | None = None
    importance: float | None = None
    type: str | None = None
    valid_from: int | None = None
    valid_to: int | None = None
    expires_at: int | None = None
    occurred_at: int | None = None
    clear: frozenset[str] = frozenset()
    #: The history entry's ``op``: ``update``, or ``merge``/``unmerge`` for consolidation.
    op: str = "update"


@dataclass(slots=True)
class RecordUpdate:
    """One update of a batch (``Archive.update_records``): applied only while the record is
    at ``expected_version`` (any version when None)."""

    record_id: str
    changes: RecordChanges
    expected_version: int | None = None


@dataclass(slots=True)
class ArchiveItem:
    """A record to take out of the live set in one transaction with its history entry.

    Taken only while it is still at ``version`` (a record changed since it was planned is
    left alone). ``op`` is the history entry's (``merge``, ``archive``, ``expire``);
    ``after`` its after-image (JSON text, e.g. ``{"merged_into": id}``). With a ``reason``
    (``merged`` or ``retention``) the record's export ``image`` (JSON text) is kept in
    ``archived_records``; without one (expiry) the record is only deleted.
    """

    record_id: str
    version: int
    op: str
    reason: str | None = None
    image: str | None = None
    after: str | None = None
    merged_into: str | None = None
    merge_group: str | None = None
    survivor: str | None = None


@dataclass(slots=True)
class ArchivedRow:
    """One row of ``archived_records`` (``image``, ``survivor``: JSON text; times: epoch us)."""

    namespace: str
    id: str
    user_id: str
    thread_id: str
    reason: str
    merged_into: str | None
    merge_group: str | None
    image: str
    survivor: str | None
    archived_at: int


@dataclass(slots=True)
class ChunkHit:
    """A candidate from one retriever: chunk, record row, and the retriever's raw score.

    ``located`` is what :meth:`Store.locate` would return for the chunk (record id,
    version, span start, span end), when the retriever already read it in the same
    statement and already applied the search's filter (a store over the network saves the
    locate round trip that way); None leaves the chunk to ``locate``. ``record`` builds the
    chunk's whole record as read in that statement (asked for with ``with_records``; built
    only for the records that land on the page), sparing the engine ``get_records``.
    """

    chunk_id: int
    rid: int
    score: float
    located: tuple[str, int, int, int] | None = None
    record: Callable[[], MemoryRecord] | None = None


@dataclass(slots=True)
class WholeHit:
    """A candidate located and read whole in one statement (``Store.locate_whole``): what
    ``locate`` gives for its chunk, its record's answer kinds
    (:mod:`engramdb.extract.answer_types` flags; 0 when it holds none or is not extracted
    yet), and ``record``, which builds the record as read (called only for the page's)."""

    located: tuple[str, int, int, int]
    kinds: int
    record: Callable[[], MemoryRecord]


# Records of a thread that are not turns of the conversation but statements derived from it
# (extracted facts, summaries): they neither get nor give thread context.
NOT_TURN_TYPES = ("fact", "summary")
# The same rule as a SQL condition on ``type`` (constants only, never a caller's string).
TURN_TYPE_SQL = "type NOT IN (" + ", ".join(f"'{t}'" for t in NOT_TURN_TYPES) + ")"


def is_turn(record_type: str, thread_id: str | None) -> bool:
    """Whether a record is a turn of its thread: it has one, and is no derived statement."""
    return bool(thread_id) and record_type not in NOT_TURN_TYPES


@dataclass(slots=True)
class ThreadTurn:
    """A stored turn of a thread, as contextual keyword indexing needs it."""

    record_id: str
    text: str
    occurred_at: int
    chunks: list[tuple[int, int, int]]  # (chunk id, start, end), in order


OnError = Literal["abort", "skip"]


@dataclass(slots=True)
class PendingText:
    """A record waiting for entity extraction: its queue position and the text to read."""

    seq: int
    rid: int
    namespace: str
    record_id: str
    user_id: str
    text: str


@dataclass(slots=True)
class ScopeEntity:
    """An entity of one (namespace, user) scope, as the alias step needs it."""

    id: int
    name: str
    norm: str
    type: str
    canonical_id: int | None
    pinned: bool


# The alias step: one scope's PERSON entities in, the joins ``(entity, canonical, reason)``
# to make out. The engine passes it to the store, which runs it inside the transaction that
# writes a batch's extractions (:meth:`~engramdb.stores.base.EntityStore.write_extractions`).
AliasJoin = Callable[[list[ScopeEntity]], list[tuple[int, int, str]]]
