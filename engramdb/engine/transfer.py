"""Export, import and re-embedding: moving a store's data without losing any of it.

Export format (JSONL, one object per line), version 1::

    {"format": "engramdb-export", "version": 1, "embedder": {"name": ..., "dim": ...},
     "vectors": true, "exported_at": "..."}
    {"kind": "record", "record": {...}, "chunks": [{"start", "end", "index_text", "vector"?}],
     "history": [{"op", "version", "before", "after", "at"}]}
    {"kind": "event", ...}
    {"kind": "slots", "namespace", "thread_id", "values", "version"}
    {"kind": "history", "namespace", "record_id", "user_id", "thread_id", "op", "version",
     "before", "after", "at"}       (the history of deleted records: their tombstones)
    {"kind": "archived", "namespace", "id", "reason", "merged_into", "image", ...}
                                    (records consolidation archived: ``image`` is a record
                                     line as JSON text)
    {"kind": "checkpoint", "table": "checkpoint"|"blob"|"write", "namespace", "thread_id", ...}
                                    (an agent framework's thread checkpoints, row by row:
                                     :mod:`engramdb.stores.checkpoint_rows`)

Import keeps ids, times, versions and history, so an export re-imported gives back the same
data; re-importing is idempotent (existing ids are reported as unchanged).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engramdb.config import Settings
from engramdb.embedders.base import Embedder, check_vectors
from engramdb.engine import validation as v
from engramdb.engine.checkpoints import check_key
from engramdb.errors import ValidationError
from engramdb.query.filters import Node
from engramdb.stores.base import Archive, ArchivedRow, Checkpoints, Maintenance, Transfer
from engramdb.stores.checkpoint_rows import check_line
from engramdb.timeutil import to_us


class Embedding(Protocol):
    """What an import needs of the engine: its settings and its (checked) embedder.

    The engine passes itself; naming only these members keeps this module below it.
    """

    settings: Settings
    embedder: Embedder

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Embed texts, checking the embedder's output."""
        ...


FORMAT = "engramdb-export"
VERSION = 1


def export_jsonl(
    engine: Embedding,
    store: Transfer,
    path: Path,
    namespace: str | None,
    node: Node | None,
    vectors: bool,
    progress: Callable[[int], None] | None,
) -> int:
    """Write the export file atomically; return the number of records written."""
    tmp = path.with_name(path.name + ".partial")
    n = 0
    with open(tmp, "w", encoding="utf-8") as out:
        header = {
            "format": FORMAT,
            "version": VERSION,
            "embedder": {"name": engine.embedder.name, "dim": engine.embedder.dim},
            "vectors": vectors,
            "namespace": namespace,
            "exported_at": datetime.now(UTC).isoformat(),
        }
        out.write(json.dumps(header) + "\n")
        for item in store.iter_all(namespace, node):
            line = record_line(item, vectors)
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            n += 1
            if progress:
                progress(1)
        for row in store.iter_events_and_slots(namespace):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        if node is None and isinstance(store, Archive):
            # Records consolidation archived or merged away are data too: exported whole.
            for arch in store.iter_archived(namespace):
                out.write(json.dumps({"kind": "archived", **asdict(arch)}, ensure_ascii=False))
                out.write("\n")
        if node is None and isinstance(store, Checkpoints):
            # Thread checkpoints are data too (what resumes an agent): exported row by row.
            for cp_line in store.iter_checkpoint_lines(namespace):
                out.write(json.dumps(cp_line, ensure_ascii=False) + "\n")
        if node is None:  # a filtered export selects live records; tombstones match nothing
            for hist_line in _orphan_history(store, namespace):
                out.write(json.dumps(hist_line, ensure_ascii=False) + "\n")
        out.flush()
    tmp.replace(path)
    return n


def record_line(item: dict[str, Any], vectors: bool) -> dict[str, Any]:
    """The export line of one ``iter_all`` item (a record, its chunks, its history)."""
    chunks = []
    for start, end, blob, body in item["chunks"]:
        ch: dict[str, Any] = {"start": start, "end": end, "index_text": body}
        if vectors:
            ch["vector"] = np.frombuffer(blob, dtype=np.float32).tolist()
        chunks.append(ch)
    hist = [
        {
            "op": op,
            "version": ver,
            "before": json.loads(b) if b else None,
            "after": json.loads(a) if a else None,
            "at": at,
        }
        for op, ver, b, a, at in item["history"]
    ]
    return {
        "kind": "record",
        "record": item["record"].to_dict(),
        "chunks": chunks,
        "history": hist,
    }


