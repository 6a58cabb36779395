"""``engramdb migrate`` from a legacy store (Chroma, JSON/JSONL, mem0, SQL, Redis, Firestore).

The same machinery as the store-to-store path (:mod:`engramdb.ops.migrate`): the target
is any engramdb store that takes bulk loads (SQLite or PostgreSQL), batches load with
their batch-log entry in one transaction (:mod:`engramdb.ops.batch_log`), one run at a
time per target, and a killed run resumes without writing anything twice.

What differs is the front: a source adapter (:mod:`engramdb.ops.sources`) yields raw
items, the mapping (:mod:`engramdb.ops.mapping`) turns each into engramdb's fields, and
the engine's own checks (``prepare_record``) decide what a valid record is. An item that
fails any of that is skipped, logged with its source id and reason, and counted.

* **Ids and provenance.** A record's id is derived from ``<kind>:<collection>/<source
  id>`` (a hash), and that string is kept in its metadata as ``migrated_from`` with the
  run's ``migrated_at``; so a re-run of the same data writes nothing, and different data
  under the same derived id is a conflict (``ConflictError``, exit 4). Into a target that
  already holds records, every derived id is compared before anything is written (text,
  scope, type and mapped metadata), as the store-to-store path does.
* **Embeddings.** Reused when the source's model (recorded by Chroma, or stated in the
  mapping) and dimension match the target's embedder and the text fits one chunk;
  re-computed otherwise, or always with ``re_embed``. The report says how many of each
  and why.
* **Validation.** :mod:`engramdb.ops.validate` compares only what this run wrote.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from engramdb.config import Settings, url_without_password
from engramdb.embedders import Embedder, resolve_embedder
from engramdb.engine import validation as v
from engramdb.engine.chunking import chunk_text
from engramdb.engine.encoder import Encoder
from engramdb.engine.keyword import index_text
from engramdb.engine.prepare import chunk_and_embed, prepare_record
from engramdb.errors import ConflictError, EngramError, StoreError, ValidationError
from engramdb.ops.batch_log import Key, ResumePlan, log_prefix, plan_resume, skip_islands
from engramdb.ops.mapping import (
    Mapping,
    SkipItem,
    apply_mapping,
    fields_seen,
    missing_fields,
    parse_mapping,
)
from engramdb.ops.migrate import CHECKPOINT_PREFIX, MAX_BATCH, Target, load_batches, open_target
from engramdb.ops.prefetch import prefetch
from engramdb.ops.report import SkipLog, write_report
from engramdb.ops.sources import EmbeddingModel, LegacySource, SourceItem, open_source
from engramdb.ops.validate import Ledger, compare, content_line, record_line, sample
from engramdb.stores.prepared import PreparedChunk, PreparedRecord
from engramdb.timeutil import now_us

DEFAULT_LOG = "memory_migration.log"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def migrate_legacy(
    source_url: str,
    target_url: str,
    *,
    namespace: str | None = None,
    mapping: dict[str, Any] | None = None,
    batch_size: int = 1000,
    resume: bool = True,
    dry_run: bool = False,
    validate: bool = True,
    sample_size: int = 10,
    re_embed: bool = False,
    log_file: str | None = DEFAULT_LOG,
    output: str | None = None,
    progress: Callable[[int], None] | None = None,
    settings: Settings | None = None,
    embedder: str | Embedder | None = None,
) -> dict[str, Any]:
    """Migrate a legacy source into the engramdb store at ``target_url``; return the report.

    Args:
        source_url: ``chroma:///dir``, ``jsonl:///file``, ``sql:sqlite:///legacy.db``…
        target_url: an engramdb store URL (SQLite or PostgreSQL).
        namespace: write everything here (default: each collection into its own name).
        mapping: the mapping object (default: the source's built-in one).
        batch_size: records per transaction (1 to 50,000).
        resume: continue after the checkpoint of an interrupted run.
        dry_run: read and map everything, write nothing (the report says what would be).
        validate: compare counts, checksums and a sample afterwards.
        sample_size: records looked up by id and searched by their own text.
        re_embed: compute every vector with the target's embedder.
        log_file: where skipped items are logged (None: nowhere).
        output: also write the report to this JSON file.
        progress: called with the number of records of each batch written.
        settings: the base settings; embedder: the target's embedder (default: settings').

    Raises:
        ValidationError: a bad URL, mapping (a field no item holds is named), namespace or
            batch size.
        ConflictError: the target holds other data under a derived id (nothing written).
        EmbedderMismatchError: the target was built with another embedder.
        StoreError: validation found a difference (the report is in ``details``).
    """
    if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise ValidationError(f"batch_size must be between 1 and {MAX_BATCH}", field="batch_size")
    if not isinstance(sample_size, int) or sample_size < 0:
        raise ValidationError("sample_size must be 0 or more", field="sample_size")
    if namespace is not None:
        v.check_namespace(namespace)
    base = settings or Settings()
    started = time.perf_counter()
    source = open_source(source_url, mapping)
    log = SkipLog(log_file)
    try:
        raw = mapping if mapping is not None else source.builtin_mapping()
        if raw is None:
            raise ValidationError(
                f"a {source.kind} source needs a mapping file (--mapping) naming at least the "
                "source field of 'text'",
                field="mapping",
            )
        spec = parse_mapping(raw)
        emb = resolve_embedder(embedder, base)
        src_model = _source_model(spec, source)
        reuse, why = _reuse_decision(src_model, emb, re_embed)
        run = _Run(source, spec, namespace, base, emb, reuse, log)
        report: dict[str, Any] = {
            "source": url_without_password(source_url),
            "kind": source.kind,
            "target": url_without_password(target_url),
            "dry_run": dry_run,
            "mapping": raw,
            "embeddings": {
                "source_model": None if src_model is None else src_model.__dict__,
                "target_embedder": {"name": emb.name, "dim": emb.dim},
                "policy": "reuse" if reuse else "recompute",
                "why": why,
            },
        }
        if dry_run:
            for _ in run.records(batch_size, check_all=True):
                pass
            report.update(run.summary())
        else:
            dst = open_target(base, target_url)
            try:
                with dst.exclusive("migrate"):
                    report.update(
                        _load(run, dst, source_url, namespace, batch_size, resume, progress)
                    )
                    if validate:
                        report["validation"] = _validate(
                            run, dst, target_url, base, emb, sample_size
                        )
            finally:
                dst.close()
    finally:
        source.close()
        log.close()
    report["skipped"] = log.summary()
    report["seconds"] = round(time.perf_counter() - started, 3)
    written = report.get("written", 0)
    report["records_per_second"] = (
        round(written / report["seconds"], 1) if report["seconds"] else None
    )
    report["ok"] = not report.get("validation", {}).get("mismatches") and log.count == 0
    write_report(report, output)
    mismatches = report.get("validation", {}).get("mismatches")
    if mismatches:
        raise StoreError(
            "migration validation failed: " + "; ".join(mismatches[:5]),
            mismatches=mismatches,
            report=report,
        )
    return report


# ---------------------------------------------------------------------------- embeddings


def _source_model(spec: Mapping, source: LegacySource) -> EmbeddingModel | None:
    """The model of the source's vectors: the mapping's word, else the source's record."""
    if spec.embedding_model:
        return EmbeddingModel(spec.embedding_model, spec.embedding_dim)
    return source.embedding_model()


