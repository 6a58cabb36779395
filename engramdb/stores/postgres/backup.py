"""Online backups of a PostgreSQL store and restoring them, without ``pg_dump``.

A backup is a tar archive of a JSON header (format, schema revision, row counts, the
embedder's dimension) and one ``COPY`` text stream per table, all read from one snapshot and
written atomically (``.partial``, fsync, rename). It does not depend on ``pg_dump``
matching the server's version. A restore replaces the whole content in one transaction and
keeps the store's identity.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engramdb.errors import NotFoundError, ValidationError
from engramdb.migrations import SCHEMA_HEAD
from engramdb.stores.idempotency_rows import CLEAR_SQL as CLEAR_IDEMPOTENCY_SQL
from engramdb.stores.postgres.connection import Database
from engramdb.stores.postgres.meta import meta_value
from engramdb.stores.postgres.schema import current_revision
from engramdb.stores.postgres.vectors import VectorIndexes
from engramdb.stores.rows import MAX_GENERATION_SQL, RESTORE_GENERATION_SQL
from engramdb.timeutil import now_us

BACKUP_FORMAT = "engramdb-postgres-backup"
DERIVED_ENTITY_TABLES = (
    "entity_queue",
    "entity_links",
    "relation_evidence",
    "relations",
    "entity_mentions",
    "entities",
    "record_answer_kinds",
)
BACKUP_TABLES = {
    "meta": "key, value",
    "records": (
        "rid, id, namespace, user_id, agent_id, thread_id, type, text, content_hash, metadata, "
        "metadata_raw, tags, source, importance, occurred_at, created_at, updated_at, "
        "valid_from, valid_to, expires_at, version, event_id"
    ),
    "chunks": "id, rid, namespace, user_id, ord, start_pos, end_pos, body, fts, embedding",
    "history": "seq, namespace, record_id, user_id, thread_id, op, version, before, after, at",
    "events": "seq, id, namespace, thread_id, user_id, actor, action, payload, ts",
    "slots": "namespace, thread_id, name, value",
    "slot_versions": "namespace, thread_id, user_id, version, updated_at",
    "reembed_vectors": "chunk_id, vector",
    "archived_records": (
        "namespace, id, user_id, thread_id, reason, merged_into, merge_group, image, "
        "survivor, archived_at"
    ),
    # Thread checkpoints of agent frameworks (migration 0013): what resumes an agent.
    "thread_checkpoints": (
        "namespace, thread_id, checkpoint_ns, checkpoint_id, parent_id, type, checkpoint, "
        "metadata, versions, run_id, created_at"
    ),
    "thread_checkpoint_blobs": "namespace, thread_id, checkpoint_ns, channel, version, type, blob",
    "thread_checkpoint_writes": (
        "namespace, thread_id, checkpoint_ns, checkpoint_id, task_id, idx, task_path, channel, "
        "type, blob"
    ),
}
IDENTITIES = {"records": "rid", "chunks": "id", "history": "seq", "events": "seq"}


def _backup_header(tar: tarfile.TarFile, path: Path) -> dict[str, Any]:
    try:
        member = tar.extractfile("header.json")
        header: dict[str, Any] = json.loads(member.read()) if member else {}
    except (KeyError, ValueError, tarfile.TarError) as exc:  # ValueError: bad JSON or UTF-8
        raise ValidationError(f"{path} is not an engramdb PostgreSQL backup") from exc
    if header.get("format") != BACKUP_FORMAT or header.get("version") != 1:
        raise ValidationError(f"{path} is not an engramdb PostgreSQL backup (version 1)")
    if header.get("schema_revision") != SCHEMA_HEAD:
        raise ValidationError(
            f"backup {path} has schema revision {header.get('schema_revision')!r}, "
            f"this store is at {SCHEMA_HEAD!r}"
        )
    return header


class Backup:
    """Backup and restore of one store.

    ``restored`` runs after a restore has committed: what the store derived from its old
    content (such as remembered scope sizes) is dropped there.
    """

    def __init__(self, db: Database, indexes: VectorIndexes, restored: Callable[[], None]) -> None:
        self._db = db
        self._indexes = indexes
        self._restored = restored

    def backup(self, path: Path) -> None:
        """Write a consistent online snapshot: every table ``COPY``-ed from one snapshot.

        The file is a tar archive of a JSON header (format, schema revision, row counts) and
        one ``COPY`` text stream per table, written atomically (``.partial`` then rename).
        It does not depend on ``pg_dump`` matching the server's version.
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        tmp.unlink(missing_ok=True)
        try:
            with (
                tempfile.TemporaryDirectory(prefix="engramdb-backup-") as work,
                self._db.read("backing up", snapshot=True) as c,
            ):
                counts: dict[str, int] = {}
                for table, cols in BACKUP_TABLES.items():
                    counts[table] = 0
                    with (
                        open(Path(work) / f"{table}.copy", "wb") as out,
                        c.cursor().copy(f"COPY (SELECT {cols} FROM {table}) TO STDOUT") as copy,
                    ):
                        for data in copy:
                            out.write(data)
                            counts[table] += bytes(data).count(b"\n")
                header = {
                    "format": BACKUP_FORMAT,
                    "version": 1,
                    "schema_revision": current_revision(c),
                    "tables": {
                        t: {"columns": cols, "rows": counts[t]} for t, cols in BACKUP_TABLES.items()
                    },
                    "embedder_dim": meta_value(c, "embedder_dim"),
                    "taken_at_us": now_us(),
                }
                (Path(work) / "header.json").write_text(json.dumps(header))
                with tarfile.open(tmp, "w") as tar:
                    tar.add(Path(work) / "header.json", arcname="header.json")
                    for table in BACKUP_TABLES:
                        tar.add(Path(work) / f"{table}.copy", arcname=f"{table}.copy")
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def restore(self, path: Path) -> None:
        """Replace the store's whole content with a backup, in one transaction.

        The idempotency keys (not in a backup) are emptied in the same transaction, not
        kept: a live answer may be for a write the restore undid (why: see ``CLEAR_SQL`` in
        :mod:`engramdb.stores.idempotency_rows`).

        Raises:
            NotFoundError: there is no such file.
            ValidationError: the file is not a backup of this schema revision.
        """
        path = Path(path)
        if not path.exists():
            raise NotFoundError(f"backup file {path} does not exist")
        if not tarfile.is_tarfile(path):
            raise ValidationError(f"{path} is not an engramdb PostgreSQL backup")
        with tarfile.open(path, "r") as tar:
            header = _backup_header(tar, path)
            with self._db.write("restoring") as c:
                # Same store, older content: keep its identity; namespace_generations is not
                # in the backup and its store-wide row jumps past every value seen before,
                # so no cached read of the replaced content is ever served again.
                store_id = meta_value(c, "store_id")
                top = c.execute(MAX_GENERATION_SQL).fetchone()
                c.execute("TRUNCATE " + ", ".join(BACKUP_TABLES) + " RESTART IDENTITY CASCADE")
                # Entities are derived: emptied here and queued again by the records' COPY
                # (its insert trigger), so the restored store re-extracts its own texts.
                c.execute("TRUNCATE " + ", ".join(DERIVED_ENTITY_TABLES) + " RESTART IDENTITY")
                dim = header.get("embedder_dim")
                if dim:
                    self._indexes.set_dimension(c, int(dim))
                for table, spec in header["tables"].items():
                    if table not in BACKUP_TABLES or spec["columns"] != BACKUP_TABLES[table]:
                        raise ValidationError(f"backup {path}: unexpected table {table!r}")
                    member = tar.extractfile(f"{table}.copy")
                    if member is None:
                        raise ValidationError(f"backup {path} lacks table {table!r}")
                    with c.cursor().copy(
                        f"COPY {table} ({BACKUP_TABLES[table]}) FROM STDIN"
                    ) as copy:
                        while data := member.read(1 << 20):
                            copy.write(data)
                for table, col in IDENTITIES.items():
                    c.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'), "
                        f"COALESCE((SELECT max({col}) FROM {table}), 0) + 1, false)"
                    )
                c.execute(
                    "UPDATE meta SET value = %s WHERE key = 'index_epoch'", (uuid.uuid4().hex,)
                )
                c.execute("UPDATE meta SET value = %s WHERE key = 'store_id'", (store_id,))
                c.execute(RESTORE_GENERATION_SQL.format(p="%s"), (int(top[0] if top else 0) + 1,))
                c.execute(CLEAR_IDEMPOTENCY_SQL)
        self._restored()
