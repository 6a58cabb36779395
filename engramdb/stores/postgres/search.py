"""Search candidates on PostgreSQL: vectors (exact, prefiltered, HNSW) and keywords.

* vectors: pgvector ``vector(dim)`` column. A user-scoped search, or any search in a
  namespace with at most ``ann_min_rows`` chunks, is an exact scan through the
  ``(namespace, user_id)`` index (perfect recall, and faster than HNSW post-filtering for
  small scopes); a mid-sized scope scans its chunks' sign bits and re-scores the best few
  exactly (:meth:`Search._bits`); larger scopes use the HNSW index (cosine ops,
  over half-precision copies of the vectors:
  :data:`engramdb.stores.postgres.vectors.HNSW_MAX_DIM`) with pgvector's iterative scan, so
  filters never starve the result. A large scope whose filter few records pass scores
  just those records' chunks (:meth:`Search._narrow`).
* keywords: a ``tsvector`` per chunk (GIN on ``(namespace, user_id, fts)``) with an
  accent-folding, English-stemming configuration without stop words (close to SQLite's
  FTS5 tokenizer), ranked with ``ts_rank`` (term frequency; LoCoMo keyword Recall@10 0.719
  against 0.651 with the cover-density ``ts_rank_cd``, at a quarter of its CPU per match);
  chunks that cannot reach the page are not ranked
  (:mod:`engramdb.stores.postgres.keyword_prune`). From ``keyword_index_min_rows`` chunks
  each process ranks the same floats from its own postings instead, caught up from the
  ``keyword_feed`` before each search (:mod:`engramdb.stores.postgres.keyword_index`).
* filters: :func:`engramdb.stores.postgres.filters.compile_postgres`, pushed into the SQL.

The statements themselves are built in :mod:`engramdb.stores.postgres.search_sql`.
"""

from __future__ import annotations

import functools
import threading
import time
from contextlib import suppress
from typing import Any

import numpy as np
import psycopg

from engramdb.query.filters import (
    Live,
    Node,
    conjuncts,
    is_live_only,
    required_equalities,
    required_leaves,
)
from engramdb.stores.postgres.connection import Database
from engramdb.stores.postgres.filters import compile_postgres
from engramdb.stores.postgres.keyword_index import KeywordIndexes, score_text
from engramdb.stores.postgres.keyword_prune import (
    FIRST_LEAVE_OUT,
    MATCH_FACTOR,
    KeywordTerms,
    allowed_out,
    first_out,
    left_out,
    scope_only,
)
from engramdb.stores.postgres.record_sql import COLS_TAGS_TEXT
from engramdb.stores.postgres.search_sql import (
    ann_statement,
    bits_statement,
    fts_words,
    keyword_matches,
    located,
    located_hit,
    record_check,
    tsquery_text,
    words_tsquery,
)
from engramdb.stores.postgres.side_threads import SideThreads
from engramdb.stores.postgres.vectors import _Vector
from engramdb.stores.prepared import ChunkHit, WholeHit
from engramdb.stores.rows import ID_COL, VERSION_COL, row_to_record

