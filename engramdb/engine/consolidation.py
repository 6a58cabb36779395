"""Consolidation: keep a namespace small and current as it grows.

One pass (:meth:`Consolidator.consolidate`) over the live records of a namespace (or of
one user or thread in it):

1. records past ``expires_at`` are deleted (history op ``expire``);
2. near-duplicates of one scope are merged (:mod:`.consolidate_plan`): the richest
   record survives, gains the others' tags and metadata and the earliest ``occurred_at``
   (history op ``merge``), and the others are archived with op ``merge``;
3. records whose importance has decayed below the floor are archived (op ``archive``);
4. long threads get (or refresh) a ``summary`` record (:mod:`.summaries`).

Archived records leave ``records`` and so every read but ``get`` by id, and are exported;
:meth:`unmerge` and :meth:`restore_archived` put them back with their vectors. Planning
does no writes, so ``dry_run=True`` returns the same report a real run would and changes
nothing.

Records of a thread carry their neighbouring turns in their keyword text
(:mod:`.context_index`): after a step takes turns out (merge, expiry, retention), moves a
survivor's time, or brings turns back (unmerge, restore), the turns whose window reached
those times are re-indexed, as after a delete or an update by the write path.

Each step writes in transactions of up to ``_ARCHIVE_BATCH`` records and checks the
versions it planned against (a record another writer changed meanwhile is reported in
``skipped`` and left alone). A merge archives the absorbed records first, then updates the
survivors: a crash between the two leaves survivors without the others' tags, never a
record lost.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from engramdb.cache import Cache
from engramdb.config import Settings
from engramdb.engine import validation as v
from engramdb.engine.consolidate_plan import (
    MergeGroup,
    Scanned,
    is_expired,
    merge_groups,
    record_vector,
    retention_score,
)
from engramdb.engine.context_index import ContextIndex
from engramdb.engine.encoder import Encoder
from engramdb.engine.keyword import index_text
from engramdb.engine.records import Records
from engramdb.engine.summaries import ThreadSummaries
from engramdb.engine.transfer import prepare_import, record_line
from engramdb.errors import ConflictError, NotFoundError, NotSupportedError, ValidationError
from engramdb.models import (
    ArchiveAction,
    ArchivedRecord,
    ConsolidationReport,
    MemoryRecord,
    MergeAction,
)
from engramdb.stores.base import Archive, ArchivedRow, ArchiveItem, Store, Transfer
from engramdb.stores.prepared import PreparedChunk, RecordChanges, RecordUpdate, is_turn
from engramdb.timeutil import from_us_req, now_us, to_us

_TIME_FIELDS = ("occurred_at", "created_at", "updated_at", "valid_from", "valid_to", "expires_at")
# Records taken out, or survivors updated, per transaction of a merge pass.
_ARCHIVE_BATCH = 500
# Archive rows read per unmerge lookup (a survivor's merge groups, newest first).
_GROUP_ROWS = 10_000


class Consolidator:
    """Merges, expiry, retention and thread summaries over one store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        cache: Cache,
        encoder: Encoder,
        records: Records,
        summaries: ThreadSummaries,
    ) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache
        self.encoder = encoder
        self.records = records
        self.summaries = summaries
        self.context = ContextIndex(settings, store)

    # ------------------------------------------------------------------ capabilities

    def _archive(self, doing: str) -> Archive:
        if not isinstance(self.store, Archive):
            raise NotSupportedError(f"the {self.store.backend} store cannot {doing}")
        return self.store

    def _transfer(self, doing: str) -> Transfer:
        if not isinstance(self.store, Transfer):
            raise NotSupportedError(f"the {self.store.backend} store cannot {doing}")
        return self.store

    # ------------------------------------------------------------------ the pass

    def consolidate(
        self, namespace: str, user_id: str | None, thread_id: str | None, dry_run: bool
    ) -> ConsolidationReport:
        """Plan, and unless ``dry_run`` apply, one consolidation pass (module docstring)."""
        v.check_namespace(namespace)
        user_id = v.check_scope(user_id, "user_id")
        thread_id = v.check_scope(thread_id, "thread_id")
        if not isinstance(dry_run, bool):
            raise ValidationError("dry_run: true or false", field="dry_run")
        archive = self._archive("consolidate")
        started = time.perf_counter()
        now = datetime.now(UTC)
        scan = self._scan(namespace, user_id, thread_id)
        report = ConsolidationReport(namespace=namespace, dry_run=dry_run, scanned=len(scan))
        live: list[Scanned] = []
        for s in scan:
            if is_expired(s.record, now):
                report.expired.append(ArchiveAction(s.record.id, "expired"))
            else:
                live.append(s)
        groups = merge_groups(live, self.settings.consolidate_merge_threshold)
        merged = {i for g in groups for i in (g.survivor, *g.members)}
        report.merges = [_merge_action(live, g) for g in groups]
        floor = self.settings.consolidate_archive_floor
        decayed: list[Scanned] = []
        for i, s in enumerate(live):
            score = retention_score(s.record, now, self.settings.consolidate_half_life_days)
            if i not in merged and score is not None and score < floor:
                report.archived.append(ArchiveAction(s.record.id, "retention", score))
                decayed.append(s)
        if not dry_run:
            self._expire(archive, namespace, scan, report)
            moved = self._merge(archive, namespace, live, groups, report)
            self._retire(archive, namespace, decayed, report)
            taken = {a.record_id for a in (*report.expired, *report.archived)} - set(report.skipped)
            taken.update(x for m in report.merges for x in m.merged_ids)
            self._reindex(namespace, [s.record for s in scan if s.record.id in taken] + moved)
        gone = set(report.skipped) | {a.record_id for a in report.archived}
        gone.update(x for m in report.merges for x in m.merged_ids)
        turns = [s.record for s in live if s.record.id not in gone]
        report.summaries = self.summaries.refresh(namespace, turns, user_id, dry_run)
        report.seconds = time.perf_counter() - started
        return report

    def _scan(self, namespace: str, user_id: str | None, thread_id: str | None) -> list[Scanned]:
        """Every live record of the scope (expired ones too) with its unit vector."""
        node = self.records.build_filter(
            None, {"user_id": user_id, "thread_id": thread_id}, None, True
        )
        out = []
        for item in self._transfer("consolidate").iter_all(namespace, node):
            vec = record_vector(item["chunks"])
            if vec is not None:
                out.append(Scanned(item["record"], vec, list(item["chunks"])))
        return out

    def _expire(
        self, archive: Archive, ns: str, scan: list[Scanned], report: ConsolidationReport
    ) -> None:
        versions = {s.record.id: s.record.version for s in scan}
        items = [ArchiveItem(a.record_id, versions[a.record_id], "expire") for a in report.expired]
        self._take(archive, ns, items, report)

    def _retire(
        self, archive: Archive, ns: str, decayed: list[Scanned], report: ConsolidationReport
    ) -> None:
        items = [
            ArchiveItem(
                s.record.id,
                s.record.version,
                "archive",
                reason="retention",
                image=_image(s),
                after=json.dumps({"archived": "retention"}),
            )
            for s in decayed
        ]
        self._take(archive, ns, items, report)

    def _take(
        self, archive: Archive, ns: str, items: list[ArchiveItem], report: ConsolidationReport
    ) -> list[str]:
        if not items:
            return []
        taken = archive.archive_records(ns, items)
        report.skipped.extend(sorted({it.record_id for it in items} - set(taken)))
        self.cache.invalidate_records(ns, [it.record_id for it in items])
        return taken

    def _merge(
        self,
        archive: Archive,
        ns: str,
        live: list[Scanned],
        groups: list[MergeGroup],
        report: ConsolidationReport,
    ) -> list[MemoryRecord]:
        """Archive every group's absorbed records, then update the survivors (both in
        batches: one transaction per batch).

        Returns the survivors whose time moved, before and after (their thread context is
        re-indexed at both times).
        """
        items: list[ArchiveItem] = []
        for g in groups:
            s = live[g.survivor].record
            before = {
                "tags": s.tags,
                "metadata": s.metadata,
                "occurred_at": None if s.occurred_at is None else s.occurred_at.isoformat(),
                "importance": s.importance,
                "version": s.version + 1,
            }
            group = uuid.uuid4().hex
            items.extend(
                ArchiveItem(
                    live[i].record.id,
                    live[i].record.version,
                    "merge",
                    reason="merged",
                    image=_image(live[i]),
                    after=json.dumps({"merged_into": s.id}),
                    merged_into=s.id,
                    merge_group=group,
                    survivor=json.dumps(before),
                )
                for i in g.members
            )
        taken: set[str] = set()
        moved: list[MemoryRecord] = []
        for start in range(0, len(items), _ARCHIVE_BATCH):
            taken.update(self._take(archive, ns, items[start : start + _ARCHIVE_BATCH], report))
        updates: list[tuple[MemoryRecord, RecordUpdate]] = []
        for g in groups:
            head = live[g.survivor]
            absorbed = [live[i].record for i in g.members if live[i].record.id in taken]
            if absorbed:
                changes = _merged_changes(head, absorbed)
                updates.append(
                    (head.record, RecordUpdate(head.record.id, changes, head.record.version))
                )
        for start in range(0, len(updates), _ARCHIVE_BATCH):
            batch = updates[start : start + _ARCHIVE_BATCH]
            done = archive.update_records(ns, [u for _, u in batch])
            for (was, u), now in zip(batch, done, strict=True):
                if now is None:
                    report.skipped.append(was.id)
                elif u.changes.occurred_at is not None:
                    moved.extend((was, now))
            self.cache.invalidate_records(ns, [u.record_id for _, u in batch])
        return moved

    def _reindex(self, ns: str, records: list[MemoryRecord]) -> None:
        """Re-index the thread context around the times of turns taken out, moved or back."""
        for rec in records:
            if rec.occurred_at is not None and rec.thread_id and is_turn(rec.type, rec.thread_id):
                when = to_us(rec.occurred_at, "occurred_at")
                self.context.reindex(ns, rec.thread_id, when, when, set())

    # ------------------------------------------------------------------ archive reads

    def get_archived(self, namespace: str, record_id: str) -> MemoryRecord | None:
        """The record as archived (merged away or retired), or None."""
        if not isinstance(self.store, Archive):
            return None
        rows = self.store.archived(namespace, [record_id])
        return _record_from_image(rows[0].image) if rows else None

    def archived(self, namespace: str, user_id: str | None, limit: int) -> list[ArchivedRecord]:
        """Archived records of a namespace (one user's with ``user_id``), newest first."""
        v.check_namespace(namespace)
        user_id = v.check_scope(user_id, "user_id")
        limit = v.check_limit(limit, self.settings, "limit")
        rows = self._archive("list archived records").list_archived(namespace, user_id, None, limit)
        return [_archived_record(r) for r in rows]

    # ------------------------------------------------------------------ undo

    def unmerge(self, namespace: str, record_id: str) -> list[MemoryRecord]:
        """Undo the merge ``record_id`` took part in (as survivor: its latest merge).

        The absorbed records come back with their ids, texts, vectors and times (history op
        ``unmerge``); the survivor gets back its tags, metadata, importance and
        ``occurred_at`` unless it changed since the merge (its own changes are kept then).
        Returns the survivor (when it still exists) and the records brought back.

        Raises:
            NotFoundError: the record took part in no merge that is still in effect.
        """
        v.check_namespace(namespace)
        record_id = v.check_id(record_id)
        archive = self._archive("unmerge")
        own = archive.archived(namespace, [record_id])
        survivor_id = record_id
        if own and own[0].reason == "merged" and own[0].merged_into:
            survivor_id, group = own[0].merged_into, own[0].merge_group
            rows = archive.list_archived(namespace, None, survivor_id, _GROUP_ROWS)
        else:
            rows = archive.list_archived(namespace, None, record_id, _GROUP_ROWS)
            group = rows[0].merge_group if rows else None
        rows = [r for r in rows if r.merge_group == group and r.reason == "merged"]
        if not rows:
            raise NotFoundError(
                f"record {record_id!r} has no merge to undo in namespace {namespace!r}",
                id=record_id,
            )
        out = []
        survivor = self._unmerge_survivor(namespace, survivor_id, rows[0])
        if survivor is not None:
            out.append(survivor)
        out.extend(self._bring_back(namespace, rows, "unmerge"))
        return out

    def _unmerge_survivor(self, ns: str, survivor_id: str, row: ArchivedRow) -> MemoryRecord | None:
        live = self.store.get_records(ns, [survivor_id])
        if not live:
            return None
        cur = live[0]
        before = json.loads(row.survivor or "{}")
        if cur.version != before.get("version"):
            return cur  # changed since the merge: its own changes win
        tags = list(before.get("tags") or [])
        ch = RecordChanges(op="unmerge")
        ch.add_tags = sorted(set(tags) - set(cur.tags)) or None
        ch.remove_tags = sorted(set(cur.tags) - set(tags)) or None
        ch.metadata_json = json.dumps(before.get("metadata") or {}, ensure_ascii=False)
        if before.get("importance") is None:
            ch.clear = frozenset({"importance"}) if cur.importance is not None else frozenset()
        else:
            ch.importance = float(before["importance"])
        occurred = before.get("occurred_at")
        if occurred and cur.occurred_at and occurred != cur.occurred_at.isoformat():
            ch.occurred_at = to_us(occurred, "occurred_at")
            ch.chunks = self._rechunk(ns, cur, ch.occurred_at)
        try:
            after = self.store.update_record(ns, cur.id, ch, cur.version)
        except ConflictError:
            return cur
        self.cache.invalidate_records(ns, [cur.id])
        if ch.occurred_at is not None:
            self._reindex(ns, [cur, after])
        return after

    def _rechunk(self, ns: str, rec: MemoryRecord, when: int) -> list[PreparedChunk] | None:
        """The record's chunks with their vectors and the keyword text of a new date."""
        node = self.records.build_filter({"id": rec.id}, {}, None, True)
        for item in self._transfer("merge").iter_all(ns, node):
            return _chunks_at(item["record"], item["chunks"], when)
        return None

    def restore_archived(self, namespace: str, record_id: str) -> MemoryRecord:
        """Bring an archived record back to the live set (history op ``restore``).

        A record merged away comes back on its own (its survivor keeps what it gained; use
        ``unmerge`` to undo the whole merge).

        Raises:
            NotFoundError: no archived record with this id.
        """
        v.check_namespace(namespace)
        record_id = v.check_id(record_id)
        rows = self._archive("restore archived records").archived(namespace, [record_id])
        if not rows:
            raise NotFoundError(
                f"no archived record {record_id!r} in namespace {namespace!r}", id=record_id
            )
        return self._bring_back(namespace, rows, "restore")[0]

    def _bring_back(self, ns: str, rows: list[ArchivedRow], op: str) -> list[MemoryRecord]:
        """Import archived images back (their vectors kept), then drop the archive rows.

        The import comes first: a crash between leaves a live record with a stale archive
        row, which reads ignore (the live record wins) and the next restore drops.
        """
        batch = []
        at = now_us()
        for row in rows:
            line = json.loads(row.image)
            version = int(line["record"].get("version") or 1) + 2
            line["record"]["version"] = version
            line["history"] = [
                {"op": op, "version": version, "before": None, "after": line["record"], "at": at}
            ]
            batch.append(prepare_import(self.encoder_view(), line, ns, True, 0))
        counts = self._transfer("restore archived records").import_records(batch)
        ids = [r.id for r in rows]
        if counts.get("conflicts"):
            live = {r.id for r in self.store.get_records(ns, ids)}
            stuck = [i for i in ids if i not in live]
            if stuck:
                raise ConflictError(
                    f"cannot bring back {stuck}: another live record of the same scope has "
                    "the same text (delete or change it first)",
                    ids=stuck,
                )
        self._archive("restore archived records").drop_archived(ns, ids)
        self.cache.invalidate_records(ns, ids)
        back = self.store.get_records(ns, ids)
        self._reindex(ns, back)
        return back

    def encoder_view(self) -> Any:
        """What ``prepare_import`` needs of the engine: settings, embedder, embed."""
        return _EncoderView(self.settings, self.encoder)