def _model_key(name: str) -> str:
    name = name.strip().lower()
    for prefix in ("sentence-transformers/", "st:"):
        name = name.removeprefix(prefix)
    return name


def _reuse_decision(src: EmbeddingModel | None, emb: Embedder, re_embed: bool) -> tuple[bool, str]:
    if re_embed:
        return False, "--re-embed: every vector is computed with the target's embedder"
    if src is None:
        return False, "the source does not say which model made its vectors"
    if _model_key(src.name) != _model_key(emb.name):
        return False, f"the source's model {src.name!r} is not the target's {emb.name!r}"
    if src.dim is not None and src.dim != emb.dim:
        return False, f"the source's vectors have {src.dim} dimensions, the target's {emb.dim}"
    return True, f"the source's model {src.name!r} is the target's embedder"


# ---------------------------------------------------------------------------- reading


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)  # every 10-bit value as 2 characters


def derived_id(ref: str) -> str:
    """The engramdb id of the record whose provenance is ``ref`` (26 base32 characters).

    ``"m"`` and the first 25 base32 characters (125 bits) of the SHA-256 of ``ref``, the
    same characters as ``base64.b32encode(digest)[:25]``, without encoding the whole
    digest one 5-byte group at a time in Python (it runs once per migrated item).
    """
    bits = int.from_bytes(hashlib.sha256(ref.encode("utf-8")).digest()[:16], "big") >> 3
    pairs = _B32_PAIRS
    return (
        "m"
        + "".join([pairs[(bits >> shift) & 1023] for shift in range(115, 0, -10)])
        + _B32[bits & 31]
    )