# A user's scope up to this many chunks is searched exactly (through the (namespace,
# user_id) index); a larger one through HNSW with a user filter. The exact way costs one
# heap visit per chunk and grows with the scope; the filtered HNSW scan gets cheaper as the
# user's share grows. The crossing point is measured (docs/tuning.md).
EXACT_USER_MAX_ROWS = 5_000
# A user's scope of more than BITS_MIN_ROWS and at most BITS_MAX_ROWS chunks (a namespace's
# too, up to ann_min_rows, above which HNSW takes it), searched with no filter beyond the
# expiry check, scans its chunks' sign bits by Hamming distance, keeps the best
# max(BITS_RESCORE_MIN, BITS_RESCORE_FACTOR x the page) and re-scores those exactly
# (:meth:`Search._bits`): below it the exact scan costs as little, above it the filtered
# HNSW scan finds a large user's page sooner (docs/tuning.md).
BITS_MIN_ROWS = 2_000
BITS_MAX_ROWS = 20_000
BITS_RESCORE_MIN = 200
BITS_RESCORE_FACTOR = 4
# The same for the vector side of a hybrid search, whose hits are a pool for fusion at least
# twice the page: 2 x the pool still re-scores 4 x the page's worth of nearest bits, as a
# vector page does, and the tail only nominates (a chunk its bits miss there but its words
# match comes with the keyword hits, exactly scored). Hybrid pages stayed identical over
# the benchmark's sign-bits users (docs/tuning.md).
BITS_FUSION_FACTOR = 2
# A user's keyword search prunes (keyword_prune) only above this many chunks in their scope.
PRUNE_USER_MIN_ROWS = 5_000
KEYWORD_PROBE = 400  # keyword matches ranked before their records are read (see below)
# From this many chunks in the store, keywords rank through the process-local index.
KEYWORD_INDEX_MIN_ROWS = 5_000
# A search of a large scope whose filter requires a tag or a metadata value (which the GIN
# indexes on records answer) scores the passing records' chunks exactly when at most this
# many records pass, instead of the HNSW scan: its iterative scan walks the graph until the
# page is full, which is slowest exactly when few records pass (docs/tuning.md). The count
# stops at this many + 1.
PREFILTER_MAX_RECORDS = 2_000
PROBE_MIN = 64  # chunks a broad filter is first checked on (the page x4 when larger)
USER_SCOPE = frozenset({"user_id"})  # the scope chunks carry (they have no thread_id)
SCOPE_SIZE_TTL_S = 10.0  # how long a counted scope size picks plans


