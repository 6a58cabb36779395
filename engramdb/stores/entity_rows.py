"""The entity tables' SQL, shared by both stores (migration 0014 made the same tables).

Entities, mentions, relations and their evidence are derived from record texts; this module
writes an extraction in place of a record's previous one and answers the entity reads.
Each function takes an open connection (``sqlite3`` or ``psycopg``: both have ``execute``
returning a cursor) and runs inside the caller's transaction; the stores own the
transactions. Statements are written with ``?`` and turned into ``%s`` for PostgreSQL;
a list parameter is bound whole (``json_each`` in SQLite, ``ANY`` in PostgreSQL), never
spliced.

Aliases: an entity joined to another keeps its own row (its mentions and relations stay
where they were found) and points at its canonical entity (``canonical_id``, always one
level deep); reads group by the canonical entity. Joining and un-joining are one column
each, logged in ``entity_links``, which is what makes the alias step reversible.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from engramdb.models import Entity, EntityGraph, Extraction, Mention, Relation
from engramdb.stores.prepared import AliasJoin, PendingText, ScopeEntity

MAX_GRAPH_ENTITIES = 500  # a subgraph stops growing past this many entities


class EntityRows:
    """The entity statements in one dialect (``sqlite`` or ``postgresql``)."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    # ------------------------------------------------------------------ dialect

    def q(self, sql: str) -> str:
        """``sql`` with its ``?`` placeholders in this dialect."""
        return sql.replace("?", "%s") if self.pg else sql

    def any_of(self, column: str) -> str:
        """``column`` is one of a list bound as one parameter (see :meth:`array`)."""
        return f"{column} = ANY(?)" if self.pg else f"{column} IN (SELECT value FROM json_each(?))"

    def array(self, values: Iterable[Any]) -> Any:
        """A list as the one parameter :meth:`any_of` expects."""
        return list(values) if self.pg else json.dumps(list(values))

    def run(self, c: Any, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Execute one statement; its rows (none for a statement without a result)."""
        cur = c.execute(self.q(sql), args)
        return list(cur.fetchall()) if cur.description is not None else []

    # ------------------------------------------------------------------ the queue

    def pending(
        self, c: Any, namespace: str | None, user_id: str | None, limit: int
    ) -> list[PendingText]:
        """Queued records (oldest first), of one scope when given; failed ones excluded."""
        where, args = ["q.failed = ?"], [False]
        if namespace is not None:
            where.append("r.namespace = ?")
            args.append(namespace)  # type: ignore[arg-type]
        if user_id is not None:
            where.append("r.user_id = ?")
            args.append(user_id)  # type: ignore[arg-type]
        rows = self.run(
            c,
            "SELECT q.seq, r.rid, r.namespace, r.id, r.user_id, r.text FROM entity_queue q "
            f"JOIN records r ON r.rid = q.rid WHERE {' AND '.join(where)} "
            "ORDER BY q.seq LIMIT ?",
            (*args, limit),
        )
        return [
            PendingText(int(s), int(rid), ns, rec, uid, text) for s, rid, ns, rec, uid, text in rows
        ]

    def counts(self, c: Any, namespace: str | None) -> dict[str, int]:
        """Pending and failed extractions, and the derived rows, of a namespace (or all)."""
        if namespace is None:
            queue = self.run(
                c,
                "SELECT coalesce(sum(CASE WHEN failed THEN 0 ELSE 1 END), 0), "
                "coalesce(sum(CASE WHEN failed THEN 1 ELSE 0 END), 0) FROM entity_queue",
            )[0]
            ents = self.run(c, "SELECT count(*) FROM entities WHERE canonical_id IS NULL")[0][0]
            rels = self.run(c, "SELECT count(*) FROM relations")[0][0]
            mentions = self.run(c, "SELECT count(*) FROM entity_mentions")[0][0]
        else:
            queue = self.run(
                c,
                "SELECT coalesce(sum(CASE WHEN q.failed THEN 0 ELSE 1 END), 0), "
                "coalesce(sum(CASE WHEN q.failed THEN 1 ELSE 0 END), 0) FROM entity_queue q "
                "JOIN records r ON r.rid = q.rid WHERE r.namespace = ?",
                (namespace,),
            )[0]
            ents = self.run(
                c,
                "SELECT count(*) FROM entities WHERE namespace = ? AND canonical_id IS NULL",
                (namespace,),
            )[0][0]
            rels = self.run(c, "SELECT count(*) FROM relations WHERE namespace = ?", (namespace,))[
                0
            ][0]
            mentions = self.run(
                c, "SELECT count(*) FROM entity_mentions WHERE namespace = ?", (namespace,)
            )[0][0]
        return {
            "pending": int(queue[0]),
            "failed": int(queue[1]),
            "entities": int(ents),
            "relations": int(rels),
            "mentions": int(mentions),
        }

    def fail(self, c: Any, item: PendingText, error: str) -> None:
        """Park a record whose extraction failed (``doctor --repair`` queues it again)."""
        self.run(
            c,
            "UPDATE entity_queue SET failed = ?, error = ? WHERE rid = ? AND seq <= ?",
            (True, error[:500], item.rid, item.seq),
        )

    def retry_failed(self, c: Any) -> int:
        """Queue every failed extraction again; return how many."""
        n = self.run(c, "SELECT count(*) FROM entity_queue WHERE failed = ?", (True,))[0][0]
        self.run(
            c, "UPDATE entity_queue SET failed = ?, error = NULL WHERE failed = ?", (False, True)
        )
        return int(n)

    # ------------------------------------------------------------------ writing an extraction

    def write(self, c: Any, item: PendingText, found: Extraction, now: int) -> bool:
        """Replace a record's mentions, relation evidence and answer kinds by ``found``;
        dequeue it.

        Skipped (only dequeued) when the record's text changed since it was read (the change
        queued it again), when it is gone, or when another extractor took it first. The new
        rows go in before the old ones go out, so an entity found again keeps its id.
        Returns whether anything was written.
        """
        # PostgreSQL: the row lock serialises two extractors of one record (the second then
        # finds the queue row gone) and makes a concurrent delete wait for this commit.
        lock = " FOR UPDATE" if self.pg else ""
        row = self.run(c, f"SELECT text FROM records WHERE rid = ?{lock}", (item.rid,))
        taken = self.run(
            c,
            "DELETE FROM entity_queue WHERE rid = ? AND seq <= ? RETURNING seq",
            (item.rid, item.seq),
        )
        if not taken or not row or row[0][0] != item.text:
            return False
        ns = item.namespace
        old_mentions = self.run(
            c,
            "SELECT id, entity_id FROM entity_mentions WHERE namespace = ? AND record_id = ?",
            (ns, item.record_id),
        )
        old_evidence = self.run(
            c,
            "SELECT id, relation_id FROM relation_evidence WHERE namespace = ? AND record_id = ?",
            (ns, item.record_id),
        )
        ids: list[int] = []
        for e in found.entities:
            got = self.run(
                c,
                "INSERT INTO entities(namespace, user_id, name, norm, type, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, user_id, norm, type) "
                "DO UPDATE SET norm = excluded.norm RETURNING id",
                (ns, item.user_id, e.name, e.norm, e.type, now),
            )
            ids.append(int(got[0][0]))
            self.run(
                c,
                "INSERT INTO entity_mentions(entity_id, namespace, record_id, text, start, "
                "end_pos, sentence, confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ids[-1], ns, item.record_id, e.name, e.start, e.end, e.sentence, e.confidence),
            )
        for r in found.relations:
            source, target = ids[r.source], ids[r.target]
            if source == target:
                continue
            got = self.run(
                c,
                "INSERT INTO relations(namespace, user_id, source_id, target_id, type) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (source_id, target_id, type) "
                "DO UPDATE SET type = excluded.type RETURNING id",
                (ns, item.user_id, source, target, r.type),
            )
            self.run(
                c,
                "INSERT INTO relation_evidence(relation_id, namespace, record_id, sentence, "
                "confidence) VALUES (?, ?, ?, ?, ?)",
                (int(got[0][0]), ns, item.record_id, r.sentence, r.confidence),
            )
        self.run(
            c,
            "INSERT INTO record_answer_kinds(namespace, record_id, kinds) VALUES (?, ?, ?) "
            "ON CONFLICT (namespace, record_id) DO UPDATE SET kinds = excluded.kinds",
            (ns, item.record_id, found.answer_kinds),
        )
        if old_evidence:
            self.run(
                c,
                f"DELETE FROM relation_evidence WHERE {self.any_of('id')}",
                (self.array(r[0] for r in old_evidence),),
            )
            self.drop_unevidenced_relations(c, {int(r[1]) for r in old_evidence})
        if old_mentions:
            self.run(
                c,
                f"DELETE FROM entity_mentions WHERE {self.any_of('id')}",
                (self.array(r[0] for r in old_mentions),),
            )
            self.drop_unmentioned_entities(c, {int(r[1]) for r in old_mentions})
        return True

    def drop_unevidenced_relations(self, c: Any, ids: set[int]) -> None:
        """Delete those of ``ids`` no record states any more."""
        self.run(
            c,
            f"DELETE FROM relations WHERE {self.any_of('id')} AND NOT EXISTS "
            "(SELECT 1 FROM relation_evidence v WHERE v.relation_id = relations.id)",
            (self.array(ids),),
        )

    def drop_unmentioned_entities(self, c: Any, ids: set[int]) -> None:
        """Delete those of ``ids`` no record mentions any more (their relations cascade)."""
        self.run(
            c,
            f"DELETE FROM entities WHERE {self.any_of('id')} AND NOT EXISTS "
            "(SELECT 1 FROM entity_mentions m WHERE m.entity_id = entities.id)",
            (self.array(ids),),
        )

    # ------------------------------------------------------------------ aliases

    def join_aliases(
        self, c: Any, items: list[tuple[PendingText, Extraction]], join: AliasJoin, now: int
    ) -> int:
        """Run the alias step in each (namespace, user) scope where ``items`` found a person,
        in the caller's transaction; return how many entities were joined."""
        scopes = {
            (p.namespace, p.user_id)
            for p, x in items
            if any(e.type == "PERSON" for e in x.entities)
        }
        joined = 0
        for ns, uid in sorted(scopes):
            for a, b, why in join(self.scope_entities(c, ns, uid, "PERSON")):
                joined += self.link(c, ns, a, b, why, now)
        return joined

    def scope_entities(self, c: Any, namespace: str, user_id: str, type_: str) -> list[ScopeEntity]:
        """Every entity of one type in one (namespace, user) scope."""
        rows = self.run(
            c,
            "SELECT id, name, norm, type, canonical_id, pinned FROM entities "
            "WHERE namespace = ? AND user_id = ? AND type = ? ORDER BY id",
            (namespace, user_id, type_),
        )
        return [
            ScopeEntity(int(i), n, nm, t, None if k is None else int(k), bool(p))
            for i, n, nm, t, k, p in rows
        ]

    def link(
        self, c: Any, namespace: str, entity_id: int, target_id: int, reason: str, now: int
    ) -> bool:
        """Join an entity (and its own aliases) to ``target_id``, logged; False when either is
        missing, the target is itself an alias, or the entity was separated by hand."""
        rows = self.run(
            c,
            f"SELECT id, name, canonical_id, pinned FROM entities WHERE namespace = ? "
            f"AND {self.any_of('id')}",
            (namespace, self.array([entity_id, target_id])),
        )
        by_id = {int(r[0]): r for r in rows}
        if entity_id not in by_id or target_id not in by_id or by_id[target_id][2] is not None:
            return False
        if by_id[entity_id][3] or by_id[entity_id][2] == target_id:
            return False
        self.run(
            c,
            "UPDATE entities SET canonical_id = ? "
            "WHERE namespace = ? AND (id = ? OR canonical_id = ?)",
            (target_id, namespace, entity_id, entity_id),
        )
        self.run(
            c,
            "INSERT INTO entity_links(entity_id, namespace, op, target_id, target_name, reason, at)"
            " VALUES (?, ?, 'link', ?, ?, ?, ?)",
            (entity_id, namespace, target_id, by_id[target_id][1], reason, now),
        )
        return True

    def unlink(self, c: Any, namespace: str, entity_id: int, now: int) -> int | None:
        """Separate an alias from its canonical entity for good (the alias step leaves it
        alone afterwards); returns the entity it was joined to, None when it was not."""
        rows = self.run(
            c,
            "SELECT e.canonical_id, t.name FROM entities e LEFT JOIN entities t "
            "ON t.id = e.canonical_id WHERE e.namespace = ? AND e.id = ?",
            (namespace, entity_id),
        )
        if not rows or rows[0][0] is None:
            return None
        target, name = int(rows[0][0]), rows[0][1]
        self.run(
            c,
            "UPDATE entities SET canonical_id = NULL, pinned = ? WHERE id = ?",
            (True, entity_id),
        )
        self.run(
            c,
            "INSERT INTO entity_links(entity_id, namespace, op, target_id, target_name, reason, at)"
            " VALUES (?, ?, 'unlink', ?, ?, 'asked', ?)",
            (entity_id, namespace, target, name, now),
        )
        return target

    def links(self, c: Any, namespace: str, entity_id: int) -> list[dict[str, Any]]:
        """The alias log of an entity and of the entities joined to it, oldest first."""
        rows = self.run(
            c,
            "SELECT l.seq, l.entity_id, e.name, l.op, l.target_id, l.target_name, l.reason, l.at "
            "FROM entity_links l JOIN entities e ON e.id = l.entity_id WHERE l.namespace = ? "
            "AND (l.entity_id = ? OR l.target_id = ?) ORDER BY l.seq",
            (namespace, entity_id, entity_id),
        )
        keys = ("seq", "entity_id", "name", "op", "target_id", "target_name", "reason", "at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # ------------------------------------------------------------------ reads

    def _aliases(self, c: Any, ids: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {i: [] for i in ids}
        if ids:
            for root, name in self.run(
                c,
                f"SELECT canonical_id, name FROM entities WHERE {self.any_of('canonical_id')} "
                "ORDER BY id",
                (self.array(ids),),
            ):
                out[int(root)].append(name)
        return out

    def _entities(self, c: Any, rows: list[Any]) -> list[Entity]:
        aliases = self._aliases(c, [int(r[0]) for r in rows])
        return [
            Entity(
                id=int(i),
                namespace=ns,
                user_id=uid or None,
                name=name,
                type=t,
                aliases=aliases[int(i)],
                mention_count=int(n),
            )
            for i, ns, uid, name, t, n in rows
        ]

    _ROOTS = "SELECT id, coalesce(canonical_id, id) FROM entities WHERE "
    _COUNT = (
        "(SELECT count(*) FROM entity_mentions m JOIN entities x ON x.id = m.entity_id "
        "WHERE x.id = e.id OR x.canonical_id = e.id)"
    )

    def list_entities(
        self,
        c: Any,
        namespace: str,
        user_id: str | None,
        query: str | None,
        type_: str | None,
        limit: int,
    ) -> list[Entity]:
        """Canonical entities, most mentioned first; ``query`` matches names and aliases."""
        where, args = ["e.namespace = ?", "e.canonical_id IS NULL"], [namespace]
        if user_id is not None:
            where.append("e.user_id = ?")
            args.append(user_id)
        if type_ is not None:
            where.append("e.type = ?")
            args.append(type_)
        if query:
            like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(
                "(e.norm LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM entities a "
                "WHERE a.canonical_id = e.id AND a.norm LIKE ? ESCAPE '\\'))"
            )
            args += [like, like]
        rows = self.run(
            c,
            f"SELECT e.id, e.namespace, e.user_id, e.name, e.type, {self._COUNT} AS n "
            f"FROM entities e WHERE {' AND '.join(where)} ORDER BY n DESC, e.id LIMIT ?",
            (*args, limit),
        )
        return self._entities(c, rows)

    def root_of(self, c: Any, namespace: str, entity_id: int) -> int | None:
        """The canonical entity of ``entity_id`` (itself when canonical), None if absent."""
        rows = self.run(
            c,
            "SELECT id, canonical_id FROM entities WHERE namespace = ? AND id = ?",
            (namespace, entity_id),
        )
        if not rows:
            return None
        return int(rows[0][1] if rows[0][1] is not None else rows[0][0])

    def get_entity(self, c: Any, namespace: str, entity_id: int, mentions: int) -> Entity | None:
        """One canonical entity (an alias's id leads to it) with up to ``mentions`` mentions."""
        root = self.root_of(c, namespace, entity_id)
        if root is None:
            return None
        rows = self.run(
            c,
            f"SELECT e.id, e.namespace, e.user_id, e.name, e.type, {self._COUNT} "
            "FROM entities e WHERE e.id = ?",
            (root,),
        )
        entity = self._entities(c, rows)[0]
        entity.mentions = [
            Mention(rec, text, int(s), int(e), sent, float(conf))
            for rec, text, s, e, sent, conf in self.run(
                c,
                "SELECT m.record_id, m.text, m.start, m.end_pos, m.sentence, m.confidence "
                "FROM entity_mentions m JOIN entities x ON x.id = m.entity_id "
                "WHERE m.namespace = ? AND (x.id = ? OR x.canonical_id = ?) ORDER BY m.id LIMIT ?",
                (namespace, root, root, mentions),
            )
        ]
        return entity

    def records_about(self, c: Any, namespace: str, entity_id: int, limit: int) -> list[str]:
        """Ids of the records that mention an entity (or one of its aliases), newest first."""
        root = self.root_of(c, namespace, entity_id)
        if root is None:
            return []
        rows = self.run(
            c,
            "SELECT DISTINCT m.record_id FROM entity_mentions m JOIN entities x "
            "ON x.id = m.entity_id WHERE m.namespace = ? AND (x.id = ? OR x.canonical_id = ?) "
            "ORDER BY m.record_id DESC LIMIT ?",
            (namespace, root, root, limit),
        )
        return [r[0] for r in rows]

    def _members(self, c: Any, namespace: str, roots: set[int]) -> dict[int, int]:
        """member id -> canonical id, for canonical entities and everything joined to them."""
        rows = self.run(
            c,
            f"SELECT id, coalesce(canonical_id, id) FROM entities WHERE namespace = ? AND "
            f"({self.any_of('id')} OR {self.any_of('canonical_id')})",
            (namespace, self.array(roots), self.array(roots)),
        )
        return {int(a): int(b) for a, b in rows}

    def _relations(
        self, c: Any, namespace: str, rel_rows: list[Any], root: dict[int, int]
    ) -> list[Relation]:
        """Relations between canonical entities (parallel edges of aliases merged)."""
        if not rel_rows:
            return []
        ev: dict[int, list[Any]] = {}
        for rid, rec, sent, conf in self.run(
            c,
            "SELECT relation_id, record_id, sentence, confidence FROM relation_evidence "
            f"WHERE {self.any_of('relation_id')} ORDER BY id",
            (self.array(int(r[0]) for r in rel_rows),),
        ):
            ev.setdefault(int(rid), []).append((rec, sent, float(conf)))
        merged: dict[tuple[int, int, str], Relation] = {}
        for rid, src, dst, type_ in rel_rows:
            key = (root.get(int(src), int(src)), root.get(int(dst), int(dst)), type_)
            rel = merged.get(key)
            if rel is None:
                rel = merged[key] = Relation(int(rid), key[0], key[1], type_, 0.0)
            for rec, sent, conf in ev.get(int(rid), []):
                if rec not in rel.record_ids:
                    rel.record_ids.append(rec)
                if sent not in rel.evidence:
                    rel.evidence.append(sent)
                rel.confidence = max(rel.confidence, conf)
        return [r for r in merged.values() if r.source_id != r.target_id]

    def graph(
        self,
        c: Any,
        namespace: str,
        entity_id: int,
        depth: int,
        types: list[str] | None,
    ) -> EntityGraph | None:
        """The subgraph within ``depth`` hops of an entity (None when it does not exist)."""
        start = self.root_of(c, namespace, entity_id)
        if start is None:
            return None
        seen, frontier = {start}, {start}
        root: dict[int, int] = {}
        rels: dict[int, Any] = {}
        type_sql = f" AND {self.any_of('type')}" if types else ""
        type_arg = (self.array(types),) if types else ()
        for _ in range(depth):
            members = self._members(c, namespace, frontier)
            root.update(members)
            rows = self.run(
                c,
                "SELECT id, source_id, target_id, type FROM relations WHERE namespace = ? AND "
                f"({self.any_of('source_id')} OR {self.any_of('target_id')}){type_sql}",
                (namespace, self.array(members), self.array(members), *type_arg),
            )
            ends = {int(x) for r in rows for x in (r[1], r[2])} - set(root)
            if ends:
                for a, b in self.run(
                    c,
                    self._ROOTS + self.any_of("id"),
                    (self.array(ends),),
                ):
                    root[int(a)] = int(b)
            for r in rows:
                rels[int(r[0])] = r
            frontier = {root[int(x)] for r in rows for x in (r[1], r[2])} - seen
            seen |= frontier
            if not frontier or len(seen) >= MAX_GRAPH_ENTITIES:
                break
        rows = self.run(
            c,
            f"SELECT e.id, e.namespace, e.user_id, e.name, e.type, {self._COUNT} "
            f"FROM entities e WHERE {self.any_of('e.id')} ORDER BY e.id",
            (self.array(seen),),
        )
        relations = self._relations(c, namespace, list(rels.values()), root)
        return EntityGraph(self._entities(c, rows), relations)

    def record_graphs(
        self, c: Any, namespace: str, record_ids: list[str]
    ) -> dict[str, EntityGraph]:
        """Each record's canonical entities and the relations it states."""
        out = {r: EntityGraph() for r in record_ids}
        if not record_ids:
            return out
        pairs = self.run(
            c,
            "SELECT DISTINCT m.record_id, coalesce(x.canonical_id, x.id) FROM entity_mentions m "
            f"JOIN entities x ON x.id = m.entity_id WHERE m.namespace = ? AND "
            f"{self.any_of('m.record_id')}",
            (namespace, self.array(record_ids)),
        )
        roots = {int(p[1]) for p in pairs}
        if not roots:
            return out
        rows = self.run(
            c,
            f"SELECT e.id, e.namespace, e.user_id, e.name, e.type, {self._COUNT} "
            f"FROM entities e WHERE {self.any_of('e.id')} ORDER BY e.id",
            (self.array(roots),),
        )
        entities = {e.id: e for e in self._entities(c, rows)}
        for rec, ent in pairs:
            out[rec].entities.append(entities[int(ent)])
        ev = self.run(
            c,
            "SELECT v.record_id, r.id, r.source_id, r.target_id, r.type FROM relation_evidence v "
            f"JOIN relations r ON r.id = v.relation_id WHERE v.namespace = ? AND "
            f"{self.any_of('v.record_id')}",
            (namespace, self.array(record_ids)),
        )
        if ev:
            ends = {int(x) for r in ev for x in (r[2], r[3])}
            root = {
                int(a): int(b)
                for a, b in self.run(
                    c,
                    self._ROOTS + self.any_of("id"),
                    (self.array(ends),),
                )
            }
            for rec in record_ids:
                mine = [r[1:] for r in ev if r[0] == rec]
                out[rec].relations = self._relations(c, namespace, mine, root)
        return out

    def answer_kinds(self, c: Any, namespace: str, record_ids: list[str]) -> dict[str, int]:
        """The answer kinds of those records that hold any (extracted ones only)."""
        if not record_ids:
            return {}
        rows = self.run(
            c,
            "SELECT record_id, kinds FROM record_answer_kinds WHERE namespace = ? AND kinds <> 0 "
            f"AND {self.any_of('record_id')}",
            (namespace, self.array(record_ids)),
        )
        return {str(r): int(k) for r, k in rows}