ENGRAM_PREFIX = "engram:"


def _mirrored_id(source_id: str) -> str | None:
    """The engramdb id in a source id ``engram:<id>`` (an item ``LegacyMemory`` wrote for
    an engramdb record), else None."""
    if not source_id.startswith(ENGRAM_PREFIX):
        return None
    try:
        return v.check_id(source_id[len(ENGRAM_PREFIX) :])
    except ValidationError:
        return None


class _Run:
    """One pass over the source: map, check, skip, and (when loading) embed."""

    def __init__(
        self,
        source: LegacySource,
        spec: Mapping,
        namespace: str | None,
        settings: Settings,
        emb: Embedder,
        reuse: bool,
        log: SkipLog | None,
    ) -> None:
        self.source = source
        self.spec = spec
        self.namespace = namespace
        self.settings = settings
        self.encoder = Encoder(settings, emb)
        self.reuse = reuse
        self.log = log
        self.migrated_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.now = now_us()
        self.reset()

    def reset(self) -> None:
        """Forget what a previous pass saw (a pre-pass, then the load)."""
        self.ledger = Ledger()
        self.read = 0
        self.readable = 0
        self.reused = 0
        self.recomputed = 0
        self.seen: set[str] = set()
        self._ids: set[tuple[str, str]] = set()
        self._scopes: dict[tuple[str, ...], str] = {}
        self._namespaces: dict[str, str] = {}

    def summary(self) -> dict[str, Any]:
        """The counts of a pass."""
        return {
            "read": self.read,
            "to_write": sum(self.ledger.counts().values()),
            "namespaces": {ns: {"source": n} for ns, n in self.ledger.counts().items()},
        }

    def _skip(self, ref: str, reason: str) -> None:
        if self.log is not None:
            self.log.skip(ref, reason)

    def _namespace(self, collection: str) -> str:
        if self.namespace is not None:
            return self.namespace
        ns = self._namespaces.get(collection)
        if ns is None:
            try:
                ns = v.check_namespace(collection)
            except ValidationError as exc:
                raise ValidationError(
                    f"collection {collection!r} is not a valid namespace name; give one "
                    "with --namespace",
                    field="namespace",
                ) from exc
            self._namespaces[collection] = ns
        return ns

    def records(
        self, batch_size: int, check_all: bool = False
    ) -> Iterator[tuple[Key, PreparedRecord, np.ndarray | None]]:
        """Yield ``((namespace, id), record, stored vector)`` for every valid item in order.

        The mapping's fields are checked against the first batch (or, with ``check_all``,
        against every item): a named field that no item holds raises ValidationError
        before anything is written.
        """
        pending = not check_all  # checked on the first batch holding a readable item
        for batch in self.source.read_batches(batch_size):
            for item in batch:
                self.read += 1
                if item.error is None:
                    self.readable += 1
                    if pending or check_all:  # once checked, what is seen no longer matters
                        self.seen |= fields_seen(self.spec, item.fields)
            if pending and self.readable:
                self._check_fields()
                pending = False
            for item in batch:
                out = self._one(item)
                if out is not None:
                    yield out
        if check_all:
            self._check_fields()

    def _check_fields(self) -> None:
        missing = missing_fields(self.spec, self.seen)
        if missing and self.readable:  # an empty source proves nothing either way
            raise ValidationError(
                f"the mapping names source field(s) {missing} that no item of the source holds",
                field=missing[0],
                fields=missing,
            )

    def _one(self, item: SourceItem) -> tuple[Key, PreparedRecord, np.ndarray | None] | None:
        kind = self.source.kind
        ref = f"{kind}:{item.collection}/{item.source_id}"
        if item.error is not None:
            self._skip(ref, item.error)
            return None
        try:
            mapped = apply_mapping(self.spec, item.fields, item.source_id, item.embedding)
        except SkipItem as exc:
            self._skip(f"{kind}:{item.collection}/{exc.source_id or item.source_id}", str(exc))
            return None
        ref = f"{kind}:{item.collection}/{mapped.source_id}"
        ns = self._namespace(item.collection)
        mirrored = _mirrored_id(mapped.source_id)
        rid = mirrored or derived_id(ref)
        if (ns, rid) in self._ids:
            self._skip(ref, "duplicate source id (an earlier item had the same one)")
            return None
        values = dict(mapped.values)
        meta = dict(values.pop("metadata", {}) or {})
        if "occurred_at" in values:  # the engine takes aware datetimes
            values["occurred_at"] = _EPOCH + dt.timedelta(microseconds=values["occurred_at"])
        try:
            rec = prepare_record(
                {
                    **values,
                    "id": rid,
                    # An engramdb record mirrored into the legacy store (LegacyMemory)
                    # is not a migrated one: it comes back as it was.
                    "metadata": meta
                    if mirrored
                    else {**meta, "migrated_from": ref, "migrated_at": self.migrated_at},
                },
                {},
                self.settings,
            )
        except EngramError as exc:
            self._skip(ref, f"invalid: {exc}")
            return None
        scope = (ns, rec.user_id, rec.agent_id, rec.thread_id, rec.type, rec.content_hash)
        twin = self._scopes.get(scope)
        if twin is not None:
            self._skip(ref, f"same text in the same scope as {twin} (engramdb keeps one)")
            return None
        self._scopes[scope] = ref
        self._ids.add((ns, rid))
        # The mapped metadata as checked (JSON values only, so it reads back equal).
        digest = content_line(
            "" if mirrored else ref,
            rec.text,
            rec.user_id,
            rec.agent_id,
            rec.thread_id,
            rec.type,
            meta,
        )
        self.ledger.add(ns, rid, digest, rec.text, rec.user_id)
        return (ns, rid), rec, mapped.embedding

    def embed(self, batch: list[tuple[str, PreparedRecord, np.ndarray | None]]) -> None:
        """Attach chunks and vectors: the source's where it may be reused, else computed."""
        todo: list[PreparedRecord] = []
        dim = self.encoder.embedder.dim
        window = self.encoder.max_chunk_tokens
        for _ns, rec, vec in batch:
            if self.reuse and vec is not None and vec.shape == (dim,):
                norm = math.sqrt(float(np.dot(vec, vec)))
                fits = (
                    len(rec.text) <= window
                    or len(chunk_text(rec.text, window, self.encoder.count_tokens)) == 1
                )
                if fits and np.isfinite(norm) and norm > 0:
                    unit = (vec / norm).astype(np.float32)
                    rec.chunks = [
                        PreparedChunk(0, len(rec.text), unit, index_text(rec.text, rec.occurred_at))
                    ]
                    self.reused += 1
                    continue
            todo.append(rec)
        if todo:
            chunk_and_embed(todo, self.encoder)
            self.recomputed += len(todo)

    def row(self, ns: str, rec: PreparedRecord, version: int = 1) -> dict[str, Any]:
        """The record in the shape ``BulkLoader.load_records`` takes (``version``: the
        target's, for a record already there)."""
        return {
            "namespace": ns,
            "id": rec.id,
            "text": rec.text,
            "content_hash": rec.content_hash,
            "type": rec.type,
            "user_id": rec.user_id,
            "agent_id": rec.agent_id,
            "thread_id": rec.thread_id,
            "metadata": rec.metadata_json,
            "tags": rec.tags_json,
            "source": rec.source,
            "importance": rec.importance,
            "version": version,
            "event_id": None,
            "occurred_at": rec.occurred_at,
            "created_at": self.now,
            "updated_at": self.now,
            "valid_from": rec.valid_from,
            "valid_to": rec.valid_to,
            "expires_at": rec.expires_at,
            "chunks": [(c.start, c.end, c.index_text, c.vector) for c in rec.chunks],
            "history": [],
        }