class _EncoderView:
    """Settings and embedder, in the shape of ``engine.transfer.Embedding``."""

    def __init__(self, settings: Settings, encoder: Encoder) -> None:
        self.settings = settings
        self._encoder = encoder

    @property
    def embedder(self) -> Any:
        return self._encoder.embedder

    def embed(self, texts: Any, *, query: bool = False) -> Any:
        return self._encoder.embed(texts, query=query)


def _image(s: Scanned) -> str:
    """The export line of a scanned record, with vectors, without history (kept in place)."""
    line = record_line({"record": s.record, "chunks": s.chunks, "history": []}, True)
    return json.dumps(line, ensure_ascii=False)


def _record_from_image(image: str) -> MemoryRecord:
    """The record of an archive image (its export line)."""
    rec: dict[str, Any] = dict(json.loads(image)["record"])
    for f in _TIME_FIELDS:
        if rec.get(f) is not None:
            rec[f] = datetime.fromisoformat(rec[f])
    return MemoryRecord(**rec)


def _archived_record(row: ArchivedRow) -> ArchivedRecord:
    return ArchivedRecord(
        record=_record_from_image(row.image),
        reason=row.reason,
        archived_at=from_us_req(row.archived_at),
        merged_into=row.merged_into,
    )


def _merge_action(live: list[Scanned], g: MergeGroup) -> MergeAction:
    """What a merge group leaves: the survivor's text with everyone's tags, earliest time."""
    recs = [live[g.survivor].record, *(live[i].record for i in g.members)]
    times = [r.occurred_at for r in recs if r.occurred_at is not None]
    head = recs[0]
    return MergeAction(
        survivor_id=head.id,
        merged_ids=[r.id for r in recs[1:]],
        similarity=round(g.similarity, 6),
        text=head.text,
        tags=sorted({t for r in recs for t in r.tags}),
        occurred_at=min(times) if times else None,
        user_id=head.user_id,
        thread_id=head.thread_id,
    )


