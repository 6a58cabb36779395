"""Answer-kind ranking: candidates holding the kind of answer a question asks for rank higher.

"Where did she move?" is answered by a text naming a place, "when did he start?" by one
naming a time (:mod:`engramdb.extract.answer_types`). The question's kinds come from word
rules, so a search parses nothing; the candidates' kinds were recorded by extraction. Each
fused candidate holding one of the asked kinds gains ``answer_kind_weight``, which is on the
scale of convex fusion's scores (each side scaled to [0, 1]). A candidate whose text
is itself a question loses ``question_penalty`` on the same scale, whatever the question: it
shares the words of a later question about its subject, but the answer is in what follows.

Only what is already extracted counts: a search never waits for the extraction queue, and
a record not extracted yet simply gains nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from engramdb.config import Settings
from engramdb.engine.fusion import within_reach
from engramdb.extract.answer_types import QUESTION, kinds_asked
from engramdb.stores.base import EntityStore, Store


class AnswerKindRanker:
    """Boosts the fused scores of candidates that hold the kind of answer asked for, and
    lowers those of candidates that only ask."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.entities: EntityStore | None = store if isinstance(store, EntityStore) else None

    @property
    def enabled(self) -> bool:
        """Whether ranking uses the records' flags: weighted, and the store extracts them."""
        return (
            (self.settings.answer_kind_weight > 0 or self.settings.question_penalty > 0)
            and self.settings.extract != "off"
            and self.entities is not None
        )

    def max_boost(self, query: str) -> float:
        """The most :meth:`boost` can move one candidate's score against another's for this
        query: the weight one may gain plus the penalty another may lose."""
        if not self.enabled:
            return 0.0
        return self._gain(kinds_asked(query)) + self.settings.question_penalty

    def _gain(self, asked: int) -> float:
        """What a candidate holding one of the ``asked`` kinds gains (0 when none asked)."""
        return self.settings.answer_kind_weight if asked else 0.0

    def boost(
        self,
        namespace: str,
        query: str,
        fused: dict[str, float],
        need: int,
        known: Mapping[str, int] | None = None,
    ) -> dict[str, float]:
        """Return ``fused`` with the weight added to each candidate holding an asked kind
        and the penalty taken from each candidate that is a question.

        Only candidates whose order against the first ``need`` these can change are read
        (:func:`~engramdb.engine.fusion.within_reach`), and of those only the ones whose
        kinds are not ``known`` already (read by the store with the candidates).
        """
        if not fused or not self.enabled:
            return fused
        asked = kinds_asked(query)
        gain = self._gain(asked)
        penalty = self.settings.question_penalty
        if not gain and not penalty:
            return fused
        assert self.entities is not None
        reach = within_reach(fused, need, gain + penalty)
        known = known or {}
        held = {rid: known[rid] for rid in reach if rid in known}
        unread = [rid for rid in reach if rid not in known]
        if unread:
            held.update(self.entities.answer_kinds(namespace, unread))
        out = dict(fused)
        for rid, kinds in held.items():
            if rid not in out:
                continue
            if kinds & asked:
                out[rid] += gain
            if kinds & QUESTION:
                out[rid] -= penalty
        return out
