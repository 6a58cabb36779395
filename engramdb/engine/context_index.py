"""Keyword text with thread context: a message is found by the words of its neighbours.

A message's keyword index text carries up to ``context_window`` turns on each side of it
(see :func:`engramdb.engine.keyword.index_text`). New messages get their context before
they are written; their stored neighbours, whose window now holds a new, changed or deleted
turn, are re-indexed after it in a separate transaction: the keyword index is derived, and
``doctor`` repairs an index text that a crash between the two left stale.
"""

from __future__ import annotations

from engramdb.config import Settings
from engramdb.engine.keyword import index_text
from engramdb.stores.base import Store
from engramdb.stores.prepared import PreparedRecord, ThreadTurn


def index_with_context(
    records: list[PreparedRecord], stored: list[ThreadTurn], window: int
) -> None:
    """Give new messages their neighbouring turns (stored and new) in their keyword text."""
    seq: list[tuple[tuple[int, int, int], str, PreparedRecord | None]] = [
        ((t.occurred_at, 0, i), t.text, None) for i, t in enumerate(stored)
    ]
    seq += [((r.occurred_at, 1, i), r.text, r) for i, r in enumerate(records)]
    seq.sort(key=lambda item: item[0])
    for pos, (_, _, rec) in enumerate(seq):
        if rec is None:
            continue
        context = [x[1] for x in seq[max(0, pos - window) : pos] + seq[pos + 1 : pos + 1 + window]]
        for ch in rec.chunks:
            ch.index_text = index_text(rec.text[ch.start : ch.end], rec.occurred_at, context)


class ContextIndex:
    """Writes thread context into the keyword text of messages, before and after a write."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def prepare(
        self, namespace: str, thread_id: str, records: list[PreparedRecord]
    ) -> tuple[int, int] | None:
        """Index new messages with their context; return the time range they span, if any.

        The range is what :meth:`reindex` needs after the write; None when there is nothing
        to re-index (no records, or context switched off).
        """
        window = self.settings.context_window
        if not records or not window:
            return None
        start = min(r.occurred_at for r in records)
        end = max(r.occurred_at for r in records)
        stored = self.store.thread_turns(namespace, thread_id, start, end, window)
        index_with_context(records, stored, window)
        return start, end

    def reindex(self, namespace: str, thread_id: str, start: int, end: int, skip: set[str]) -> None:
        """Re-index the messages of a thread whose context window reaches ``[start, end]``.

        Called after messages in that time range were added, edited or deleted, so that
        their neighbours' keyword text names the current turns. ``skip``: records already
        indexed with their context in the same write.
        """
        window = self.settings.context_window
        if window == 0 or not thread_id:
            return
        turns = self.store.thread_turns(namespace, thread_id, start, end, 2 * window)
        inside = [i for i, t in enumerate(turns) if start <= t.occurred_at <= end]
        if inside:
            lo, hi = inside[0] - window, inside[-1] + window
        else:  # the range is now empty (a delete): re-index the turns on either side of it
            after = next((i for i, t in enumerate(turns) if t.occurred_at > end), len(turns))
            lo, hi = after - window, after + window - 1
        texts: list[tuple[int, str]] = []
        for i in range(max(0, lo), min(len(turns), hi + 1)):
            turn = turns[i]
            if turn.record_id in skip:
                continue
            context = [
                t.text for t in turns[max(0, i - window) : i] + turns[i + 1 : i + 1 + window]
            ]
            for cid, a, b in turn.chunks:
                texts.append((cid, index_text(turn.text[a:b], turn.occurred_at, context)))
        self.store.set_index_texts(namespace, texts)
