"""Answer-kind ranking: candidates holding the kind of answer a question asks for rank higher.

"Where did she move?" is answered by a text naming a place, "when did he start?" by one
naming a time (:mod:`engramdb.extract.answer_types`). The question's kinds come from word
rules, so a search parses nothing; the candidates' kinds were recorded by extraction. Each
fused candidate holding one of the asked kinds gains ``answer_kind_weight``, which is on the
scale of convex fusion's scores (each side min-max scaled to [0, 1]).

Only what is already extracted counts: a search never waits for the extraction queue, and
a record not extracted yet simply gains nothing.
"""

from __future__ import annotations

from engramdb.config import Settings
from engramdb.engine.fusion import within_reach
from engramdb.extract.answer_types import kinds_asked
from engramdb.stores.base import EntityStore, Store


class AnswerKindRanker:
    """Boosts the fused scores of candidates that hold the kind of answer asked for."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.entities: EntityStore | None = store if isinstance(store, EntityStore) else None

    @property
    def enabled(self) -> bool:
        """Whether ranking uses answer kinds: weighted, and the store extracts them."""
        return (
            self.settings.answer_kind_weight > 0
            and self.settings.extract != "off"
            and self.entities is not None
        )

    def max_boost(self, query: str) -> float:
        """The most :meth:`boost` can add to a candidate's score for this query."""
        if not self.enabled or not kinds_asked(query):
            return 0.0
        return self.settings.answer_kind_weight

    def boost(
        self, namespace: str, query: str, fused: dict[str, float], need: int
    ) -> dict[str, float]:
        """Return ``fused`` with the weight added to each candidate holding an asked kind.

        Only candidates that the weight could lift into the first ``need`` are read
        (:func:`~engramdb.engine.fusion.within_reach`).
        """
        if not fused or not self.enabled:
            return fused
        asked = kinds_asked(query)
        if not asked:
            return fused
        assert self.entities is not None
        weight = self.settings.answer_kind_weight
        reach = within_reach(fused, need, weight)
        held = self.entities.answer_kinds(namespace, reach)
        out = dict(fused)
        for rid, kinds in held.items():
            if rid in out and kinds & asked:
                out[rid] += weight
        return out