class ScopeSizes:
    """Chunk counts per (namespace, user) scope, kept for a few seconds.

    A count only picks a plan, and both plans return what is there, so a slightly stale
    one is harmless; ``restore`` clears them all (the content was replaced).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str | None], tuple[float, int]] = {}

    def count(
        self, c: psycopg.Connection[Any], namespace: str, user_id: str | None, cap: int
    ) -> int:
        """Chunks in the scope, counted up to ``cap + 1`` (or remembered from a recent count)."""
        now = time.monotonic()
        key = (namespace, user_id)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < SCOPE_SIZE_TTL_S:
                return hit[1]
        args: tuple[str, ...] = (namespace,) if user_id is None else (namespace, user_id)
        sql = "namespace = %s" if user_id is None else "namespace = %s AND user_id = %s"
        row = c.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM chunks WHERE {sql} LIMIT %s) s",
            (*args, cap + 1),
        ).fetchone()
        n = int(row[0]) if row else 0
        with self._lock:
            self._cache[key] = (now, n)
        return n

    def clear(self) -> None:
        """Forget every remembered count."""
        with self._lock:
            self._cache.clear()


class Search:
    """The search candidates of one store (vector, keyword) and their locations."""

    def __init__(
        self,
        db: Database,
        scopes: ScopeSizes,
        ann_min_rows: int,
        exact_max_user_rows: int,
        keyword_index_min_rows: int = KEYWORD_INDEX_MIN_ROWS,
    ) -> None:
        self._db = db
        # The process-local keyword index (keyword_index); None: keywords rank in SQL.
        self.keyword_index: KeywordIndexes | None = None
        if keyword_index_min_rows >= 0:
            self.keyword_index = KeywordIndexes(
                lambda doing, snapshot: db.read(doing, snapshot=snapshot),
                db.write,
                keyword_index_min_rows,
            )
        self._sides = SideThreads(db.router, db.pool_max)
        self.scopes = scopes
        self.ann_min_rows = int(ann_min_rows)
        self.exact_max_user_rows = int(exact_max_user_rows)
        # The user scopes searched through their sign bits: (min, max] chunks (see BITS_*).
        self.bits_rows = (BITS_MIN_ROWS, BITS_MAX_ROWS)
        self.terms = KeywordTerms()
        self.prune_keywords = True  # rank only chunks that can reach the page (keyword_prune)
        self.prune_user_min_rows = PRUNE_USER_MIN_ROWS
        self.first_leave_out = FIRST_LEAVE_OUT
        self.match_factor = MATCH_FACTOR

    # The process-local keyword index's lifecycle, for the store (a no-op without one).

    def build_keyword_index(self, timeout_s: float) -> bool:
        """Start building the keyword index and wait up to ``timeout_s``; whether it is in."""
        if self.keyword_index is None:
            return False
        self.keyword_index.start()
        return self.keyword_index.wait_built(timeout_s)

    def keyword_stats(self) -> dict[str, Any]:
        """``{"keyword_index": its state}`` for ``stats``, or nothing without an index."""
        ki = self.keyword_index
        return {} if ki is None else {"keyword_index": ki.state()}

    def prune_keyword_feed(self) -> None:
        """Let the index prune the feed when it is due (writers call it too)."""
        if self.keyword_index is not None:
            self.keyword_index.maybe_prune()

    def close(self) -> None:
        """Stop the helper threads and the index's build, and forget the index (the store
        is closing)."""
        self._sides.close()
        if self.keyword_index is not None:
            self.keyword_index.close()

    def hybrid_candidates(
        self,
        namespace: str,
        query: np.ndarray,
        match: str,
        user_id: str | None,
        node: Node | None,
        full: Node | None,
        limit: int,
    ) -> tuple[list[ChunkHit], list[ChunkHit], dict[int, float]]:
        """Both sides' candidates at once (see ``Store.hybrid_candidates``).

        The keyword side runs on a helper thread (:mod:`side_threads`) while this thread
        runs the vector side; the helper then scores its hits' vectors too, which would
        otherwise be one more statement after both sides.
        """

        def keyword_side() -> tuple[list[ChunkHit], dict[int, float]]:
            hits = self.keyword_candidates(namespace, match, full, limit)
            ids = [h.chunk_id for h in hits]
            return hits, dict(zip(ids, self.vector_scores(ids, query), strict=True))

        keyword = self._sides.start(keyword_side)
        try:
            vec_hits = self.vector_candidates(
                namespace, query, user_id, node, limit, fusion_pool=True
            )
        except BaseException:
            with suppress(BaseException):  # never left running; the first error wins
                keyword.result()
            raise
        kw_hits, scores = keyword.result()
        return vec_hits, kw_hits, scores

    def vector_candidates(
        self,
        namespace: str,
        query: np.ndarray,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: bool = False,
        fusion_pool: bool = False,
    ) -> list[ChunkHit]:
        """Return the best chunks by cosine similarity that pass the filter (``fusion_pool``:
        a hybrid search's, see ``BITS_FUSION_FACTOR``).

        The plan follows the scope's size (:meth:`_plan`). A mid-sized scope searched with
        no filter beyond expiry goes through its chunks' sign bits (:meth:`_bits`).
        Otherwise the search is exact for a user's scope of up to ``ann_min_user_rows``
        chunks and for namespaces up to ``ann_min_rows`` chunks: the scope's chunks are
        scored once (a materialised
        step, through the ``(namespace, user_id)`` index) and only then joined to their
        records for the filter, so no plan can rescan the scope per record, even before the
        table has statistics. Larger scopes use the HNSW index with pgvector's iterative
        scan, so a selective filter still fills the page. One statement either way: the
        filter is a per-chunk check of its record (:func:`record_check`). The returned
        chunks meet their records after the limit (:func:`located`), which gives each hit
        its location and, ``with_records``, its whole record.
        """
        q = _Vector(query)
        scope = "namespace = %s"
        scope_args: list[Any] = [namespace]
        if user_id is not None:
            scope += " AND user_id = %s"
            scope_args.append(user_id)
        with self._db.read("vector search", route=True) as c:
            self._db.send_vectors_binary(c)  # the query as 1.5 KB of floats, not 4 KB of text
            plan = self._plan(c, namespace, user_id, node)
            rows = None
            if plan == "bits":
                factor = BITS_FUSION_FACTOR if fusion_pool else BITS_RESCORE_FACTOR
                rows = self._bits(c, q, namespace, user_id, node, limit, with_records, factor)
            elif plan == "ann":
                rows = self._prefiltered(c, q, namespace, user_id, node, limit, with_records)
                if rows is None:
                    rows = self._ann_candidates(c, q, namespace, user_id, node, limit, with_records)
            elif node is not None and not is_live_only(node):
                # A filter most of the scope passes (a tag every item carries) is settled on
                # the best few chunks; a narrow one scores just its records' chunks.
                rows = self._probed(c, q, scope, scope_args, namespace, node, limit, with_records)
                if rows is None:
                    rows = self._prefiltered(c, q, namespace, user_id, node, limit, with_records)
            if rows is None:
                check, check_args = record_check("s", namespace, node)
                rows = c.execute(
                    located(
                        "WITH s AS MATERIALIZED (SELECT id, rid, start_pos, end_pos, "
                        f"embedding <=> %s::vector AS d FROM chunks WHERE {scope}) "
                        "SELECT s.id, s.rid, 1 - s.d AS score, s.start_pos, s.end_pos FROM s "
                        f"WHERE {check} ORDER BY s.d, s.id LIMIT {int(limit)}",
                        with_records,
                    ),
                    (q, *scope_args, *check_args),
                ).fetchall()
        hits = [located_hit(r, with_records) for r in rows]
        hits.sort(key=lambda h: (-h.score, h.chunk_id))
        return hits

    def _user_cap(self) -> int:
        """How far a user's scope is counted: past every size bound that picks a plan
        (one cap for all, since a remembered count serves every plan choice)."""
        return max(self.exact_max_user_rows, self.bits_rows[1], self.prune_user_min_rows)

    def _plan(
        self, c: psycopg.Connection[Any], namespace: str, user_id: str | None, node: Node | None
    ) -> str:
        """How to search a scope's vectors: ``"exact"``, ``"bits"`` or ``"ann"``, by the
        scope's size (counted up to the largest bound that can change the answer)."""
        low, high = self.bits_rows
        if user_id is None:
            size = self.scopes.count(c, namespace, None, self.ann_min_rows)
            if size > self.ann_min_rows:
                return "ann"
            exact_max = self.ann_min_rows
        else:
            size = self.scopes.count(c, namespace, user_id, self._user_cap())
            exact_max = self.exact_max_user_rows
        if low < size <= high and (node is None or is_live_only(node)):
            return "bits"
        return "exact" if size <= exact_max else "ann"

    def _probed(
        self,
        c: psycopg.Connection[Any],
        q: _Vector,
        scope: str,
        scope_args: list[Any],
        namespace: str,
        node: Node,
        limit: int,
        with_records: bool,
    ) -> list[tuple[Any, ...]] | None:
        """The exact search of a scope whose filter most chunks pass, or None.

        The scope's best ``PROBE`` chunks (four pages, at least 64) by distance are a prefix
        of its full order, so those of them that pass the filter are the best passing
        chunks: when they fill the page (or the probe held the whole scope) that is the
        answer, and the filter was checked on a few dozen records instead of on every chunk
        of the scope. None when too few passed (a narrow filter): the caller searches again
        with the filter applied first.
        """
        probe = max(limit * 4, PROBE_MIN)
        check, check_args = record_check("s", namespace, node)
        inner = (
            "WITH s AS MATERIALIZED (SELECT id, rid, start_pos, end_pos, "
            f"embedding <=> %s::vector AS d FROM chunks WHERE {scope} "
            f"ORDER BY d, id LIMIT {int(probe)}) "
            "SELECT s.id, s.rid, 1 - s.d AS score, s.start_pos, s.end_pos, "
            f"{check} AS passed FROM s"
        )
        # located()'s columns, then whether the chunk's record passed the filter.
        sql = located(inner, with_records, extra="passed")
        rows = c.execute(sql, (q, *scope_args, *check_args)).fetchall()
        rows.sort(key=lambda r: (-float(r[2]), int(r[0])))
        passed = [r[:-1] for r in rows if r[-1]]
        if len(passed) >= limit or len(rows) < probe:
            return passed[:limit]
        return None

    def _narrow(
        self, c: psycopg.Connection[Any], namespace: str, node: Node | None, user_id: str | None
    ) -> tuple[str, list[Any]] | None:
        """The records condition of a narrow indexed filter, and its arguments, or None.

        Narrow: the filter requires a tag or a metadata value (which the GIN indexes on
        records answer) and at most ``PREFILTER_MAX_RECORDS`` records of the scope pass it
        (counted through that index, stopping one past the cap). A search then starts from
        those records instead of ranking the scope's chunks and testing each.
        """
        if not _narrowable(node):
            return None
        where, params = compile_postgres(node)
        cond = f"r.namespace = %s AND {where}"
        args = [namespace, *params]
        if user_id is not None:
            cond += " AND r.user_id = %s"
            args.append(user_id)
        row = c.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM records r WHERE {cond} LIMIT %s) s",
            (*args, PREFILTER_MAX_RECORDS + 1),
        ).fetchone()
        if row is None or int(row[0]) > PREFILTER_MAX_RECORDS:
            return None
        return cond, args

    def _bits(
        self,
        c: psycopg.Connection[Any],
        q: _Vector,
        namespace: str,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: bool,
        factor: int,
    ) -> list[tuple[Any, ...]]:
        """The search of a mid-sized scope (a user's, or a namespace's up to
        ``ann_min_rows``) through its chunks' sign bits.

        The bits btree (:data:`engramdb.stores.postgres.vectors.BITS_INDEX`) is scanned
        index-only, nearest first by Hamming distance to the query's own bits, and the best
        ``R`` of those (``factor`` x the page, at least ``BITS_RESCORE_MIN``) are re-scored
        exactly from their vectors (read by primary key), so every returned score is the
        float32 cosine and the order among them exact; a chunk outside the ``R`` is missed
        only when its bits sit far from the query's while its vector is close (recall@10
        0.9997 with R = 200 over the benchmark's largest users, docs/tuning.md). The expiry
        check applies before the cut, so expired records never take a place among the ``R``.
        """
        rescore = max(BITS_RESCORE_MIN, factor * int(limit))
        sql, args = bits_statement(q, namespace, user_id, node, limit, rescore, with_records)
        # Never prepared: the generic plan a prepared statement falls back to after a few
        # runs took twice as long as the custom one for the largest users (docs/tuning.md).
        return c.execute(sql, args, prepare=False).fetchall()

    def _prefiltered(
        self,
        c: psycopg.Connection[Any],
        q: _Vector,
        namespace: str,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: bool,
    ) -> list[tuple[Any, ...]] | None:
        """The exact search of a large scope's records that pass a narrow filter (see
        :meth:`_narrow`), or None for the HNSW scan."""
        narrow = self._narrow(c, namespace, node, user_id)
        if narrow is None:
            return None
        # Two materialised steps: the passing records through the GIN index, then their
        # chunks by rid. As one join the planner chose a parallel scan of every record.
        sql = located(
            f"WITH p AS MATERIALIZED (SELECT r.rid FROM records r WHERE {narrow[0]}), "
            "s AS MATERIALIZED (SELECT c.id, c.rid, c.start_pos, c.end_pos, "
            "c.embedding <=> %s::vector AS d FROM p JOIN chunks c ON c.rid = p.rid) "
            "SELECT s.id, s.rid, 1 - s.d AS score, s.start_pos, s.end_pos FROM s "
            f"ORDER BY s.d, s.id LIMIT {int(limit)}",
            with_records,
        )
        return c.execute(sql, (*narrow[1], q)).fetchall()

    def _ann_candidates(
        self,
        c: psycopg.Connection[Any],
        q: _Vector,
        namespace: str,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: bool,
    ) -> list[tuple[Any, ...]]:
        """The HNSW search of a large scope (:func:`ann_statement`; session settings from
        ``Database._configure_session``). Relaxed order is enough: every returned score is
        exact and the caller sorts."""
        sql, args = ann_statement(q, namespace, user_id, node, limit, with_records)
        if limit <= self._db.hnsw_ef_search:
            return c.execute(sql, args).fetchall()
        with c.transaction():  # a page larger than the search breadth: widen it for this query
            c.execute(f"SET LOCAL hnsw.ef_search = {int(limit)}")
            return c.execute(sql, args).fetchall()

    def vector_scores(self, chunk_ids: list[int], query: np.ndarray) -> list[float]:
        """Return the cosine similarity of the query to each chunk (NaN when it is gone)."""
        if not chunk_ids:
            return []
        with self._db.read("scoring chunks", route=True) as c:
            self._db.send_vectors_binary(c)
            rows = c.execute(
                "SELECT id, 1 - (embedding <=> %s::vector) FROM chunks WHERE id = ANY(%s)",
                (_Vector(query), list(chunk_ids)),
            ).fetchall()
        got = {int(r[0]): float(r[1]) for r in rows}
        return [got.get(cid, float("nan")) for cid in chunk_ids]

    def keyword_candidates(
        self, namespace: str, match: str, node: Node | None, limit: int
    ) -> list[ChunkHit]:
        """Return the best chunks by ``ts_rank`` (higher is better), ties by chunk id.

        Matches come from ``chunks`` alone (its GIN index, or a scan when most rows match),
        narrowed to the filter's user when it names one (chunks carry ``user_id``, so a user
        ranks only their own matches, not the namespace's). Only the best ``KEYWORD_PROBE``
        (or 4x ``limit``) meet their records and the filter: joining every match first costs
        a join per match of a common word. When too few of the probed ones pass, the whole
        join runs. A narrow indexed filter (see :meth:`_narrow`) ranks just its records'
        chunks instead of the namespace's matches. A search of the namespace whose filter is
        only the expiry check first ranks only the matches that can reach the page
        (:meth:`_pruned`), the same page score for score. Figures: docs/tuning.md.
        """
        tsq = tsquery_text(match)
        if not tsq:
            return []
        where, params = compile_postgres(node)
        users = sorted(v for _, v in required_equalities(node, USER_SCOPE))
        matches, args = keyword_matches(tsq, namespace, users)
        columns = "m.id, m.rid, m.s, r.id, r.version, m.start_pos, m.end_pos"
        probe = max(limit * 4, KEYWORD_PROBE)
        if self.keyword_index is not None and len(users) <= 1 and not _narrowable(node):
            # Before the routed read, never inside it: the index catches up on a primary
            # connection of its own, and holding one pooled connection while waiting for
            # another could exhaust the pool under load.
            hits = self._indexed(match, namespace, users, node, limit)
            if hits is not None:
                return hits
        with self._db.read("keyword search", route=True) as c:
            narrow = self._narrow(c, namespace, node, None)
            if narrow is not None:  # rank only the passing records' chunks
                rows = c.execute(
                    f"WITH p AS MATERIALIZED (SELECT r.rid FROM records r WHERE {narrow[0]}), "
                    "m AS MATERIALIZED (SELECT c.id, c.rid, c.start_pos, c.end_pos, "
                    "ts_rank(c.fts, to_tsquery('engram', %s)) AS s FROM p JOIN chunks c "
                    "ON c.rid = p.rid WHERE c.fts @@ to_tsquery('engram', %s)) "
                    f"SELECT {columns} FROM m JOIN records r ON r.rid = m.rid "
                    f"ORDER BY m.s DESC, m.id LIMIT {int(limit)}",
                    (*narrow[1], tsq, tsq),
                    prepare=False,
                ).fetchall()
                return [located_hit(r, False) for r in rows]
            if self.prune_keywords and scope_only(node):
                page = self._pruned(c, match, tsq, namespace, users, where, params, limit)
                if page is not None:
                    return [located_hit(r, False) for r in page]
            # The CTEs are materialised so that the planner cannot start from records
            # (see vector_candidates). Never prepared: a query's words decide whether a
            # parallel scan or the GIN index is right, and the generic plan a prepared
            # statement falls back to after a few runs cannot know (docs/tuning.md).
            ranked = c.execute(
                _probe_sql(matches, columns, where, probe),
                (*args, namespace, *params),
                prepare=False,
            ).fetchall()
            passed = [r for r in ranked if r[7]]
            if len(passed) >= limit or len(ranked) < probe:
                return [located_hit(r, False) for r in passed[:limit]]
            rows = c.execute(
                f"WITH m AS MATERIALIZED ({matches}) "
                f"SELECT {columns} FROM m JOIN records r ON r.rid = m.rid "
                f"WHERE r.namespace = %s AND {where} ORDER BY m.s DESC, m.id LIMIT {int(limit)}",
                (*args, namespace, *params),
                prepare=False,
            ).fetchall()
        return [located_hit(r, False) for r in rows]

    def _indexed(
        self, match: str, namespace: str, users: list[str], node: Node | None, limit: int
    ) -> list[ChunkHit] | None:
        """The best ``limit`` matches ranked by the process-local keyword index, or None
        (the caller ranks in SQL).

        The index ranks the scope's matches (the filter's user, or the namespace) with
        ``ts_rank``'s own floats, caught up on the primary. When the filter is the scope
        and the expiry check at most and nothing in the namespace has expired (read in the
        catch-up statement), every ranked chunk passes: the best come back unlocated, with
        their record row ids, and the engine locates only those that can reach the page
        (its ``locate`` applies the whole filter). Otherwise the best ``limit`` are read
        with their records and the filter (where the search reads: a replica may serve it),
        then a wider probe when some failed. None when the index is not ready, a word is
        not one lexeme, or too many of its best fail the filter: SQL then ranks.
        """
        assert self.keyword_index is not None
        ki = self.keyword_index
        user = users[0] if users else None
        wide = max(limit * 4, KEYWORD_PROBE)
        with self._db.read("keyword index search") as pc:
            lexemes = self.terms.lexemes(pc, fts_words(match))
            if lexemes is None:
                return None
            got = ki.search(pc, lexemes, namespace, user, bool(users), limit)
            if got is None:
                return None
            ranked, expires = got
            if scope_only(node) and _nothing_expired(node, expires):
                return [ChunkHit(cid, rid, score_text(s), None) for cid, rid, s in ranked]
            # Some may fail the filter: the wider probe too, ranked now (a page of ``wide``
            # costs more to cut than one of ``limit``, where ties at the cut are many).
            got = ki.search(pc, lexemes, namespace, user, bool(users), wide)
            if got is None:
                return None
            ranked = got[0]
        where, params = compile_postgres(node)
        with self._db.read("keyword search", route=True) as c:
            for probe in (limit, wide):
                some = ranked[:probe]
                rows = c.execute(
                    "SELECT c.id, c.rid, r.id, r.version, c.start_pos, c.end_pos, "
                    "r.rid IS NOT NULL FROM unnest(%s::bigint[]) AS m(id) "
                    "JOIN chunks c ON c.id = m.id "
                    "LEFT JOIN records r ON r.rid = c.rid AND r.namespace = %s AND " + where,
                    ([cid for cid, _, _ in some], namespace, *params),
                    prepare=False,
                ).fetchall()
                found = {int(r[0]): r for r in rows}
                hits = []
                for cid, _, score in some:
                    r = found.get(cid)
                    if r is not None and r[6]:
                        hits.append(located_hit((cid, r[1], score_text(score), *r[2:6]), False))
                if len(hits) >= limit or len(some) < probe:
                    return hits[:limit]
        return None

    def _pruned(
        self,
        c: psycopg.Connection[Any],
        match: str,
        tsq: str,
        namespace: str,
        users: list[str],
        where: str,
        params: list[Any],
        limit: int,
    ) -> list[tuple[Any, ...]] | None:
        """The best ``limit`` matches ranked without the chunks that cannot reach them, or
        None (the caller ranks every match).

        Ranks the chunks matching the query without its commonest lexemes, with the whole
        query's ``ts_rank``; the page is exact when its last score is above what the left-out
        lexemes alone can score (:mod:`engramdb.stores.postgres.keyword_prune`), else one more
        statement leaves out only as many as that score allows. None when the scope has
        fewer than ``limit`` such matches, no lexeme may be left out, a record on the page
        fails the filter (expired), or the scope is a user's of at most
        ``prune_user_min_rows`` chunks: the caller's probe handles those.
        """
        if len(users) > 1:
            return None  # two different users: nothing matches, the probe says so at once
        if users:
            rows_in_scope = self.scopes.count(c, namespace, users[0], self._user_cap())
            if rows_in_scope <= self.prune_user_min_rows:
                # A small user's matches are few: ranking them all costs less than the
                # statements pruning takes (docs/tuning.md).
                return None
        else:
            rows_in_scope = self.scopes.count(c, namespace, None, self.ann_min_rows)
        terms = self.terms.terms(c, fts_words(match))
        if terms is None:
            return None
        n = len({t.lexeme for t in terms})
        out = first_out(terms, rows_in_scope, limit, self.first_leave_out, self.match_factor)
        columns = "m.id, m.rid, m.s, r.id, r.version, m.start_pos, m.end_pos"
        for _ in range(2):
            if not out:
                return None
            sub = words_tsquery([t.word for t in terms if t.lexeme not in out])
            matches, args = keyword_matches(tsq, namespace, users, sub)
            rows = c.execute(
                _probe_sql(matches, columns, where, limit),
                (*args, namespace, *params),
                prepare=False,
            ).fetchall()
            if len(rows) < limit or not all(r[7] for r in rows):
                return None
            allowed = allowed_out(n, float(rows[limit - 1][2]))
            if len(out) <= allowed:
                return rows
            out = left_out(terms, allowed)
        return None

    def chunk_rids(self, namespace: str, chunk_ids: list[int]) -> dict[int, int]:
        """Map chunk id -> its record's row id, for the chunks of the namespace that exist."""
        if not chunk_ids:
            return {}
        with self._db.read("locating search hits", route=True) as c:
            rows = c.execute(
                "SELECT id, rid FROM chunks WHERE id = ANY(%s) AND namespace = %s",
                (list(chunk_ids), namespace),
            ).fetchall()
        return {int(r[0]): int(r[1]) for r in rows}

    def locate(
        self, namespace: str, chunk_ids: list[int], node: Node | None
    ) -> dict[int, tuple[str, int, int, int]]:
        """Map chunk id -> (record id, version, start, end) for chunks passing the filter."""
        if not chunk_ids:
            return {}
        where, params = compile_postgres(node)
        with self._db.read("locating search hits", route=True) as c:
            rows = c.execute(
                "SELECT c.id, r.id, r.version, c.start_pos, c.end_pos FROM chunks c JOIN records r "
                "ON r.rid = c.rid WHERE c.id = ANY(%s) AND c.namespace = %s AND "
                f"r.namespace = %s AND {where}",
                (list(chunk_ids), namespace, namespace, *params),
            ).fetchall()
        return {int(r[0]): (r[1], int(r[2]), r[3], r[4]) for r in rows}

    def locate_whole(
        self, namespace: str, chunk_ids: list[int], node: Node | None
    ) -> dict[int, WholeHit]:
        """:meth:`locate`, with each chunk's record and answer kinds, in one statement (see
        ``Store.locate_whole``)."""
        if not chunk_ids:
            return {}
        where, params = compile_postgres(node)
        with self._db.read("reading search hits", route=True) as c:
            rows = c.execute(
                "SELECT c.id, c.start_pos, c.end_pos, coalesce(k.kinds, 0), "
                f"{COLS_TAGS_TEXT} FROM chunks c JOIN records r ON r.rid = c.rid "
                "LEFT JOIN record_answer_kinds k ON k.namespace = r.namespace "
                "AND k.record_id = r.id WHERE c.id = ANY(%s) AND c.namespace = %s AND "
                f"r.namespace = %s AND {where}",
                (list(chunk_ids), namespace, namespace, *params),
            ).fetchall()
        return {
            int(row[0]): WholeHit(
                (row[4 + ID_COL], int(row[4 + VERSION_COL]), row[1], row[2]),
                int(row[3]),
                functools.partial(row_to_record, row, 4),
            )
            for row in rows
        }


