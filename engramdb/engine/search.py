"""Retrieval: vector and keyword candidates, fused into one ranked, paged answer.

Read path: embed the query (unless the caller gave its vector) -> vector and BM25 candidates
-> locate their records (unless the store already did) -> fuse on record ids -> read the
records of the page only (unless they came with the candidates, or a store over the network
read the candidates within reach whole). A whole answer is cached
in the cache tier under :func:`~engramdb.engine.search_key.search_key`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
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
from engramdb.engine.fusion import convex, rrf, within_reach
from engramdb.engine.keyword import match_expression
from engramdb.engine.search_key import live_cutoff, search_key
from engramdb.errors import ValidationError
from engramdb.models import MemoryRecord, ScoreParts, SearchHit, SearchPage
from engramdb.query.filters import Bool, Cmp, Node
from engramdb.stores.base import Store
from engramdb.stores.prepared import ChunkHit, WholeHit

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
        kw_vec_scores: dict[int, float] = {}  # keyword hits' vector scores, if the store had them
        # A query with no word has no keyword side at all.
        match = match_expression(query) if mode in ("hybrid", "keyword") else ""
        if mode == "hybrid" and match:
            assert qvec is not None
            vec_hits, kw_hits, kw_vec_scores = self.store.hybrid_candidates(
                namespace, qvec, match, user_id, node, full, pool
            )
        elif mode in ("hybrid", "vector"):
            assert qvec is not None
            # Vector mode needs no fusion: the page's records may come with the candidates
            # (those of the best ``need`` chunks; the page is those unless records repeat).
            vec_hits = self.store.vector_candidates(
                namespace, qvec, user_id, node, pool, with_records=need if mode == "vector" else 0
            )
        elif match:
            kw_hits = self.store.keyword_candidates(namespace, match, full, pool)
        # Fuse on record row ids, locate (record id, version, span, the filter checked) only
        # the candidates that can reach the page, and read whole records only for the page
        # returned: locating or hydrating every candidate of both pools would cost more
        # than the rest of the search.
        known: dict[int, Located] = {}
        rids: dict[int, int] = {}
        unknown: list[int] = []
        for h in (*vec_hits, *kw_hits):
            if h.located is not None:
                known[h.chunk_id] = h.located
            if h.rid:
                rids[h.chunk_id] = h.rid
            else:
                unknown.append(h.chunk_id)
        unknown = [c for c in dict.fromkeys(unknown) if c not in rids]
        if unknown:
            rids.update(self.store.chunk_rids(namespace, unknown))
        ranking = rank_candidates(vec_hits, kw_hits, rids)
        if qvec is not None and mode != "vector":
            # Keyword-only candidates get their vector similarity too: convex fusion, the
            # threshold and each hit's score parts read it for every candidate.
            missing = []
            for r in ranking.kw_score:
                if r in ranking.vec_score:
                    continue
                chunk = ranking.best_chunk[r]
                if chunk in kw_vec_scores:  # scored by the store beside the keyword side
                    ranking.vec_score[r] = kw_vec_scores[chunk]
                else:
                    missing.append(r)
            if missing:
                chunk_ids = [ranking.best_chunk[r] for r in missing]
                scores = self.store.vector_scores(chunk_ids, qvec)
                ranking.vec_score.update(zip(missing, scores, strict=True))
        # Reciprocal-rank fusion ranks by position, and positions break ties by record id:
        # it needs every candidate located first.
        locate_all = mode == "hybrid" and self.settings.hybrid_fusion != "convex"
        bound = self._boost_bound(query) if mode == "hybrid" else 0.0
        # A store over the network reads the candidates within reach whole, with their
        # answer kinds, in the one statement that locates them (``Store.locate_whole``).
        whole: dict[int, WholeHit] | None = {} if mode == "hybrid" and not locate_all else None
        while True:
            scored = (
                {} if locate_all else self._passing(self._fuse(ranking, mode), ranking, threshold)
            )
            if whole is None and all(c in known for c in ranking.best_chunk.values()):
                # Every candidate came located (vector mode, PostgreSQL): nothing to choose.
                wanted = list(ranking.best_chunk)
                break
            if locate_all:
                wanted = list(ranking.best_chunk)
            else:
                wanted = ranking.with_ties(within_reach(scored, need, bound))
            if whole is not None:
                unread = [c for c in (ranking.best_chunk[r] for r in wanted) if c not in whole]
                got = self.store.locate_whole(namespace, unread, full) if unread else {}
                if got is None:  # reads in process: locate below what is not located yet
                    whole = None
                else:
                    whole.update(got)
                    known.update((c, h.located) for c, h in got.items())
            if whole is None:
                unread = [c for c in (ranking.best_chunk[r] for r in wanted) if c not in known]
                if unread:
                    known.update(self.store.locate(namespace, unread, full))
            # Gone since the candidates were read, or outside the filter: as if never found.
            # (A candidate read whole is checked against that read, not an earlier location.)
            read = known if whole is None else whole
            gone = [r for r in wanted if ranking.best_chunk[r] not in read]
            if not gone:
                break
            ranking.drop(gone)
        where = {r: known[ranking.best_chunk[r]] for r in wanted}
        ident = {r: loc[0] for r, loc in where.items()}
        if locate_all:
            vec_order = sorted(ranking.vec_rank, key=lambda r: (-ranking.vec_score[r], ident[r]))
            kw_order = sorted(ranking.kw_rank, key=lambda r: (-ranking.kw_score[r], ident[r]))
            fused_rows = rrf([vec_order, kw_order], k=self.settings.rrf_k)
            scored = self._passing(fused_rows, ranking, threshold)
        fused = {ident[r]: scored[r] for r in wanted if r in scored}
        if mode == "hybrid":
            fused = self.ranker.boost(namespace, query, fused, need)
            kinds = None if whole is None else {h.located[0]: h.kinds for h in whole.values()}
            fused = self.answer_ranker.boost(namespace, query, fused, need, kinds)
        ordered = sorted(fused, key=lambda rid: (-fused[rid], rid))
        page = ordered[offset:need]
        records = self._read_page(namespace, page, vec_hits, whole)
        row_of = {ident[r]: r for r in wanted}
        page_rows = [row_of[rid] for rid in page]
        vpos = ranking.positions(ranking.vec_rank, ranking.vec_score, page_rows, ident)
        kpos = ranking.positions(ranking.kw_rank, ranking.kw_score, page_rows, ident)
        hits = []
        for rid, row in zip(page, page_rows, strict=True):
            rec = records.get(rid)
            if rec is None:  # deleted between the two reads: as if it had been before both
                continue
            _, version, s, e = where[row]
            # Updated in between: the span belongs to the old text, so show the whole record.
            matched = rec.text[s:e] if rec.version == version else rec.text
            parts = ScoreParts(
                vector=ranking.vec_score.get(row),
                keyword=ranking.kw_score.get(row),
                fused=fused[rid],
                vector_rank=vpos.get(row),
                keyword_rank=kpos.get(row),
            )
            hits.append(SearchHit(rec, fused[rid], parts, matched))
        nxt = encode_cursor("o", need) if len(scored) > need else None
        return SearchPage(hits, nxt)

    def _boost_bound(self, query: str) -> float:
        """The most the hybrid boosts can add to one candidate's fused score for this query."""
        return self.ranker.max_boost() + self.answer_ranker.max_boost(query)

    @staticmethod
    def _passing(
        fused: dict[int, float], ranking: Ranking, threshold: float | None
    ) -> dict[int, float]:
        """The fused candidates whose vector similarity reaches the threshold (all without)."""
        if threshold is None:
            return fused
        return {r: s for r, s in fused.items() if ranking.vec_score.get(r, -2.0) >= threshold}

    def _fuse(self, ranking: Ranking, mode: Mode) -> dict[int, float]:
        """Each candidate's score by score fusion: its one side's score, or both sides
        fused convexly (reciprocal-rank fusion is done on located candidates instead)."""
        if mode == "vector":
            return {r: ranking.vec_score[r] for r in ranking.vec_rank}
        if mode == "keyword":
            return {r: ranking.kw_score[r] for r in ranking.kw_rank}
        return convex(ranking.vec_score, ranking.kw_score, self.settings.hybrid_vector_weight)

    def _read_page(
        self,
        namespace: str,
        page: list[str],
        vec_hits: list[ChunkHit],
        whole: dict[int, WholeHit] | None,
    ) -> dict[str, MemoryRecord]:
        """The page's records: those the store read with the candidates or located whole,
        then the rest."""
        records: dict[str, MemoryRecord] = {}
        wanted = set(page)
        for w in (whole or {}).values():
            rid = w.located[0]
            if rid in wanted and rid not in records:
                records[rid] = w.record()
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
    """Both retrievers' candidates as records, by record row id: scores, each side's
    candidates in the order found, and each record's best chunk."""

    vec_rank: list[int] = field(default_factory=list)
    kw_rank: list[int] = field(default_factory=list)
    vec_score: dict[int, float] = field(default_factory=dict)
    kw_score: dict[int, float] = field(default_factory=dict)
    best_chunk: dict[int, int] = field(default_factory=dict)  # record row id -> chunk id

    def with_ties(self, rows: list[int]) -> list[int]:
        """``rows`` and every other candidate with exactly the score of one of them on a
        side: a rank breaks such ties by record id, which only a located candidate has."""
        vec = {self.vec_score[r] for r in rows if r in self.vec_score}
        kw = {self.kw_score[r] for r in rows if r in self.kw_score}
        tied = {r for r, s in self.vec_score.items() if s in vec}
        tied.update(r for r, s in self.kw_score.items() if s in kw)
        tied.difference_update(rows)
        if not tied:  # the usual case: no other candidate shares a score with the rows
            return rows
        return rows + [r for r in self.best_chunk if r in tied]

    def drop(self, rows: list[int]) -> None:
        """Forget these candidates (their records are gone, or fail the filter)."""
        out = set(rows)
        self.vec_rank = [r for r in self.vec_rank if r not in out]
        self.kw_rank = [r for r in self.kw_rank if r not in out]
        for r in out:
            self.vec_score.pop(r, None)
            self.kw_score.pop(r, None)
            self.best_chunk.pop(r, None)

    @staticmethod
    def positions(
        side: list[int], scores: dict[int, float], rows: list[int], ident: dict[int, str]
    ) -> dict[int, int]:
        """Each of ``rows``' 1-based rank among one side's candidates ``side``, by score and
        then record id (``ident`` has every candidate tied with one of ``rows``).

        A keyword candidate scored on the vector side afterwards has no vector rank: it was
        not among the vector candidates.
        """
        members = set(side)
        wanted = [r for r in rows if r in members]
        if not wanted:
            return {}
        ordered = sorted(map(scores.__getitem__, side))  # ascending: bisect finds a run
        n = len(ordered)
        out = {}
        for r in wanted:
            s = scores[r]
            lo, hi = bisect_left(ordered, s), bisect_right(ordered, s)
            rank = 1 + n - hi
            if hi - lo > 1:  # tied with others: those with a smaller record id come first
                rank += sum(1 for c in side if scores[c] == s and ident[c] < ident[r])
            out[r] = rank
        return out


def rank_candidates(
    vec_hits: list[ChunkHit], kw_hits: list[ChunkHit], rids: dict[int, int]
) -> Ranking:
    """Rank candidate chunks as records: a record scores as its best chunk on each side.

    Chunks ``rids`` does not map to a record (deleted since) are dropped. Ranks are settled
    later, on the located candidates: ties are broken by record id, never by internal ids
    (which differ between a store and its export re-imported elsewhere).
    """
    r = Ranking()
    for h in vec_hits:
        rid = rids.get(h.chunk_id)
        if rid is None:
            continue
        if rid not in r.vec_score:  # hits come best first
            r.vec_rank.append(rid)
            r.vec_score[rid] = h.score
            r.best_chunk[rid] = h.chunk_id
    for h in kw_hits:
        rid = rids.get(h.chunk_id)
        if rid is None:
            continue
        if rid not in r.kw_score:
            r.kw_rank.append(rid)
            r.kw_score[rid] = h.score
            r.best_chunk.setdefault(rid, h.chunk_id)
    return r
