"""Keyword search over the FTS5 index ``chunks_fts``, and rewriting a chunk's index text."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

from engramdb.deadline import paused
from engramdb.query.filters import Cmp, Live, Node, conjuncts, required_equalities
from engramdb.stores.background import BackgroundWorker
from engramdb.stores.prepared import ChunkHit
from engramdb.stores.sqlite import gates, keyword_prune
from engramdb.stores.sqlite.chunks import passing_located
from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.filters import compile_sqlite, first_expiry
from engramdb.stores.sqlite.keys import SCOPE_FIELDS, scope_token
from engramdb.stores.sqlite.keyword_index import (
    KeywordIndex,
    behind,
    build,
    catch_up,
    fts_totals,
    load,
    save,
)
from engramdb.stores.sqlite.meta import read_meta

KEYWORD_PROBE = 400  # keyword matches ranked before their records are read (unscoped search)
INDEX_MIN_ROWS = 5_000  # keyword rows from which the derived index is built and used
# Matches FTS5 may rank for one unscoped search (see KeywordSearch._within_budget).
FTS5_MATCH_BUDGET = 200_000
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
# The keyword weights of chunks_fts's columns: a match on a scope token adds nothing to a
# score (FTS5 still counts the tokens in a row's length, which BM25 normalises by).
_BM25 = "bm25(chunks_fts, 1.0, 0.0)"


def match_words(match: str) -> list[str] | None:
    """The words of a MATCH expression of ``engine.keyword.match_expression``'s shape
    (quoted words joined by OR), or None for any other expression."""
    words = [w.replace('""', '"') for w in _QUOTED.findall(match)]
    if not words or match != " OR ".join(_quoted(w) for w in words):
        return None
    return words


def _quoted(word: str) -> str:
    """One word as an FTS5 phrase (the engine's MATCH expressions quote words so)."""
    return '"' + word.replace('"', '""') + '"'


def _matches(c: sqlite3.Connection, phrase: str, cap: int | None) -> int:
    """How many rows match one quoted word, counting no further than ``cap``."""
    (n,) = c.execute(
        "SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)",
        (phrase, -1 if cap is None else cap),
    ).fetchone()
    return int(n)


def _passes_every_row(c: sqlite3.Connection, namespace: str, node: Node | None) -> bool:
    """Whether every live row of the search's scope passes ``node``: it asks for the user
    scope and the default expiry check at most, and no record of the namespace has
    expired by then (one probe of the ``(namespace, expires_at)`` index)."""
    now: int | None = None
    for n in conjuncts(node):
        if isinstance(n, Live):
            now = n.now_us if now is None else max(now, n.now_us)
        elif not (isinstance(n, Cmp) and n.field == "user_id" and n.op == "$eq" and n.value):
            return False
    if now is None:
        return True
    first = first_expiry(c, namespace)
    return first is None or first > now


class IndexBuilder(BackgroundWorker):
    """Builds the derived keyword index off the search path, then hands it over; merges
    its segments as catch-ups add them."""

    thread_name = "engramdb-keyword-index"

    def __init__(self, owner: KeywordSearch) -> None:
        super().__init__()
        self.owner = owner
        self.failures = 0
        self._building: sqlite3.Connection | None = None  # the build's own connection

    def stop(self) -> None:
        """Stop, interrupting a build in progress: over a million rows a build takes
        minutes, and a closing store (a service shutting down) must not wait for it."""
        self.stopped = True
        conn = self._building
        if conn is not None:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed meanwhile
                conn.interrupt()
        super().stop()

    def _run(self) -> None:
        while not self.stopped:
            if not self.wake.wait(timeout=1.0):
                return
            self.wake.clear()
            if self.stopped or self.failures >= 3:
                return
            if self.owner._index is not None:
                # Kicked by a catch-up that left too many segments, or by searches that
                # ran while the index was being built (a second build would only compete
                # with searches for minutes).
                self.owner.merge_segments(lambda: self.stopped)
                continue
            try:
                index, ok = self._load_or_build()
            except Exception:  # noqa: BLE001 - a failed build leaves searches on FTS5
                self.failures += 1
                continue
            if ok and not self.stopped:
                with self.owner._lock:
                    self.owner._index = index
                # Outside the lock (searches go on meanwhile): the pruning kernels and the
                # large segments' bounds, which no search should wait for.
                keyword_prune.prepare(index, lambda: self.stopped)
            else:
                self.failures += 1

    def _load_or_build(self) -> tuple[KeywordIndex, bool]:
        """The saved index of the last close (once per process; the first search catches
        it up and checks it), else a fresh build."""
        if not self.owner._sidecar_tried:
            self.owner._sidecar_tried = True
            saved = load(self.owner._sidecar)
            if saved is not None:
                return saved, True
        return self._build()

    def _build(self) -> tuple[KeywordIndex, bool]:
        """Build in one snapshot on a connection of its own: the build reads FTS5's
        vocabulary through a temporary virtual table, which the store's query-only readers
        may not create."""
        path = self.owner._db.path
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._building = conn
        try:
            if self.stopped:  # stopped before the connection could be interrupted
                raise sqlite3.OperationalError("interrupted")
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("BEGIN")
            epoch = read_meta(conn, "index_epoch") or ""
            index = build(conn, epoch)
            ok = fts_totals(conn) == (index.n_rows, index.n_tokens)
            conn.execute("COMMIT")
            return index, ok
        finally:
            self._building = None
            conn.close()


class KeywordSearch:
    """The keyword index's reads (ranked candidates) and its one kind of rewrite.

    Above ``min_rows`` keyword rows, candidates come from the derived index
    (:mod:`~engramdb.stores.sqlite.keyword_index`), which ranks exactly as FTS5 does
    without scoring every match; FTS5 answers until it is built, and whenever a search
    falls outside what it covers (a thread scope, a filter too narrow for the probe).
    """

    def __init__(
        self,
        db: Connections,
        min_rows: int = INDEX_MIN_ROWS,
        match_budget: int = FTS5_MATCH_BUDGET,
    ) -> None:
        self._db = db
        self._min_rows = min_rows
        self._match_budget = match_budget
        self._index: KeywordIndex | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._builder = IndexBuilder(self)
        self.answered = 0  # searches the derived index answered (for tests and stats)
        self._sidecar = db.path.with_name(db.path.name + ".kindex")
        self._sidecar_tried = False
        self._builder_waits = False  # the builder's thread wants the lock (see _acquire)
        db.after_fork(self._forget_inherited)

    def _forget_inherited(self) -> None:
        """In a forked child: the parent's index may be mid-change under a lock no thread
        here will release, and its builder thread does not exist here."""
        self._index = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._builder = IndexBuilder(self)
        self._builder_waits = False

    def persist(self) -> None:
        """Stop the builder and save the index beside the database (best effort: without
        it the next open builds it again)."""
        self._builder.stop()
        with self._lock:
            index = self._index
            if index is None:
                return
            with contextlib.suppress(OSError):
                save(index, self._sidecar)

    def stop(self) -> None:
        """Stop the index builder (before the store closes)."""
        self._builder.stop()

    def merge_segments(self, stopped: Callable[[], bool]) -> None:
        """Merge the index's segments while a merge is due (the builder's thread): planned
        and finished under the lock, merged without it (see ``KeywordIndex.plan_merge``)."""
        while not stopped():
            index = self._index
            if index is None:
                return
            with self._builder_locked():
                plan = index.plan_merge() if self._index is index else None
            if plan is None:
                return
            try:
                merged = plan.merge()
            except Exception:  # noqa: BLE001 - out of memory, say: the segments stay
                with self._builder_locked():
                    index.abandon_merge()
                return
            with self._builder_locked():
                if self._index is not index:
                    return  # rebuilt meanwhile: the merge is of an index nobody reads
                index.finish_merge(plan, merged)
            # Outside the lock, as after a build: the merged segment's pruning bounds.
            keyword_prune.prepare(index, stopped)

    @contextlib.contextmanager
    def _builder_locked(self) -> Iterator[None]:
        """The lock, taken by the builder's thread; searches meanwhile wait for it instead
        of falling back to FTS5, since what the builder does under it is short."""
        self._builder_waits = True
        try:
            with self._lock:
                yield
        finally:
            self._builder_waits = False

    def _acquire(self) -> bool:
        """Take the lock for a search, or False when a catch-up holds it (FTS5 answers)."""
        if self._lock.acquire(blocking=False):
            return True
        if self._builder_waits:
            self._lock.acquire()
            return True
        # The builder may have let go just now: one more try before falling back.
        return self._lock.acquire(blocking=False)

    def _derived(
        self,
        c: sqlite3.Connection,
        namespace: str,
        words: list[str],
        user: str | None,
        scoped: bool,
        probe: int,
    ) -> list[tuple[int, float]] | None:
        """The derived index's best ``probe`` rows, caught up in ``c``'s snapshot; None
        when it cannot answer (not built yet, busy, or a word it does not cover)."""
        if not self._acquire():
            return None  # a catch-up or hand-over in progress: FTS5 answers this one
        try:
            index = self._index
            dv = c.execute("PRAGMA data_version").fetchone()[0]
            if index is None:
                if getattr(self._local, "checked", None) != dv:
                    self._local.checked = dv
                    totals = fts_totals(c)
                    if totals is not None and totals[0] >= self._min_rows:
                        self._builder.kick()
                return None
            if getattr(self._local, "seen", None) != (id(index), dv):
                epoch = read_meta(c, "index_epoch") or ""
                if epoch == index.epoch and behind(index, c):
                    return None
                try:
                    with paused():  # shared work, kept for later searches: not this one's
                        fresh = epoch == index.epoch and catch_up(index, c)
                except sqlite3.Error:
                    fresh = False  # possibly half caught up: dropped, FTS5 answers
                if not fresh:
                    self._index = None
                    self._builder.kick()
                    return None
                self._local.seen = (id(index), dv)
                if index.merge_due:
                    self._builder.kick()
            tids = index.term_ids(words)
            if tids is None:
                return None
            return index.search(tids, namespace, user, scoped, probe)
        finally:
            self._lock.release()

    def keyword_candidates(
        self, namespace: str, match: str, node: Node | None, limit: int
    ) -> list[ChunkHit]:
        """Return the best chunks by BM25 (negated so that higher is better).

        When the filter requires a user or a thread, the MATCH requires its scope tokens,
        so FTS5 walks the intersection of the words with that scope's chunks. The best
        ``KEYWORD_PROBE`` matches (or 4x ``limit``) are ranked in FTS5 alone, and only they
        meet their records and the filter: joining every match first was most of the cost
        of a keyword search over a large namespace (docs/tuning.md). When too
        few of them pass the filter (another namespace dominates, or a narrow filter) the
        whole join runs. When the filter requires a rare tag or metadata value (see
        gates.rare_values), only its records' chunks are ranked: FTS5 still walks the words'
        lists but scores just the members instead of every match.
        The unary ``+`` keeps the membership test out of FTS5, which would otherwise run
        the whole query once per listed rowid (seconds for a thousand).
        """
        if not match:
            return []
        scopes = required_equalities(node, SCOPE_FIELDS)
        probe = max(limit * 4, KEYWORD_PROBE)
        words = match_words(match)
        if words is not None and all(f == "user_id" for f, _ in scopes) and len(scopes) <= 1:
            user = next(iter(scopes))[1] if scopes else None
            with self._db.read("keyword search") as c:
                if _passes_every_row(c, namespace, node):
                    # The index holds exactly the scope's rows and the filter asks nothing
                    # more of them: its best are the answer, left for the caller to locate
                    # (a hybrid search locates both sides' candidates in one read).
                    ranked = self._derived(c, namespace, words, user, bool(scopes), limit)
                    if ranked is not None:
                        self.answered += 1
                        return [ChunkHit(cid, 0, s) for cid, s in ranked]
                    sizes: tuple[int, ...] = ()  # the index cannot answer now: FTS5 does
                else:
                    # The filter's other clauses (expiry at least) rarely drop any: a probe
                    # just above the limit usually suffices, and reading the records of 400
                    # rows cost more than ranking them.
                    sizes = (limit + limit // 4 + 8, probe)
                for size in sizes:
                    ranked = self._derived(c, namespace, words, user, bool(scopes), size)
                    if ranked is None:
                        break
                    passed = passing_located(c, namespace, [r[0] for r in ranked], node)
                    hits = [
                        ChunkHit(cid, passed[cid][0], s, passed[cid][1])
                        for cid, s in ranked
                        if cid in passed
                    ]
                    # As below: the probe is a prefix of the full order.
                    if len(hits) >= limit or len(ranked) < size:
                        self.answered += 1
                        return hits[:limit]
        for field, value in sorted(scopes):
            match = f'({match}) AND scope:"{scope_token(namespace, field, value)}"'
        with self._db.read("keyword search") as c:
            members = ""
            member_args: list[Any] = []
            rare = gates.rare_values(c, namespace, node)
            if rare is None and not scopes and words is not None:
                match = self._within_budget(c, words, match)
            if rare is not None:
                rids, member_args = rare.rids(namespace)
                members = (
                    f" AND +chunks_fts.rowid IN (SELECT c.id FROM ({rids}) t CROSS JOIN "
                    "chunks c ON c.rid = t.rid)"
                )
            ranked = c.execute(
                f"SELECT rowid, {_BM25} AS s FROM chunks_fts WHERE chunks_fts MATCH ?{members} "
                "ORDER BY s, rowid LIMIT ?",
                (match, *member_args, probe),
            ).fetchall()
            passed = passing_located(c, namespace, [r[0] for r in ranked], node)
            hits = [
                ChunkHit(cid, passed[cid][0], -float(s), passed[cid][1])
                for cid, s in ranked
                if cid in passed
            ]
            # The probe is a prefix of the full order: its passing rows are the best ones.
            if len(hits) >= limit or len(ranked) < probe:
                return hits[:limit]
            where, params = compile_sqlite(node)
            rows = c.execute(
                f"SELECT chunks_fts.rowid, c.rid, {_BM25} AS s, r.id, r.version, c.start, "
                "c.end FROM chunks_fts "
                "JOIN chunks c ON c.id = chunks_fts.rowid JOIN records r ON r.rid = c.rid "
                f"WHERE chunks_fts MATCH ?{members} AND r.namespace = ? AND {where} "
                "ORDER BY s, chunks_fts.rowid LIMIT ?",
                (match, *member_args, namespace, *params, limit),
            ).fetchall()
        return [ChunkHit(r[0], r[1], -float(r[2]), (r[3], r[4], r[5], r[6])) for r in rows]

    def _within_budget(self, c: sqlite3.Connection, words: list[str], match: str) -> str:
        """``match`` without its commonest words when FTS5 would otherwise rank more than
        the budget's matches (the rarest word is always kept).

        FTS5 scores every match of an unscoped query before it can sort them; over a
        large store the common words' matches take longer than a search's time budget.
        The derived index answers such searches exactly; this bounds the ones FTS5 answers
        meanwhile (while it is built after an open or a bulk load). Counting a word's
        matches reads only its posting list, stopping past the budget. The words kept
        score exactly as in the full query (bm25 sums independent terms), so the answer is
        the full ranking minus the commonest words' small weights; the vector side of a
        hybrid search still sees every row.
        """
        totals = fts_totals(c)
        if totals is not None and totals[0] * len(words) <= self._match_budget:
            return match  # cannot exceed the budget
        phrases = [_quoted(w) for w in words]
        cap = self._match_budget + 1
        counted = sorted((_matches(c, p, cap), p) for p in phrases)
        if counted[0][0] >= cap:
            # Every word is over the budget. The rarest still stays, so a query of common
            # words only still gets an answer, ranked over that one word's matches; the
            # capped counts cannot tell which word it is, so they are redone in full.
            counted = sorted((_matches(c, p, None), p) for p in phrases)
        kept = {counted[0][1]}
        spent = counted[0][0]
        for n, phrase in counted[1:]:
            if spent + n > self._match_budget:
                break
            kept.add(phrase)
            spent += n
        if len(kept) == len(counted):
            return match
        # In the query's order: FTS5 sums the phrases' scores in that order.
        return " OR ".join(p for p in phrases if p in kept)

    def set_index_texts(self, namespace: str, texts: list[tuple[int, str]]) -> None:
        """Rewrite the keyword-index text of chunks (skipping chunks deleted meanwhile)."""
        if not texts:
            return
        with self._db.write("re-indexing a thread", [namespace]) as c:
            # CROSS JOIN pins the join order, the given chunks first: with a plain JOIN the
            # planner walked the namespace's records, a cost per message growing with the
            # store.
            live = {
                r[0]
                for r in c.execute(
                    "SELECT c.id FROM chunks c CROSS JOIN records r ON r.rid = c.rid WHERE "
                    "c.id IN (SELECT value FROM json_each(?)) AND r.namespace = ?",
                    (json.dumps([cid for cid, _ in texts]), namespace),
                )
            }
            rows = [(body, cid) for cid, body in texts if cid in live]
            c.executemany("UPDATE chunks_fts SET body = ? WHERE rowid = ?", rows)
            # The derived keyword index re-reads rows named here (same rowid, new tokens).
            c.executemany("INSERT INTO keyword_log(chunk_id) VALUES (?)", [(r[1],) for r in rows])
