"""Retrieval: vector and keyword candidates, fused into one ranked, paged answer.

Read path: embed the query (unless the caller gave its vector) -> vector and BM25 candidates
-> locate their records (unless the store already did) -> fuse on record ids -> read the
records of the page only (unless they came with the candidates). A whole answer is cached
in the cache tier under :func:`~engramdb.engine.search_key.search_key`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from engramdb.cache import Cache
from engramdb.config import Settings
from engramdb.engine import validation as v
from engramdb.engine.answer_ranking import AnswerKindRanker
from engramdb.engine.cursors import decode_cursor, encode_cursor
from engramdb.engine.encoder import Encoder
from engramdb.engine.entity_ranking import EntityRanker
from engramdb.engine.fusion import convex, rrf
from engramdb.engine.keyword import match_expression
from engramdb.engine.search_key import live_cutoff, search_key
from engramdb.errors import ValidationError
from engramdb.models import MemoryRecord, ScoreParts, SearchHit, SearchPage
from engramdb.query.filters import Bool, Cmp, Node
from engramdb.stores.base import Store
from engramdb.stores.prepared import ChunkHit

Mode = Literal["hybrid", "vector", "keyword"]
# Where a chunk is: (record id, record version, span start, span end).
Located = tuple[str, int, int, int]


class Searcher:
    """Answers searches over one store: hybrid, vector or keyword, with paging."""

    def __init__(self, settings: Settings, store: Store, cache: Cache, encoder: Encoder) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache
        self.encoder = encoder
        self.ranker = EntityRanker(settings, store)
        self.answer_ranker = AnswerKindRanker(settings, store)

    def search(
        self,
        namespace: str,
        query: str,
        *,
        top_k: int,
        node: Node | None,
        user_id: str | None,
        mode: Mode,
        threshold: float | None,
        offset: int,
        cursor: str | None,
        query_vector: np.ndarray | None = None,
    ) -> SearchPage:
        """Hybrid / vector / keyword search with fusion, threshold and paging."""
        v.check_namespace(namespace)
        query = v.check_text(query, self.settings, field="query")
        top_k = v.check_limit(top_k, self.settings)
        if mode not in ("hybrid", "vector", "keyword"):
            raise ValidationError(
                f"mode must be hybrid, vector or keyword, not {mode!r}", field="mode"
            )
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not -1.0 <= threshold <= 1.0
        ):
            raise ValidationError("threshold is a cosine similarity in [-1, 1]", field="threshold")
        if cursor is not None:
            offset = int(decode_cursor(cursor, "o"))
        offset = v.check_offset(offset)
        key = search_key(
            query,
            top_k=top_k,
            node=node,
            user_id=user_id,
            mode=mode,
            threshold=threshold,
            offset=offset,
            embedder=self.encoder.embedder,
            query_vector=query_vector,
            settings=self.settings,
        )
        cutoff = live_cutoff(node)

        def load() -> tuple[SearchPage, int | None]:
            # Read before the search: an answer hiding expired records holds until the next
            # record of the namespace expires (a change of expires_at is a write).
            horizon = None
            if cutoff is not None and self.cache.keeps_answers:
                horizon = self.store.next_expiry(namespace, cutoff)
            page = self._search(
                namespace, query, top_k, node, user_id, mode, threshold, offset, query_vector
            )
            return page, horizon

        return self.cache.search(namespace, key, load)

    def _search(
        self,
        namespace: str,
        query: str,
        top_k: int,
        node: Node | None,
        user_id: str | None,
        mode: Mode,
        threshold: float | None,
        offset: int,
        query_vector: np.ndarray | None,
    ) -> SearchPage:
        """Run a validated search (the uncached path of ``search``)."""
        need = offset + top_k
        # A fixed floor keeps the fused order the same from one page to the next, and convex
        # fusion normalises over the pool, so a larger pool ranks better.
        pool = max(need * 2, self.settings.search_pool)
        if mode == "vector":
            # No fusion: the exact similarity order is final, so hydrating a large pool only
            # costs time. The slack covers records with several chunks.
            pool = max(need * 2, 20)
        qvec = None
        if mode != "keyword" or threshold is not None:
            qvec = query_vector
            if qvec is None:
                qvec = self.encoder.embed([query], query=True)[0]
        full = node
        if user_id is not None:
            uc: Node = Cmp("str", "user_id", "$eq", user_id)
            full = uc if node is None else Bool("and", (uc, node))
        vec_hits: list[ChunkHit] = []
        kw_hits: list[ChunkHit] = []
        if mode in ("hybrid", "vector"):
            assert qvec is not None
            # Vector mode needs no fusion: the page's records may come with the candidates
            # (those of the best ``need`` chunks; the page is those unless records repeat).
            vec_hits = self.store.vector_candidates(
                namespace, qvec, user_id, node, pool, with_records=need if mode == "vector" else 0
            )
        match = match_expression(query) if mode in ("hybrid", "keyword") else ""
        if match:  # a query with no word has no keyword side at all
            kw_hits = self.store.keyword_candidates(namespace, match, full, pool)
        # Rank and fuse on ids; read whole records only for the page returned (hydrating
        # every candidate of both pools would cost more than the rest of the search).
        rows: dict[int, Located] = {}
        unlocated: set[int] = set()
        for h in (*vec_hits, *kw_hits):
            if h.located is None:
                unlocated.add(h.chunk_id)
            else:
                rows[h.chunk_id] = h.located
        if unlocated:
            rows.update(self.store.locate(namespace, list(unlocated), full))
        ranking = rank_candidates(vec_hits, kw_hits, rows)
        if qvec is not None and mode != "vector":
            # Keyword-only candidates get their vector similarity too: convex fusion, the
            # threshold and each hit's score parts read it for every candidate.
            missing = [rid for rid in ranking.kw_rank if rid not in ranking.vec_score]
            if missing:
                chunk_ids = [ranking.best_chunk[r][0] for r in missing]
                scores = self.store.vector_scores(chunk_ids, qvec)
                for rid, sc in zip(missing, scores, strict=True):
                    ranking.vec_score[rid] = sc
        fused = self._fuse(ranking, mode)
        if mode == "hybrid":
            fused = self.ranker.boost(namespace, query, fused, need)
            fused = self.answer_ranker.boost(namespace, query, fused, need)
        ordered = sorted(fused, key=lambda rid: (-fused[rid], rid))
        if threshold is not None:
            ordered = [rid for rid in ordered if ranking.vec_score.get(rid, -2.0) >= threshold]
        page = ordered[offset:need]
        records = self._read_page(namespace, page, vec_hits)
        vpos, kpos = ranking.positions()
        hits = []
        for rid in page:
            rec = records.get(rid)
            if rec is None:  # deleted between the two reads: as if it had been before both
                continue
            _, version, s, e = ranking.best_chunk[rid]
            # Updated in between: the span belongs to the old text, so show the whole record.
            matched = rec.text[s:e] if rec.version == version else rec.text
            parts = ScoreParts(
                vector=ranking.vec_score.get(rid),
                keyword=ranking.kw_score.get(rid),
                fused=fused[rid],
                vector_rank=vpos.get(rid),
                keyword_rank=kpos.get(rid),
            )
            hits.append(SearchHit(rec, fused[rid], parts, matched))
        nxt = encode_cursor("o", need) if len(ordered) > need else None
        return SearchPage(hits, nxt)

    def _fuse(self, ranking: Ranking, mode: Mode) -> dict[str, float]:
        """Each candidate record's final score: its one side's score, or both sides fused."""
        if mode == "vector":
            return {rid: ranking.vec_score[rid] for rid in ranking.vec_rank}
        if mode == "keyword":
            return {rid: ranking.kw_score[rid] for rid in ranking.kw_rank}
        if self.settings.hybrid_fusion == "convex":
            return convex(ranking.vec_score, ranking.kw_score, self.settings.hybrid_vector_weight)
        return rrf([ranking.vec_rank, ranking.kw_rank], k=self.settings.rrf_k)

    def _read_page(
        self, namespace: str, page: list[str], vec_hits: list[ChunkHit]
    ) -> dict[str, MemoryRecord]:
        """The page's records: those the store read with the candidates, then the rest."""
        records: dict[str, MemoryRecord] = {}
        wanted = set(page)
        for h in vec_hits:
            if h.record is not None and h.located is not None:
                rid = h.located[0]
                if rid in wanted and rid not in records:
                    records[rid] = h.record()
        unread = [rid for rid in page if rid not in records]
        if unread:
            records.update((r.id, r) for r in self.store.get_records(namespace, unread))
        return records