def import_jsonl(
    engine: Embedding,
    store: Transfer,
    path: Path,
    namespace: str | None,
    progress: Callable[[int], None] | None,
) -> dict[str, int]:
    """Import an export file; ``namespace`` overrides the namespace of every line."""
    if not path.exists():
        raise ValidationError(f"import file {path} does not exist", field="path")
    counts = {"written": 0, "unchanged": 0, "conflicts": 0, "events": 0, "slots": 0}
    with open(path, encoding="utf-8") as f:
        try:
            header = json.loads(f.readline())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValidationError(f"{path}: the first line is not JSON") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValidationError(f"{path} is not an engramdb export (no header line)")
        if header.get("version") != VERSION:
            raise ValidationError(
                f"{path} has export format version {header.get('version')}, this engramdb "
                f"reads version {VERSION}"
            )
        emb = header.get("embedder") or {}
        same_embedder = (
            emb.get("name") == engine.embedder.name and emb.get("dim") == engine.embedder.dim
        )
        try:
            others, tombstones = _load_record_lines(
                engine, store, f, path, namespace, same_embedder, counts, progress
            )
        except ValidationError as exc:
            raise _with_progress(exc, counts) from exc
        except UnicodeDecodeError as exc:
            bad = ValidationError(f"{path}: not UTF-8 text (byte {exc.start} of a line)")
            raise _with_progress(bad, counts) from exc
        archived = [o["row"] for o in others if o["kind"] == "archived"]
        checkpoints = [o for o in others if o["kind"] == "checkpoint"]
        others = [o for o in others if o["kind"] not in ("archived", "checkpoint")]
        ev, sl = store.import_events_and_slots(others)
        if archived and isinstance(store, Archive):
            counts["archived"] = store.put_archived(archived)
        if checkpoints:
            if not isinstance(store, Checkpoints):
                raise ValidationError(f"{path} holds thread checkpoints; this store keeps none")
            counts["checkpoint_rows"] = store.import_checkpoint_lines(checkpoints)
        counts["events"] += ev
        counts["slots"] += sl
        counts["deleted_history"] = 0
        for i in range(0, len(tombstones), 1000):
            counts["deleted_history"] += store.load_history(tombstones[i : i + 1000])
    return counts


