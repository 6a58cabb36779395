"""Facts over time: ``add_messages`` turns into ``fact`` records that carry when they held.

With ``Settings.facts`` on, the messages an ``add_messages`` call wrote go through a
:class:`~engramdb.extract.facts.FactExtractor`; each fact becomes a record of type ``fact``
in the message's scope (user, thread), its text the statement ("user lives in Lisbon"),
``valid_from`` when it began, and in its metadata the subject, relation, object and its
source (the message record and event ids).

A fact of a single-valued relation (``works_for``, ``lives_in``) is contradicted by a fact
of the same user, subject and relation with another object: the older one is not deleted
but closed (its ``valid_to`` set to the newer one's ``valid_from``), so
``search(valid_at=...)`` answers "where did she live in 2022?". A fact told after a newer
one (out of order) is closed by it at once. Restating a fact that holds adds nothing.

Facts are written after the messages (a second transaction): the messages are the record
of what was said; a failure of the extractor is logged and never fails ``add_messages``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from engramdb.config import Settings
from engramdb.engine.records import Records
from engramdb.errors import ValidationError
from engramdb.extract.facts import (
    SINGLE_VALUED,
    Fact,
    FactExtractor,
    FactInput,
    PatternFactExtractor,
)
from engramdb.extract.names import normalise
from engramdb.models import AddResult, MemoryRecord
from engramdb.query.filters import parse
from engramdb.stores.prepared import PreparedRecord
from engramdb.timeutil import from_us_req, to_us

if TYPE_CHECKING:
    from engramdb.engine.write import Writer

log = logging.getLogger("engramdb.facts")
MAX_OPEN = 100  # facts of one subject and relation looked at when a new one arrives
#: The names ``Settings.facts`` (and ``Memory(facts=...)``) accept.
FACT_EXTRACTOR_NAMES = ("off", "patterns", "openai")


def build_extractor(settings: Settings, name: str | None = None) -> FactExtractor | None:
    """The extractor ``name`` (default ``settings.facts``) names (None: facts are off)."""
    name = settings.facts if name is None else name
    if name == "patterns":
        return PatternFactExtractor(settings.extract_batch)
    if name == "openai":
        from engramdb.extract.fact_llm import OpenAIFactExtractor

        return OpenAIFactExtractor.from_settings(settings)
    return None


def check_spec(spec: object) -> None:
    """Check a ``Memory(facts=...)`` value without building anything.

    Raises:
        ValidationError: not None, not one of :data:`FACT_EXTRACTOR_NAMES` and not an object
            with a callable ``extract`` (the FactExtractor protocol).
    """
    names = ", ".join(map(repr, FACT_EXTRACTOR_NAMES))
    if spec is None:
        return
    if isinstance(spec, str):
        if spec not in FACT_EXTRACTOR_NAMES:
            raise ValidationError(
                f"facts must be one of {names} or a FactExtractor object, got {spec!r}",
                field="facts",
            )
        return
    if not isinstance(spec, FactExtractor) or not callable(spec.extract):
        raise ValidationError(
            f"facts must be one of {names} or an object with a method "
            "extract(messages: list[FactInput]) -> list[list[Fact]] (the FactExtractor "
            f"protocol); got a {type(spec).__name__} without one",
            field="facts",
        )


def resolve_extractor(spec: str | FactExtractor | None, settings: Settings) -> FactExtractor | None:
    """Turn ``Memory(facts=...)`` into the extractor to use (None: facts are off).

    ``None`` means ``settings.facts``; a name is one of :data:`FACT_EXTRACTOR_NAMES`; any
    other value must implement :class:`~engramdb.extract.facts.FactExtractor` (a callable
    ``extract(messages)``), the way ``embedder=`` takes a name or an Embedder object.

    Raises:
        ValidationError: see :func:`check_spec`.
    """
    check_spec(spec)
    if spec is None or isinstance(spec, str):
        return build_extractor(settings, spec)
    return spec


def check_output(found: object, n: int) -> list[list[Fact]]:
    """An extractor's answer, checked: a list of ``n`` lists of :class:`Fact`.

    Raises:
        TypeError: any other shape (a custom extractor's bug; the caller logs it).
    """
    if not isinstance(found, list) or len(found) != n:
        raise TypeError(f"the fact extractor must return a list of {n} lists, got {found!r:.200}")
    for i, facts in enumerate(found):
        if not isinstance(facts, list) or not all(isinstance(f, Fact) for f in facts):
            raise TypeError(f"the fact extractor's item {i} is not a list of Fact: {facts!r:.200}")
    return found


class FactRecorder:
    """Extracts facts from written messages, stores them and closes what they contradict."""

    def __init__(
        self,
        settings: Settings,
        records: Records,
        writer: Writer,
        extractor: str | FactExtractor | None = None,
    ) -> None:
        self.settings = settings
        self.records = records
        self.writer = writer
        self.extractor: FactExtractor | None = resolve_extractor(extractor, settings)

    def record(
        self, namespace: str, messages: list[PreparedRecord], results: list[AddResult]
    ) -> list[MemoryRecord]:
        """Extract and store the facts of the messages just written; return the new facts."""
        if self.extractor is None:
            return []
        written = [
            (p, r.record)
            for p, r in zip(messages, results, strict=True)
            if r.outcome == "written" and r.record is not None
        ]
        if not written:
            return []
        inputs = [
            FactInput(p.text, str(json_role(p.metadata_json)), p.occurred_at) for p, _ in written
        ]
        try:
            found = check_output(self.extractor.extract(inputs), len(inputs))
        except Exception:
            log.exception("fact extraction failed; the messages are stored without facts")
            return []
        out: list[MemoryRecord] = []
        for (p, rec), facts in zip(written, found, strict=True):
            for fact in facts:
                stored = self._store(namespace, p, rec, fact)
                if stored is not None:
                    out.append(stored)
        if out:  # fact records are records: their entities are extracted like any add's
            self.writer.on_written(namespace)
        return out

    def _store(
        self, namespace: str, msg: PreparedRecord, source: MemoryRecord, fact: Fact
    ) -> MemoryRecord | None:
        subject, obj = normalise(fact.subject), normalise(fact.object)
        if not subject or not obj:
            return None
        same = self._facts_of(namespace, source.user_id, subject, fact.relation)
        if any(normalise(str(f.metadata.get("object", ""))) == obj and _holds(f) for f in same):
            return None  # restated: it already holds
        valid_to: int | None = None
        if fact.relation in SINGLE_VALUED:
            for old in same:
                if normalise(str(old.metadata.get("object", ""))) == obj:
                    continue
                start = _us(old.valid_from)
                if start is not None and start > fact.valid_from:
                    # Told late: a newer value already replaced this one.
                    valid_to = start if valid_to is None else min(valid_to, start)
                elif old.valid_to is None or (_us(old.valid_to) or 0) > fact.valid_from:
                    self.writer.update(
                        namespace, old.id, {"valid_to": from_us_req(fact.valid_from)}, None
                    )
        item: dict[str, Any] = {
            "text": fact.text(),
            "type": "fact",
            "user_id": source.user_id,
            "thread_id": source.thread_id,
            "occurred_at": from_us_req(msg.occurred_at),
            "valid_from": from_us_req(fact.valid_from),
            "metadata": {
                "subject": fact.subject,
                "subject_key": subject,
                "relation": fact.relation,
                "object": fact.object,
                "evidence": fact.evidence[:500],
                "confidence": fact.confidence,
                "source_record": source.id,
                "source_event": msg.event_id,
            },
        }
        if valid_to is not None:
            item["valid_to"] = from_us_req(valid_to)
        result: AddResult = self.writer.add(namespace, [item], {}, "abort")[0]
        return result.record

    def _facts_of(
        self, namespace: str, user_id: str | None, subject: str, relation: str
    ) -> list[MemoryRecord]:
        where: dict[str, Any] = {
            "type": "fact",
            "metadata.subject_key": subject,
            "metadata.relation": relation,
        }
        if user_id:
            where["user_id"] = user_id
        page = self.records.list_page(namespace, parse(where), MAX_OPEN, None, True)
        return list(page.records)


def json_role(metadata_json: str | None) -> str:
    """The ``role`` of a prepared message's metadata."""
    meta = json.loads(metadata_json or "{}")
    return str(meta.get("role", ""))


def _us(value: Any) -> int | None:
    return None if value is None else to_us(value, "valid_from")


def _holds(fact: MemoryRecord) -> bool:
    return fact.valid_to is None