def _merged_changes(head: Scanned, absorbed: list[MemoryRecord]) -> RecordChanges:
    """The survivor's update: union of tags and metadata, max importance, earliest time."""
    s = head.record
    ch = RecordChanges(op="merge")
    tags = {t for r in absorbed for t in r.tags} - set(s.tags)
    ch.add_tags = sorted(tags) or None
    meta = dict(s.metadata)
    for r in absorbed:
        for k, val in r.metadata.items():
            meta.setdefault(k, val)
    ch.metadata_json = json.dumps(meta, ensure_ascii=False)
    scores = [r.importance for r in (s, *absorbed) if r.importance is not None]
    if scores and max(scores) != s.importance:
        ch.importance = max(scores)
    times = [r.occurred_at for r in absorbed if r.occurred_at is not None]
    if times and s.occurred_at is not None and min(times) < s.occurred_at:
        ch.occurred_at = to_us(min(times), "occurred_at")
        ch.chunks = _chunks_at(s, head.chunks, ch.occurred_at)
    return ch


def _chunks_at(
    rec: MemoryRecord, chunks: list[tuple[int, int, bytes, str]], when: int
) -> list[PreparedChunk]:
    """The record's chunks with their own vectors and the keyword text of date ``when``."""
    import numpy as np

    return [
        PreparedChunk(a, b, np.frombuffer(blob, dtype=np.float32), index_text(rec.text[a:b], when))
        for a, b, blob, _ in chunks
    ]
