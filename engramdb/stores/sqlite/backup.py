"""Backups: consistent online copies (SQLite's backup API) and restoring from one."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path

from engramdb.errors import (
    EngramError,
    NotFoundError,
    SchemaTooNewError,
    StoreError,
    ValidationError,
)
from engramdb.migrations import SCHEMA_HEAD, SCHEMA_REVISIONS
from engramdb.stores.idempotency_rows import CLEAR_SQL as CLEAR_IDEMPOTENCY_SQL
from engramdb.stores.rows import MAX_GENERATION_SQL, RESTORE_GENERATION_SQL
from engramdb.stores.sqlite.connection import Connections, translate
from engramdb.stores.sqlite.keys_table import carried_over
from engramdb.stores.sqlite.meta import read_meta
from engramdb.stores.sqlite.schema import current_revision, upgrade
from engramdb.stores.sqlite.vector_search import VectorSearch


class Backups:
    """Copies the file out while it is in use, and replaces its content by a copy."""

    def __init__(self, db: Connections, vectors: VectorSearch) -> None:
        self._db = db
        self._vectors = vectors

    def backup(self, path: Path) -> None:
        """Write a consistent online snapshot with SQLite's backup API."""
        path = Path(path)
        if path.resolve() == self._db.path:
            raise EngramError("the backup path is the store itself")
        tmp = path.with_name(path.name + ".partial")
        tmp.unlink(missing_ok=True)
        try:
            dst = sqlite3.connect(str(tmp))
            try:
                self._db.reader().backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
                # A copy opened as a store of its own is another store: its cache keys must
                # not be this one's (restore keeps the identity of the store it replaces).
                dst.execute("UPDATE meta SET value = ? WHERE key = 'store_id'", (uuid.uuid4().hex,))
                dst.commit()
                ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                dst.close()
            if ok != "ok":
                raise StoreError(f"backup failed its integrity check: {ok}")
            os.replace(tmp, path)
        except sqlite3.Error as exc:
            tmp.unlink(missing_ok=True)
            raise translate(exc, "backing up") from exc

    def restore(self, path: Path) -> None:
        """Replace the store's content with a backup (other processes must be stopped).

        The service's keys and audit log stay the live ones (``carried_over``); the
        idempotency keys are emptied, neither the live ones nor the backup's (why: see
        ``CLEAR_SQL`` in :mod:`engramdb.stores.idempotency_rows`).
        """
        path = Path(path)
        if not path.exists():
            raise NotFoundError(f"backup file {path} does not exist")
        staging: Path | None = None
        _check_header(path)
        try:
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                try:
                    ok = src.execute("PRAGMA integrity_check").fetchone()[0]
                    revision = current_revision(src)
                except sqlite3.DatabaseError as exc:
                    # The backup is bad, not this store: the caller's input to fix (422).
                    raise ValidationError(
                        f"{path} is not a readable SQLite database ({exc.sqlite_errorname})",
                        field="backup",
                    ) from exc
                if ok != "ok":
                    raise ValidationError(f"{path} fails its integrity check: {ok}", field="backup")
                if revision != SCHEMA_HEAD:
                    # A backup from an older engramdb: upgrade a staged copy, never the
                    # backup itself, then restore from the copy.
                    src, staging = _staged_upgrade(path, src)
                with self._db.lock:
                    dst = self._db.writer()
                    # Same store, older content: keep its identity and move every namespace's
                    # write generation past all values seen before, so no cached read of the
                    # replaced content (or of the backup's era) is ever served again.
                    store_id = read_meta(dst, "store_id")
                    top = int(dst.execute(MAX_GENERATION_SQL).fetchone()[0])
                    with carried_over(dst):  # the service's keys and audit log stay
                        src.backup(dst)
                    dst.execute(
                        "UPDATE meta SET value = ? WHERE key = 'index_epoch'", (uuid.uuid4().hex,)
                    )
                    dst.execute("UPDATE meta SET value = ? WHERE key = 'store_id'", (store_id,))
                    dst.execute(RESTORE_GENERATION_SQL.format(p="?"), (top + 1,))
                    dst.execute(CLEAR_IDEMPOTENCY_SQL)
            finally:
                src.close()
        except sqlite3.Error as exc:
            raise translate(exc, "restoring") from exc
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        self._vectors.drop_index(remove_sidecar=False)


_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_header(path: Path) -> None:
    """Refuse a file that is not a SQLite database before SQLite is asked to open it."""
    with open(path, "rb") as fh:
        head = fh.read(len(_SQLITE_HEADER))
    if head != _SQLITE_HEADER:
        raise ValidationError(f"{path} is not a SQLite database file", field="backup")


def _staged_upgrade(path: Path, src: sqlite3.Connection) -> tuple[sqlite3.Connection, Path]:
    """Copy an older backup to a temp folder and upgrade the copy to the head schema.

    Raises:
        SchemaTooNewError: the backup was written by a newer engramdb.
        ValidationError: the file is not an engramdb store.
    """
    rev = current_revision(src)
    if rev is None:
        src.close()
        raise ValidationError(
            f"{path} is not an engramdb store (no schema revision)", field="backup"
        )
    if rev not in SCHEMA_REVISIONS:
        src.close()
        raise SchemaTooNewError(
            f"backup {path} has schema revision {rev!r}, newer than this engramdb knows "
            f"(head {SCHEMA_HEAD!r}); upgrade engramdb",
            revision=rev,
        )
    staging = Path(tempfile.mkdtemp(prefix="engramdb-restore-"))
    staged = staging / "staged.db"
    copy = sqlite3.connect(staged)
    try:
        src.backup(copy)
    finally:
        copy.close()
        src.close()
    upgrade(staged)
    return sqlite3.connect(f"file:{staged}?mode=ro", uri=True), staging
