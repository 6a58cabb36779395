"""Moving a whole store up to PostgreSQL: ``engramdb migrate --from … --to postgresql://…``.

The direct path from one store to another (the general tool with source adapters is its
own module to come). It works store to store, below the engine: records are copied with
their ids, versions, times, metadata, tags, chunk spans, keyword texts and vectors (never
re-embedded: the target takes the source's embedder name and dimension), their history,
the events and the slots of every namespace, and the thread checkpoints of agent
frameworks (idempotent by their keys, like events).

* **Batched and resumable.** Records stream out of the source in (namespace, id) order
  (:meth:`Transfer.iter_all`) and go in through :meth:`BulkLoader.load_records` (COPY), one
  transaction per batch that also writes the checkpoint (the last (namespace, id) copied)
  into the target's ``meta`` table. A killed run started again continues after the
  checkpoint, and a batch is either wholly in the target with its checkpoint or not at
  all, so nothing is copied twice. Events and slots are idempotent by id and key.
* **Overlapped.** A reader thread reads and converts the next batch while the target
  loads the current one.
* **Bulk load.** Into an empty target the HNSW index is dropped first and built once after
  the load (with ``maintenance_work_mem`` raised), then the tables are ANALYZEd.
* **Safe.** Before writing into a non-empty target every source id is compared with the
  target: an id holding other data (version or content hash) is a ``ConflictError`` and
  nothing is written. Ids holding the same data count as unchanged (re-running is safe).
* **Verified.** At the end, per namespace: the counts of records, history rows, events and
  slot threads, and a SHA-256 over the (id, version, content hash) of every record, in
  both stores. Any difference raises :class:`~engramdb.errors.StoreError` naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, Protocol, cast

import numpy as np

from engramdb.config import Settings, url_without_password
from engramdb.errors import StoreError, ValidationError
from engramdb.ops.batch_log import (
    Key,
    ResumePlan,
    entry_key,
    entry_value,
    log_prefix,
    plan_resume,
    skip_islands,
)
from engramdb.ops.prefetch import prefetch
from engramdb.stores import (
    BulkLoader,
    Checkpoints,
    Maintenance,
    Store,
    StoreURL,
    Transfer,
    open_store,
    parse_store_url,
)
from engramdb.timeutil import to_us


class Source(Store, Maintenance, Transfer, Protocol):
    """What migrate reads from: any store whose whole rows can be exported."""


class Target(Store, Maintenance, Transfer, BulkLoader, Protocol):
    """What migrate writes into: a store that also takes bulk loads under a batch log."""


CHECKPOINT_PREFIX = "migrate_from:"
COUNTED = ("records", "history", "events", "threads_with_slots")
MAX_BATCH = 50_000
LOADERS = 2  # loader connections of a copy (see load_batches)


def migrate_store(
    source_url: str,
    target_url: str,
    *,
    batch_size: int = 1000,
    resume: bool = True,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    settings: Settings | None = None,
    namespace: str | None = None,
    validate: bool = True,
    sample_size: int = 0,
) -> dict[str, Any]:
    """Copy every namespace of the store at ``source_url`` into the store at ``target_url``
    (SQLite or PostgreSQL, either way); return a summary (counts per namespace,
    checksums, timings).

    Args:
        source_url: ``sqlite:///path.db`` (must exist) or a ``postgresql://`` store.
        target_url: ``postgresql://…`` or ``sqlite:///path.db``; its schema is created or
            upgraded on open.
        batch_size: records per transaction (1 to 50,000).
        resume: continue after the checkpoint of an interrupted run (False starts over;
            records already there with the same data are then counted as unchanged).
        dry_run: only count what would be copied; nothing is opened for writing.
        progress: called with the number of records of each batch written.
        settings: the base settings (pool, HNSW parameters...); the URLs override theirs.
        namespace: copy only this namespace (default: every one).
        validate: compare counts and checksums at the end (False skips the check).
        sample_size: records looked up by id in the target (and searched by their own
            text when the configured embedder is the store's).

    Raises:
        ValidationError: a bad URL or batch size, or a missing source file.
        ConflictError: the target holds other data under a source id (nothing written).
        EmbedderMismatchError: the target was built with another embedder.
        StoreError: verification found a difference (``details["mismatches"]``).

    Example::

        migrate_store("sqlite:///engram.db", "postgresql://app@db/engram", batch_size=2000)
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool):
        raise ValidationError("batch_size must be an integer", field="batch_size")
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValidationError(
            f"batch_size must be between 1 and {MAX_BATCH}, not {batch_size}", field="batch_size"
        )
    source_id = _check_urls(source_url, target_url)
    if namespace is not None:
        from engramdb.engine.validation import check_namespace

        check_namespace(namespace)
        source_id += f"#ns={namespace}"
    base = settings or Settings()
    started = time.perf_counter()
    src = _open_source(base, source_url)
    try:
        namespaces = sorted(src.namespaces())
        if namespace is not None:
            namespaces = [ns for ns in namespaces if ns == namespace]
        counts = {ns: _counts(src, ns) for ns in namespaces}
        if dry_run:
            return {
                "dry_run": True,
                "source": source_url,
                "target": url_without_password(target_url),
                "embedder": _embedder(src),
                "namespaces": counts,
                "would_copy": _totals(counts),
            }
        dst = open_target(base, target_url)
        try:
            # One migrate at a time per target schema: a second one waits, then resumes
            # from the checkpoint or finds everything copied (unchanged).
            with dst.exclusive("migrate"):
                report = _run(
                    src,
                    dst,
                    source_id,
                    namespaces,
                    batch_size,
                    resume,
                    progress,
                    namespace=namespace,
                    validate=validate,
                )
                if sample_size:
                    report["sample"] = _sample(src, target_url, base, namespaces, sample_size)
        finally:
            dst.close()
    finally:
        src.close()
    report.update(
        {
            "source": source_url,
            "target": url_without_password(target_url),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    return report


def source_record_count(source_url: str, settings: Settings | None = None) -> int:
    """The number of records in the source store (for a progress bar's total)."""
    _check_urls(source_url, "postgresql://")
    src = open_store(source_url, settings)
    try:
        return sum(src.namespaces().values())
    finally:
        src.close()


def _check_urls(source_url: str, target_url: str) -> str:
    """Validate both URLs; return the source's identity (the checkpoint key)."""
    if not isinstance(source_url, str) or not source_url:
        raise ValidationError("the source URL is empty", field="source_url")
    target = _parsed(target_url) if isinstance(target_url, str) else None
    if target is None:
        raise ValidationError(
            f"the target must be an engramdb store URL (postgresql://user@host:port/db or "
            f"sqlite:///path.db), not {url_without_password(str(target_url))!r}",
            field="target_url",
        )
    if target.backend == "sqlite" and target.path is None:
        raise ValidationError("an in-memory store cannot be a migration target", field="target_url")
    source = _parsed(source_url)
    if source is None:
        raise ValidationError(
            f"unsupported source URL {url_without_password(source_url)!r}: use "
            "sqlite:///path/to/file.db or postgresql://…",
            field="source_url",
        )
    if source.identity == target.identity or source_url == target_url:
        raise ValidationError("the source and the target are the same store", field="url")
    if source.backend == "postgresql":
        return source.identity
    if source.path is None:
        raise ValidationError("an in-memory store cannot be migrated", field="source_url")
    if not source.path.is_file():
        raise ValidationError(f"the source store {source.path} does not exist", field="source_url")
    return source.identity


def _parsed(url: str) -> StoreURL | None:
    try:
        return parse_store_url(url)
    except ValidationError:
        return None


def _open_source(base: Settings, url: str) -> Source:
    store = open_store(url, base)
    if not (isinstance(store, Transfer) and isinstance(store, Maintenance)):
        store.close()
        raise ValidationError(
            f"{url_without_password(url)!r} cannot export its rows", field="source_url"
        )
    return cast(Source, store)


def open_target(base: Settings, url: str) -> Target:
    """Open a migration target: a store that takes bulk loads under a batch log."""
    store = open_store(url, base)
    if not all(isinstance(store, role) for role in (BulkLoader, Transfer, Maintenance)):
        store.close()
        raise ValidationError(
            f"{url_without_password(url)!r} does not take bulk loads", field="target_url"
        )
    return cast(Target, store)


def _embedder(store: Store) -> dict[str, Any] | None:
    info = store.embedder_info()
    return None if info is None else {"name": info[0], "dim": info[1]}


def _counts(store: Source, namespace: str) -> dict[str, int]:
    stats = store.stats(namespace)
    return {k: int(stats.get(k) or 0) for k in COUNTED}


def _totals(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    return {k: sum(c[k] for c in counts.values()) for k in COUNTED}


def _run(
    src: Source,
    dst: Target,
    source_id: str,
    namespaces: list[str],
    batch_size: int,
    resume: bool,
    progress: Callable[[int], None] | None,
    namespace: str | None = None,
    validate: bool = True,
) -> dict[str, Any]:
    embedder = src.embedder_info()
    if embedder is not None:
        dst.check_embedder(*embedder)  # invariant 7: the target takes the source's embedder
    key = CHECKPOINT_PREFIX + source_id
    dst.settle_checkpoints()  # a killed run's last COMMIT may still be landing
    saved = dst.read_meta(key)
    state: dict[str, Any] | None = json.loads(saved) if saved and resume else None
    resumed = state is not None
    if state is None:
        stats = dst.stats()
        empty = not stats.get("records") and not stats.get("chunks")
        if not empty:
            _refuse_conflicts(src, dst, namespaces, batch_size)
        state = {"bulk": empty}
        dst.delete_meta_prefix(log_prefix(key))  # a log of an abandoned run
        if empty:
            dst.drop_vector_index()  # load first, build the graph once after
        dst.write_meta(key, json.dumps(state))
    if "after" in state:  # a checkpoint from before the batch log: becomes its first entry
        if state["after"]:
            last = (state["after"][0], state["after"][1])
            dst.write_meta(entry_key(key, 0), entry_value(None, last, int(state["records"])))
        state = {k: v for k, v in state.items() if k not in ("after", "records")}
        dst.write_meta(key, json.dumps(state))
    plan = plan_resume(dst.read_meta_prefix(log_prefix(key)), key)
    copy_started = time.perf_counter()
    tally = {"written": 0, "unchanged": 0}
    loaders = max(1, min(LOADERS, dst.pool_max))
    with contextlib.closing(_read_ahead(src, plan, batch_size, namespace)) as batches:
        load_batches(dst, key, batches, loaders, plan.next_seq, tally, progress)
    orphans = 0  # the history of deleted records (iter_all carries the rest)
    while True:
        rows = src.iter_orphan_history(int(state.get("history_after", 0)), batch_size)
        if not rows:
            break
        nxt = {**state, "history_after": int(rows[-1][0])}
        mine = [r for r in rows if namespace is None or r[1] == namespace]
        orphans += dst.load_history(mine, meta={key: json.dumps(nxt)})
        state.update(nxt)
    copy_s = time.perf_counter() - copy_started
    events = slots = 0
    lines = list(src.iter_events_and_slots(namespace))
    for start in range(0, len(lines), batch_size):
        ev, sl = dst.import_events_and_slots(lines[start : start + batch_size])
        events += ev
        slots += sl
    checkpoint_rows = 0
    if isinstance(src, Checkpoints) and isinstance(dst, Checkpoints):
        cps = list(src.iter_checkpoint_lines(namespace))
        for start in range(0, len(cps), batch_size):
            checkpoint_rows += dst.import_checkpoint_lines(cps[start : start + batch_size])
    index_s = 0.0
    if state["bulk"] or not dst.vector_index_exists():
        t0 = time.perf_counter()
        dst.build_vector_index()
        index_s = time.perf_counter() - t0
    verification: dict[str, Any] = (
        verify(src, dst, namespaces)
        if validate
        else {"namespaces": {ns: _counts(src, ns) for ns in namespaces}, "mismatches": []}
    )
    if verification["mismatches"]:
        raise StoreError(
            "migration verification failed: "
            + "; ".join(verification["mismatches"][:5])
            + (" …" if len(verification["mismatches"]) > 5 else ""),
            mismatches=verification["mismatches"],
        )
    dst.delete_meta_prefix(log_prefix(key))
    dst.write_meta(key, None)  # done: a later run starts over (and finds all unchanged)
    return {
        "dry_run": False,
        "resumed": resumed,
        "bulk_load": bool(state["bulk"]),
        "embedder": _embedder(dst),
        "records_before_resume": plan.records,
        "written": tally["written"],
        "unchanged": tally["unchanged"],
        "deleted_records_history_written": orphans,
        "events_written": events,
        "slot_threads_written": slots,
        "checkpoint_rows_copied": checkpoint_rows,
        "loaders": loaders,
        "copy_seconds": round(copy_s, 3),
        "index_seconds": round(index_s, 3),
        "verified": validate,
        "namespaces": verification["namespaces"],
    }


def _read_ahead(
    src: Source, plan: ResumePlan, batch_size: int, namespace: str | None = None
) -> Generator[tuple[Key | None, list[dict[str, Any]]], None, None]:
    """Yield the source's records in batches, read and converted on a second thread.

    Why: reading and converting a batch is client CPU and loading the previous one is
    server work, of about the same size; overlapping them shortens the copy.
    The reader thread owns the source iterator from start to end (a SQLite connection is
    bound to its thread); at most two batches wait in the queue. Each batch comes with
    the key of the record before it (its span's ``prev`` in the batch log), and the spans
    a killed run committed out of order are stepped over.
    """

    def batches() -> Iterator[tuple[Key | None, list[dict[str, Any]]]]:
        batch: list[dict[str, Any]] = []
        prev: Key | None = None
        items = src.iter_all(namespace, None, after=plan.after)
        for before, item in skip_islands(items, plan.after, plan.islands, _source_key):
            if not batch:  # a span over an island still holds only copied records
                prev = before
            batch.append(_import_row(item))
            if len(batch) >= batch_size:
                yield prev, batch
                batch = []
        if batch:
            yield prev, batch

    return prefetch(batches, "engramdb-migrate-reader")


def load_batches(
    dst: Target,
    key: str,
    batches: Iterator[tuple[Key | None, list[dict[str, Any]]]],
    loaders: int,
    first_seq: int,
    tally: dict[str, int],
    progress: Callable[[int], None] | None,
) -> None:
    """Load the batches through ``loaders`` connections at once, each batch in one
    transaction with its batch-log entry (see :mod:`engramdb.ops.batch_log`).

    Why several: one connection's COPY keeps one server process busy while the client
    waits; two overlap (docs/tuning.md). On the first error (or an interrupt of the
    caller) no new batch starts, the batches in flight finish (committed with their
    entries, or not at all), and the error is raised.

    An interrupt is waited out on the count of batches in flight, not on ``join()``: a
    ``Thread.join()`` interrupted by Ctrl-C can mark a thread that is still running as
    finished (CPython's bpo-45274 recovery releases the lock the running thread holds),
    so joining it again returns while its batch is still being written; and the
    interrupt may come while the loaders are still being started. A loader that begins
    after the interrupt takes no batch.
    """
    lock = threading.Lock()
    settled = threading.Condition(lock)  # notified when a batch in flight ends
    failures: list[BaseException] = []
    seq = [first_seq]
    in_flight = [0]

    def next_batch() -> tuple[int, Key | None, list[dict[str, Any]]] | None:
        with lock:
            if failures:
                return None
            try:
                prev, batch = next(batches)
            except StopIteration:
                return None
            seq[0] += 1
            in_flight[0] += 1
            return seq[0] - 1, prev, batch

    def load_one(number: int, prev: Key | None, batch: list[dict[str, Any]]) -> None:
        try:
            last = (batch[-1]["namespace"], batch[-1]["id"])
            entry: dict[str, str | None] = {
                entry_key(key, number): entry_value(prev, last, len(batch))
            }
            out = dst.load_records(batch, meta=entry)
            with lock:
                tally["written"] += out["written"]
                tally["unchanged"] += out["unchanged"]
                if progress:
                    progress(len(batch))
        finally:
            with lock:
                in_flight[0] -= 1
                settled.notify_all()

    def load() -> None:
        try:
            while (job := next_batch()) is not None:
                load_one(*job)
        except BaseException as exc:
            with lock:
                failures.append(exc)

    threads = [
        threading.Thread(target=load, name=f"engramdb-migrate-loader-{i}") for i in range(loaders)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except BaseException as exc:  # Ctrl-C: let the loaders finish their batch, then stop
        with lock:
            failures.append(exc)
            settled.wait_for(lambda: in_flight[0] == 0)
        for thread in threads:
            if thread.is_alive():  # started, and its batch done: it is about to return
                thread.join()
        raise
    if failures:
        raise failures[0]


def _source_key(item: dict[str, Any]) -> Key:
    """The (namespace, id) of an :meth:`Transfer.iter_all` item."""
    return (item["record"].namespace, item["record"].id)


def _import_row(item: dict[str, Any]) -> dict[str, Any]:
    """An :meth:`Transfer.iter_all` item in :meth:`Transfer.import_records`' batch shape."""
    rec = item["record"]

    def us(value: Any, field: str) -> int | None:
        return None if value is None else to_us(value, field)

    return {
        "namespace": rec.namespace,
        "id": rec.id,
        "text": rec.text,
        "content_hash": rec.content_hash,
        "type": rec.type,
        "user_id": rec.user_id or "",
        "agent_id": rec.agent_id or "",
        "thread_id": rec.thread_id or "",
        "metadata": json.dumps(rec.metadata, ensure_ascii=False),
        "tags": json.dumps(rec.tags, ensure_ascii=False),
        "source": rec.source or "",
        "importance": rec.importance,
        "version": rec.version,
        "event_id": rec.event_id,
        "occurred_at": us(rec.occurred_at, "occurred_at"),
        "created_at": us(rec.created_at, "created_at"),
        "updated_at": us(rec.updated_at, "updated_at"),
        "valid_from": us(rec.valid_from, "valid_from"),
        "valid_to": us(rec.valid_to, "valid_to"),
        "expires_at": us(rec.expires_at, "expires_at"),
        "chunks": [
            (int(s), int(e), body, np.frombuffer(blob, dtype=np.float32))
            for s, e, blob, body in item["chunks"]
        ],
        "history": [
            {"op": op, "version": ver, "before": b, "after": a, "at": at}
            for op, ver, b, a, at in item["history"]
        ],
    }


def _refuse_conflicts(src: Source, dst: Target, namespaces: list[str], batch_size: int) -> None:
    """Raise ConflictError before writing anything when a source id holds other data."""
    from engramdb.errors import ConflictError

    for ns in namespaces:
        for rows in _chunked(src.iter_digests(ns), max(batch_size, 1000)):
            have = dst.existing_digests(ns, [r[0] for r in rows])
            bad = [r[0] for r in rows if r[0] in have and have[r[0]] != (r[1], r[2])]
            if bad:
                raise ConflictError(
                    f"the target already holds different data for {len(bad)} id(s) of "
                    f"namespace {ns!r} (first: {bad[0]!r}); nothing was copied",
                    namespace=ns,
                    ids=bad[:20],
                )


def _chunked(rows: Iterable[tuple[str, int, str]], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def checksum(rows: Iterable[tuple[str, int, str]]) -> tuple[int, str]:
    """Count and SHA-256 of ``(id, version, content_hash)`` rows in the order given."""
    h = hashlib.sha256()
    n = 0
    for rid, version, chash in rows:
        h.update(f"{rid}\t{version}\t{chash}\n".encode())
        n += 1
    return n, h.hexdigest()


def verify(src: Source, dst: Source, namespaces: list[str]) -> dict[str, Any]:
    """Compare per-namespace counts and record checksums of two stores.

    Returns ``{"namespaces": {ns: {...}}, "mismatches": [text, ...]}``; an empty
    ``mismatches`` means the target holds exactly the source's data in those namespaces.
    """
    out: dict[str, Any] = {}
    mismatches: list[str] = []
    for ns in namespaces:
        s_counts, d_counts = _counts(src, ns), _counts(dst, ns)
        s_n, s_sum = checksum(src.iter_digests(ns))
        d_n, d_sum = checksum(dst.iter_digests(ns))
        for k in COUNTED:
            if s_counts[k] != d_counts[k]:
                mismatches.append(
                    f"namespace {ns!r}: {k} {s_counts[k]} in the source, {d_counts[k]} in the "
                    "target"
                )
        if s_sum != d_sum:
            mismatches.append(
                f"namespace {ns!r}: record checksum differs ({s_n} records in the source, "
                f"{d_n} in the target)"
            )
        out[ns] = {**s_counts, "checksum": s_sum, "target_checksum": d_sum}
    return {"namespaces": out, "mismatches": mismatches}


def _sample(
    src: Source, target_url: str, base: Settings, namespaces: list[str], size: int
) -> dict[str, Any]:
    """Look ``size`` random source records up in the target by id; search each by its own
    text too when the configured embedder is the one the store was built with."""
    import random

    from engramdb.embedders import resolve_embedder
    from engramdb.memory import Memory

    pool = [(ns, rid) for ns in namespaces for rid, _v, _h in src.iter_digests(ns)]
    chosen = random.Random().sample(pool, min(size, len(pool)))
    info = src.embedder_info()
    emb = resolve_embedder(None, base)
    searchable = info is not None and info == (emb.name, emb.dim)
    failures: list[dict[str, Any]] = []
    first = 0
    dst = open_store(target_url, base)
    try:
        for ns, rid in chosen:
            want = src.get_records(ns, [rid])[0]
            got = dst.get_records(ns, [rid])
            if not got or got[0].text != want.text:
                failures.append({"namespace": ns, "id": rid, "problem": "not found by id"})
    finally:
        dst.close()
    if searchable and not failures:
        with Memory(target_url, embedder=emb, settings=base) as mem:
            for ns, rid in chosen:
                want = src.get_records(ns, [rid])[0]
                hits = mem.with_namespace(ns).search(
                    want.text, top_k=3, user_id=want.user_id or None
                )
                if hits and (hits[0].record.id == rid or hits[0].record.text == want.text):
                    first += 1
                else:
                    failures.append({"namespace": ns, "id": rid, "problem": "not first"})
    if failures:
        raise StoreError(
            f"{len(failures)} of {len(chosen)} sampled record(s) failed in the target",
            failures=failures,
        )
    return {
        "size": len(chosen),
        "found_by_id": len(chosen),
        "first_by_own_text": first if searchable else None,
        "searched": searchable,
    }