# ---------------------------------------------------------------------------- loading


def _load(
    run: _Run,
    dst: Target,
    source_url: str,
    namespace: str | None,
    batch_size: int,
    resume: bool,
    progress: Callable[[int], None] | None,
) -> dict[str, Any]:
    emb = run.encoder.embedder
    dst.check_embedder(emb.name, emb.dim)  # invariant 7: vectors follow the target's model
    identity = url_without_password(source_url) + (f"#ns={namespace}" if namespace else "")
    key = CHECKPOINT_PREFIX + identity
    dst.settle_checkpoints()
    saved = dst.read_meta(key)
    state: dict[str, Any] | None = json.loads(saved) if saved and resume else None
    resumed = state is not None
    present: dict[Key, int] = {}
    if state is None:
        empty = not dst.stats().get("records")
        if not empty:
            present = _compare_existing(run, dst, batch_size)
            run.reset()
        state = {"bulk": empty}
        dst.delete_meta_prefix(log_prefix(key))
        if empty:
            dst.drop_vector_index()
        dst.write_meta(key, json.dumps(state))
    plan = plan_resume(dst.read_meta_prefix(log_prefix(key)), key)
    tally = {"written": 0, "unchanged": 0}
    copy_started = time.perf_counter()
    batches = prefetch(
        lambda: _batches(run, plan, present, batch_size), "engramdb-migrate-legacy-reader"
    )
    try:
        load_batches(
            dst, key, batches, max(1, min(2, dst.pool_max)), plan.next_seq, tally, progress
        )
    finally:
        batches.close()
    copy_s = time.perf_counter() - copy_started
    if state["bulk"] or not dst.vector_index_exists():
        dst.build_vector_index()
    dst.delete_meta_prefix(log_prefix(key))
    dst.write_meta(key, None)
    out = run.summary()
    out.update(
        {
            "resumed": resumed,
            "records_before_resume": plan.records,
            "written": tally["written"],
            "unchanged": tally["unchanged"],
            "copy_seconds": round(copy_s, 3),
        }
    )
    out["embeddings_used"] = {"reused": run.reused, "recomputed": run.recomputed}
    return out