def _narrowable(node: Node | None) -> bool:
    """Whether the filter requires a tag or a metadata value (see :meth:`Search._narrow`):
    such searches rank in SQL, which starts from the passing records when they are few."""
    return any(
        (leaf.kind == "tags" and leaf.op in ("$eq", "$contains"))
        or (leaf.kind == "meta" and leaf.op == "$eq" and leaf.value is not None)
        for leaf in required_leaves(node)
    )


def _nothing_expired(node: Node | None, earliest: int | None) -> bool:
    """Whether no record of the namespace fails the filter's expiry checks, given its
    earliest ``expires_at`` (None: none expires)."""
    nows = [n.now_us for n in conjuncts(node) if isinstance(n, Live)]
    return earliest is None or not nows or earliest > max(nows)


def _probe_sql(matches: str, columns: str, where: str, limit: int) -> str:
    """The best ``limit`` of ``matches``, each with its record's location and whether the
    record passes the filter (``where``, for the namespace given after the matches' own
    arguments). The CTE is materialised so that the planner cannot start from records."""
    return (
        f"WITH m AS MATERIALIZED ({matches} ORDER BY s DESC, id LIMIT {int(limit)}) "
        f"SELECT {columns}, r.rid IS NOT NULL FROM m LEFT JOIN records r "
        f"ON r.rid = m.rid AND r.namespace = %s AND {where} ORDER BY m.s DESC, m.id"
    )
