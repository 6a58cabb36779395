"""Thread summaries: a ``summary`` record per long thread, refreshed as the thread grows.

A thread with at least ``summarize_min_turns`` turns gets one ``summary`` record in the
same scope (user, thread). Its turns are its records but derived statements
(``stores.prepared.is_turn``, the rule thread context follows): messages written by
``add_messages`` and records written by ``add(thread_id=...)`` alike, in the order they
occurred. The summary's metadata link it to its sources: ``summary_of_thread``, ``turns``
(how many turns it covers), ``first_record`` and ``last_record`` (its first and last turns,
by occurrence), ``first_event`` and ``last_event`` (the span of the thread's event log it
summarizes; None for turns written by ``add``, which have no event) and ``summarizer``.
When the thread has another number of turns than the summary covers, the next
consolidation rewrites it (an update: its history keeps the earlier summary).

The summarizer is the extractive one (TextRank over the store's own embeddings) unless
``summarizer_url`` names an OpenAI-compatible endpoint.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from engramdb.config import Settings
from engramdb.engine import validation as v
from engramdb.engine.encoder import Encoder
from engramdb.errors import ValidationError
from engramdb.extract.summarize import ExtractiveSummarizer, HTTPSummarizer, Summarizer
from engramdb.models import AddResult, MemoryRecord, SummaryAction
from engramdb.stores.prepared import is_turn

Add = Callable[[str, list[dict[str, Any]], dict[str, Any]], list[AddResult]]
Update = Callable[[str, str, dict[str, Any], int | None], MemoryRecord]


def make_summarizer(settings: Settings, encoder: Encoder) -> Summarizer:
    """The configured summarizer: HTTP when ``summarizer_url`` is set, else extractive."""
    if settings.summarizer_url:
        key = settings.summarizer_api_key
        return HTTPSummarizer(
            settings.summarizer_url,
            settings.summarizer_model,
            key.get_secret_value() if key else None,
        )
    return ExtractiveSummarizer(lambda texts: encoder.embed(texts))


class ThreadSummaries:
    """Writes and refreshes the summary records of long threads."""

    def __init__(self, settings: Settings, encoder: Encoder, add: Add, update: Update) -> None:
        self.settings = settings
        self._encoder = encoder
        self._add = add
        self._update = update
        self._summarizer: Summarizer | None = None

    @property
    def summarizer(self) -> Summarizer:
        """The summarizer in use (made on first use)."""
        if self._summarizer is None:
            self._summarizer = make_summarizer(self.settings, self._encoder)
        return self._summarizer

    @summarizer.setter
    def summarizer(self, value: Summarizer) -> None:
        self._summarizer = value

    def summarize_text(self, text: str, max_sentences: int | None) -> str:
        """Summarize a caller's own text with the configured summarizer.

        Raises:
            ValidationError: ``text`` is blank or over ``max_text_bytes``, or
                ``max_sentences`` is not 1-50.
        """
        text = v.check_text(text, self.settings)
        k = self.settings.summarize_sentences if max_sentences is None else max_sentences
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 50:
            raise ValidationError(
                f"max_sentences must be an integer from 1 to 50, got {k!r}", field="max_sentences"
            )
        return self.summarizer.summarize([text], k)

    def refresh(
        self,
        namespace: str,
        live: Sequence[MemoryRecord],
        user_id: str | None,
        dry_run: bool,
    ) -> list[SummaryAction]:
        """Create or refresh the summary of every long thread among ``live`` records."""
        turns: dict[str, list[MemoryRecord]] = defaultdict(list)
        existing: dict[str, MemoryRecord] = {}
        for r in live:
            if not r.thread_id:
                continue
            if is_turn(r.type, r.thread_id):
                turns[r.thread_id].append(r)
            elif r.type == "summary" and r.metadata.get("summary_of_thread") == r.thread_id:
                existing[r.thread_id] = r
        out: list[SummaryAction] = []
        for thread_id in sorted(turns):
            thread = sorted(
                turns[thread_id], key=lambda r: (r.occurred_at is None, r.occurred_at, r.id)
            )
            if len(thread) < self.settings.summarize_min_turns:
                continue
            old = existing.get(thread_id)
            if old is not None and old.metadata.get("turns") == len(thread):
                continue
            text = self.summarizer.summarize([r.text for r in thread], self._sentences())
            meta = {
                "summary_of_thread": thread_id,
                "turns": len(thread),
                "first_record": thread[0].id,
                "last_record": thread[-1].id,
                "first_event": thread[0].event_id,
                "last_event": thread[-1].event_id,
                "summarizer": self.summarizer.name,
            }
            # A thread is a namespace's; its user is the first one its turns name.
            user = next((r.user_id for r in thread if r.user_id), None)
            key = (user or "", thread_id)
            action = SummaryAction(
                thread_id=thread_id,
                user_id=user,
                summary_id=None if old is None else old.id,
                turns=len(thread),
                text=text,
                status="created" if old is None else "refreshed",
            )
            if not dry_run:
                action.summary_id = self._write(namespace, key, thread, text, meta, old)
            out.append(action)
        return out

    def _sentences(self) -> int:
        return self.settings.summarize_sentences

    def _write(
        self,
        namespace: str,
        key: tuple[str, str],
        thread: list[MemoryRecord],
        text: str,
        meta: dict[str, Any],
        old: MemoryRecord | None,
    ) -> str | None:
        if old is not None:
            fields = {"text": text if text != old.text else None, "metadata": meta}
            return self._update(namespace, old.id, fields, old.version).id
        item = {
            "text": text,
            "type": "summary",
            "user_id": key[0] or None,
            "agent_id": thread[-1].agent_id,
            "thread_id": key[1],
            "metadata": meta,
            "occurred_at": thread[-1].occurred_at,
            "source": "consolidation",
        }
        results = self._add(namespace, [item], {})
        rec = results[0].record if results else None
        return None if rec is None else rec.id