def _compare_existing(run: _Run, dst: Target, batch_size: int) -> dict[Key, int]:
    """Before writing into a non-empty target: every derived id the target already holds
    must hold the same content; return those with their version there (nothing to write
    for them: a record changed since, through a dual write, is the same content at a
    later version).

    Raises:
        ConflictError: a derived id holds other data (nothing was written).
    """
    run_log, run.log = run.log, None  # the load pass logs the skips
    present: dict[Key, int] = {}
    pending: dict[str, list[str]] = {}

    def check(ns: str, ids: list[str]) -> None:
        want = run.ledger.digests[ns]
        bad = []
        for rec in dst.get_records(ns, ids):
            if record_line(rec) == want[rec.id]:
                present[(ns, rec.id)] = rec.version
            else:
                bad.append(rec.id)
        if bad:
            raise ConflictError(
                f"the target already holds different data under {len(bad)} derived id(s) of "
                f"namespace {ns!r} (first: {bad[0]!r}, from "
                f"{dst.get_records(ns, bad[:1])[0].metadata.get('migrated_from')!r}); "
                "nothing was written",
                namespace=ns,
                ids=bad[:20],
            )

    try:
        for (ns, rid), _rec, _vec in run.records(batch_size):
            ids = pending.setdefault(ns, [])
            ids.append(rid)
            if len(ids) >= 500:
                check(ns, ids)
                pending[ns] = []
        for ns, ids in pending.items():
            if ids:
                check(ns, ids)
    finally:
        run.log = run_log
    return present