def _load_record_lines(
    engine: Embedding,
    store: Transfer,
    f: Any,
    path: Path,
    namespace: str | None,
    same_embedder: bool,
    counts: dict[str, int],
    progress: Callable[[int], None] | None,
) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Check every line after the header; import the records in batches as they come and
    return the checked event/slots lines and history rows (written after the records)."""
    batch: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    tombstones: list[tuple[Any, ...]] = []
    for lineno, line in enumerate(f, start=2):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path}:{lineno}: not JSON: {exc}") from exc
        if not isinstance(obj, dict) or obj.get("kind") not in KINDS:
            raise ValidationError(f"{path}:{lineno}: unknown line kind")
        if obj["kind"] == "history":
            tombstones.append(_history_row(obj, namespace, lineno))
        elif obj["kind"] == "archived":
            others.append({"kind": "archived", "row": _archived_row(obj, namespace, lineno)})
        elif obj["kind"] == "checkpoint":
            others.append(checkpoint_line(obj, namespace, lineno))
        elif obj["kind"] == "record":
            batch.append(prepare_import(engine, obj, namespace, same_embedder, lineno))
            if len(batch) >= 256:
                _flush(store, batch, counts, progress)
                batch = []
        else:
            others.append(_event_or_slots(engine, obj, namespace, lineno))
    _flush(store, batch, counts, progress)
    return others, tombstones


def _with_progress(exc: ValidationError, counts: dict[str, int]) -> ValidationError:
    """A bad line's error, saying what the import wrote before it (records go in batches
    as the file is read; event, slots and history lines only after every line passed)."""
    done = counts["written"]
    if not done:
        return exc
    return type(exc)(
        f"{exc.message}; the {done} new records on the lines before it were imported and "
        "stay (import the fixed file again: records already present are skipped)",
        **{**exc.details, "written": done},
    )


# Every kind of change a history entry records (consolidation adds the last five).
HISTORY_OPS = ("add", "update", "delete", "merge", "unmerge", "expire", "archive", "restore")
KINDS = ("record", "event", "slots", "history", "archived", "checkpoint")
_CHECKPOINT_KEYS = ("thread_id", "checkpoint_id", "parent_id", "task_id", "channel", "version")


def checkpoint_line(obj: dict[str, Any], namespace: str | None, lineno: int) -> dict[str, Any]:
    """Check an exported checkpoint row (types, key lengths); ``namespace`` overrides its own."""
    try:
        ns = v.check_namespace(namespace or obj.get("namespace"))
        line = check_line(obj, ns)
        for key in _CHECKPOINT_KEYS:
            if line.get(key) is not None:
                check_key(line[key], key)
        check_key(line["checkpoint_ns"], "checkpoint_ns", empty=True)
        return line
    except ValidationError as exc:
        raise ValidationError(f"line {lineno}: checkpoint line: {exc.message}") from exc
    except ValueError as exc:
        raise ValidationError(f"line {lineno}: malformed checkpoint line: {exc}") from exc


def _archived_row(obj: dict[str, Any], namespace: str | None, lineno: int) -> ArchivedRow:
    """Check an exported archive line (its image must be a record line)."""
    try:
        image = json.loads(obj["image"])
        if not isinstance(image, dict) or not isinstance(image.get("record"), dict):
            raise ValueError("image is not a record line")
        ns = v.check_namespace(namespace or obj["namespace"])
        image["record"]["namespace"] = ns
        return ArchivedRow(
            namespace=ns,
            id=v.check_id(obj["id"]),
            user_id=v.check_scope(obj.get("user_id") or None, "user_id") or "",
            thread_id=v.check_scope(obj.get("thread_id") or None, "thread_id") or "",
            reason=str(obj["reason"]),
            merged_into=obj.get("merged_into"),
            merge_group=obj.get("merge_group"),
            image=json.dumps(image, ensure_ascii=False),
            survivor=obj.get("survivor"),
            archived_at=int(obj["archived_at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            raise ValidationError(f"line {lineno}: archived line: {exc.message}") from exc
        raise ValidationError(f"line {lineno}: malformed archived line: {exc}") from exc


_HISTORY_FIELDS = ("record_id", "user_id", "thread_id", "op", "version", "before", "after", "at")


def _orphan_history(store: Any, namespace: str | None) -> Any:
    """Yield export lines for the history of deleted records (of one namespace or all)."""
    after = 0
    while True:
        rows = store.iter_orphan_history(after, 1000)
        if not rows:
            return
        for seq, ns, *rest in rows:
            after = seq
            if namespace is None or ns == namespace:
                line: dict[str, Any] = {"kind": "history", "namespace": ns}
                line.update(zip(_HISTORY_FIELDS, rest, strict=True))
                for image in ("before", "after"):
                    line[image] = json.loads(line[image]) if line[image] else None
                yield line


def _event_or_slots(
    engine: Embedding, obj: dict[str, Any], namespace: str | None, lineno: int
) -> dict[str, Any]:
    """Validate one ``event`` or ``slots`` line by the rules of ``log_event`` / ``set_slots``.

    These lines are written after every record batch, so a bad one must be found while the
    file is read, before anything is written; the store then sees only well-formed lines.
    """
    kind = obj["kind"]
    try:
        line = {
            "kind": kind,
            "namespace": v.check_namespace(namespace or obj.get("namespace")),
            "thread_id": v.check_thread(obj.get("thread_id")),
            "user_id": v.check_scope(obj.get("user_id") or None, "user_id") or "",
        }
        if kind == "event":
            return line | {
                "id": v.check_id(obj.get("id")),
                "actor": v.check_scope(obj.get("actor") or None, "actor") or "",
                "action": v.check_action(obj.get("action")),
                "payload": _payload(obj.get("payload")),
                "ts": _whole(obj, "ts"),
            }
        return line | {
            "version": _whole(obj, "version"),
            "updated_at": _whole(obj, "updated_at"),
            "values": v.check_slot_values(obj.get("values"), engine.settings, stored=True),
        }
    except ValidationError as exc:
        raise ValidationError(f"line {lineno}: malformed {kind} line: {exc.message}") from exc


def _payload(value: Any) -> dict[str, Any]:
    """An event's payload: a JSON object (not held to the metadata limits: a message event
    carries its turn's whole text)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(
            f"payload must be a JSON object, not {type(value).__name__}", field="payload"
        )
    return value


def _whole(obj: dict[str, Any], field: str) -> int:
    """A required integer field of an import line (a boolean is not one)."""
    value = obj.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer, not {value!r}", field=field)
    return value