@dataclass
class Ranking:
    """Both retrievers' candidates as records: scores, ranks and each record's best chunk."""

    vec_rank: list[str] = field(default_factory=list)
    kw_rank: list[str] = field(default_factory=list)
    vec_score: dict[str, float] = field(default_factory=dict)
    kw_score: dict[str, float] = field(default_factory=dict)
    # record id -> (chunk id, record version, span start, span end) of its best chunk
    best_chunk: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)

    def positions(self) -> tuple[dict[str, int], dict[str, int]]:
        """Each record's 1-based rank among the vector and among the keyword candidates.

        A keyword candidate scored on the vector side afterwards has no vector rank: it was
        not among the vector candidates.
        """
        vpos = {rid: i + 1 for i, rid in enumerate(self.vec_rank)}
        kpos = {rid: i + 1 for i, rid in enumerate(self.kw_rank)}
        return vpos, kpos


def rank_candidates(
    vec_hits: list[ChunkHit], kw_hits: list[ChunkHit], rows: dict[int, Located]
) -> Ranking:
    """Rank candidate chunks as records: a record scores as its best chunk on each side.

    Chunks ``rows`` does not locate (deleted, or outside the filter) are dropped.
    """
    r = Ranking()
    for h in vec_hits:
        if h.chunk_id not in rows:
            continue
        rid, version, s, e = rows[h.chunk_id]
        if rid not in r.vec_score:
            r.vec_score[rid] = h.score
            r.vec_rank.append(rid)
            r.best_chunk[rid] = (h.chunk_id, version, s, e)
    for h in kw_hits:
        if h.chunk_id not in rows:
            continue
        rid, version, s, e = rows[h.chunk_id]
        if rid not in r.kw_score:
            r.kw_score[rid] = h.score
            r.kw_rank.append(rid)
            r.best_chunk.setdefault(rid, (h.chunk_id, version, s, e))
    # Ties are broken by record id, never by internal chunk ids (which differ between a
    # store and its export re-imported elsewhere), so ranks and fused scores are stable.
    r.vec_rank.sort(key=lambda rid: (-r.vec_score[rid], rid))
    r.kw_rank.sort(key=lambda rid: (-r.kw_score[rid], rid))
    return r