def _batches(
    run: _Run, plan: ResumePlan, present: dict[Key, int], batch_size: int
) -> Iterator[tuple[Key | None, list[dict[str, Any]]]]:
    """The load batches: mapped, past the checkpoint, islands stepped over, embedded."""
    stream: Iterator[tuple[Key, PreparedRecord, np.ndarray | None]] = run.records(batch_size)
    if plan.after is not None:
        stream = _past(stream, plan.after)
    batch: list[tuple[str, PreparedRecord, np.ndarray | None]] = []
    prev: Key | None = None
    for before, (key, rec, vec) in skip_islands(stream, plan.after, plan.islands, lambda t: t[0]):
        if not batch:
            prev = before
        if key in present:
            rec.chunks = []  # already there with this content: the load counts it unchanged
        batch.append((key[0], rec, None if key in present else vec))
        if len(batch) >= batch_size:
            yield prev, _rows(run, batch, present)
            batch = []
    if batch:
        yield prev, _rows(run, batch, present)


def _rows(
    run: _Run,
    batch: list[tuple[str, PreparedRecord, np.ndarray | None]],
    present: dict[Key, int],
) -> list[dict[str, Any]]:
    run.embed([b for b in batch if (b[0], b[1].id) not in present])
    return [run.row(ns, rec, present.get((ns, rec.id), 1)) for ns, rec, _ in batch]


def _past(
    stream: Iterator[tuple[Key, PreparedRecord, np.ndarray | None]], after: Key
) -> Iterator[tuple[Key, PreparedRecord, np.ndarray | None]]:
    """The stream after the item whose key is ``after`` (everything up to it is loaded)."""
    reached = False
    for item in stream:
        if reached:
            yield item
        elif item[0] == after:
            reached = True


# ---------------------------------------------------------------------------- validation


def _validate(
    run: _Run, dst: Target, target_url: str, base: Settings, emb: Embedder, sample_size: int
) -> dict[str, Any]:
    result = compare(run.ledger, dst.get_records, lambda ns: dst.count_records(ns, None))
    if sample_size and run.ledger.digests:
        from engramdb.errors import NotFoundError
        from engramdb.memory import Memory

        with Memory(target_url, embedder=emb, settings=base) as mem:

            def get(ns: str, rid: str) -> Any:
                try:
                    return mem.with_namespace(ns).get(rid)
                except NotFoundError:
                    return None

            def search(ns: str, text: str, user_id: str) -> list[Any]:
                hits = mem.with_namespace(ns).search(text, top_k=3, user_id=user_id or None)
                return [h.record for h in hits]

            result["sample"] = sample(run.ledger, sample_size, get, search)
        failures = result["sample"]["failures"]
        if failures:
            result["mismatches"].append(
                f"{len(failures)} of {result['sample']['size']} sampled record(s) failed "
                f"(first: {failures[0]['id']}: {failures[0]['problem']})"
            )
    result["ok"] = not result["mismatches"]
    return result