def _history_row(obj: dict[str, Any], namespace: str | None, lineno: int) -> tuple[Any, ...]:
    """Validate one ``history`` line into ``load_history``'s row shape."""
    try:
        ns = v.check_namespace(namespace or obj.get("namespace"))
        op = obj["op"]
        if op not in HISTORY_OPS:
            raise ValidationError(f"line {lineno}: unknown history op {op!r}")
        images = [
            None if obj.get(k) is None else json.dumps(obj[k], ensure_ascii=False)
            for k in ("before", "after")
        ]
        return (
            0,
            ns,
            v.check_id(obj.get("record_id"), "record_id"),
            v.check_scope(obj.get("user_id") or None, "user_id") or "",
            v.check_scope(obj.get("thread_id") or None, "thread_id") or "",
            op,
            int(obj["version"]),
            *images,
            int(obj["at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            raise
        raise ValidationError(f"line {lineno}: malformed history line: {exc}") from exc


def prepare_import(
    engine: Embedding, obj: dict[str, Any], namespace: str | None, same_embedder: bool, lineno: int
) -> dict[str, Any]:
    """Check one record line of an export and turn it into the dict ``import_records``
    takes (vectors kept when the embedder is the same, else the text is embedded again)."""
    rec = obj.get("record")
    if not isinstance(rec, dict):
        raise ValidationError(f"line {lineno}: record line without a record")
    ns = v.check_namespace(namespace or rec.get("namespace"))
    text = v.check_text(rec.get("text"), engine.settings)
    chunks = obj.get("chunks") or [{"start": 0, "end": len(text), "index_text": text}]
    spans = []
    for ch in chunks:
        start, end = int(ch["start"]), int(ch["end"])
        if not 0 <= start < end <= len(text):
            raise ValidationError(f"line {lineno}: chunk span {start}-{end} is outside the text")
        spans.append((start, end, str(ch.get("index_text") or text[start:end]), ch.get("vector")))
    if same_embedder and all(s[3] is not None for s in spans):
        vecs = check_vectors(
            [s[3] for s in spans], len(spans), engine.embedder.dim, engine.embedder.name
        )
    else:
        vecs = engine.embed([text[s:e] for s, e, _, _ in spans])
    times = {}
    for f in ("occurred_at", "created_at", "updated_at", "valid_from", "valid_to", "expires_at"):
        times[f] = None if rec.get(f) is None else to_us(rec[f], f)
    return {
        "namespace": ns,
        "id": v.check_id(rec.get("id")),
        "text": text,
        "content_hash": v.content_hash(text),
        "type": v.check_type(rec.get("type") or "semantic"),
        "user_id": v.check_scope(rec.get("user_id"), "user_id") or "",
        "agent_id": v.check_scope(rec.get("agent_id"), "agent_id") or "",
        "thread_id": v.check_scope(rec.get("thread_id"), "thread_id") or "",
        "metadata": json.dumps(
            v.check_metadata(rec.get("metadata"), engine.settings), ensure_ascii=False
        ),
        "tags": json.dumps(v.check_tags(rec.get("tags"), engine.settings), ensure_ascii=False),
        "source": v.check_source(rec.get("source")) or "",
        "importance": v.check_importance(rec.get("importance")),
        "version": int(rec.get("version") or 1),
        "event_id": rec.get("event_id"),
        **times,
        "chunks": [(s, e, body, vec) for (s, e, body, _), vec in zip(spans, vecs, strict=True)],
        "history": obj.get("history") or [],
    }


def _flush(
    store: Transfer,
    batch: list[dict[str, Any]],
    counts: dict[str, int],
    progress: Callable[[int], None] | None,
) -> None:
    if not batch:
        return
    result = store.import_records(batch)
    for k, n in result.items():
        counts[k] = counts.get(k, 0) + n
    if progress:
        progress(len(batch))


def reembed(
    store: Maintenance, embedder: Embedder, batch: int, progress: Callable[[int], None] | None
) -> int:
    """Compute every chunk's vector with ``embedder`` into a side table, then switch at once.

    Resumable: vectors already computed for the same target embedder are kept when an
    interrupted run is started again. Searches keep using the old vectors until the switch,
    which happens in one transaction together with the new embedder name and dimension.
    """
    target = f"{embedder.name}|{embedder.dim}"
    store.reembed_begin(target)
    done = 0
    while True:
        pending = store.reembed_pending(batch)
        if not pending:
            break
        vecs = check_vectors(
            embedder.embed([t for _, t in pending]), len(pending), embedder.dim, embedder.name
        )
        store.reembed_put([(cid, vec) for (cid, _), vec in zip(pending, vecs, strict=True)])
        done += len(pending)
        if progress:
            progress(len(pending))

    def embed_stragglers(texts: list[str]) -> np.ndarray:
        return check_vectors(embedder.embed(texts), len(texts), embedder.dim, embedder.name)

    store.reembed_finish(embedder.name, embedder.dim, embed_stragglers)
    return done
