"""Keyword search over the FTS5 index ``chunks_fts``, and rewriting a chunk's index text."""

from __future__ import annotations

import json
from typing import Any

from engramdb.query.filters import Node, required_equalities
from engramdb.stores.prepared import ChunkHit
from engramdb.stores.sqlite import gates
from engramdb.stores.sqlite.chunks import passing_rids
from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.filters import compile_sqlite
from engramdb.stores.sqlite.keys import SCOPE_FIELDS, scope_token

KEYWORD_PROBE = 400  # keyword matches ranked before their records are read (unscoped search)
# The keyword weights of chunks_fts's columns: a match on a scope token adds nothing to a
# score (FTS5 still counts the tokens in a row's length, which BM25 normalises by).
_BM25 = "bm25(chunks_fts, 1.0, 0.0)"


class KeywordSearch:
    """The keyword index's reads (ranked candidates) and its one kind of rewrite."""

    def __init__(self, db: Connections) -> None:
        self._db = db

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
        for field, value in sorted(scopes):
            match = f'({match}) AND scope:"{scope_token(namespace, field, value)}"'
        probe = max(limit * 4, KEYWORD_PROBE)
        with self._db.read("keyword search") as c:
            members = ""
            member_args: list[Any] = []
            rare = gates.rare_values(c, namespace, node)
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
            passed = passing_rids(c, namespace, [r[0] for r in ranked], node)
            hits = [ChunkHit(cid, passed[cid], -float(s)) for cid, s in ranked if cid in passed]
            # The probe is a prefix of the full order: its passing rows are the best ones.
            if len(hits) >= limit or len(ranked) < probe:
                return hits[:limit]
            where, params = compile_sqlite(node)
            rows = c.execute(
                f"SELECT chunks_fts.rowid, c.rid, {_BM25} AS s FROM chunks_fts "
                "JOIN chunks c ON c.id = chunks_fts.rowid JOIN records r ON r.rid = c.rid "
                f"WHERE chunks_fts MATCH ?{members} AND r.namespace = ? AND {where} "
                "ORDER BY s, chunks_fts.rowid LIMIT ?",
                (match, *member_args, namespace, *params, limit),
            ).fetchall()
        return [ChunkHit(r[0], r[1], -float(r[2])) for r in rows]

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
            c.executemany(
                "UPDATE chunks_fts SET body = ? WHERE rowid = ?",
                [(body, cid) for cid, body in texts if cid in live],
            )
