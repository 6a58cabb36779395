"""Erasure (``forget``): a subject's rows removed for good, not even left in free pages."""

from __future__ import annotations

import sqlite3
from typing import Any

from engramdb.errors import EngramError
from engramdb.stores.rows import forget_checkpoints
from engramdb.stores.sqlite.chunks import delete_chunks_of
from engramdb.stores.sqlite.connection import SECURE_DELETE, Connections, translate


def file_bytes(conn: sqlite3.Connection) -> int:
    """The database's size in bytes as SQLite sees it (pages in use and free)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    return int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])


class Erasure:
    """Forgets a user, a thread or a whole namespace."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    def forget(
        self,
        namespace: str,
        user_id: str | None,
        thread_id: str | None,
        everything: bool,
        compact: bool = False,
    ) -> dict[str, int]:
        """Erase records, history, events and slots of a user, a thread or a namespace.

        Unlike ``delete`` this keeps no before-image: the rows are removed with
        ``secure_delete`` on, the keyword index is optimised and the WAL truncated, so the
        text does not linger in free pages. ``compact`` also rewrites the file without its
        free pages (``VACUUM``; other writers wait meanwhile), so it shrinks.
        """
        conds: list[str] = []
        args: list[Any] = []
        if user_id is not None:
            conds.append("user_id = ?")
            args.append(user_id)
        if thread_id is not None:
            conds.append("thread_id = ?")
            args.append(thread_id)
        if not conds and not everything:
            raise EngramError("forget needs a user_id, a thread_id or the whole namespace")
        cond = " AND ".join(["namespace = ?", *conds])
        args = [namespace, *args]
        counts: dict[str, int] = {}
        with self._db.lock:
            w = self._db.writer()
            w.execute("PRAGMA secure_delete = ON")
            try:
                with self._db.write("forgetting", [namespace]) as c:
                    rids = [r[0] for r in c.execute(f"SELECT rid FROM records WHERE {cond}", args)]
                    delete_chunks_of(c, rids)
                    counts["records"] = c.execute(
                        f"DELETE FROM records WHERE {cond}", args
                    ).rowcount
                    counts["history"] = c.execute(
                        f"DELETE FROM history WHERE {cond}", args
                    ).rowcount
                    counts["events"] = c.execute(f"DELETE FROM events WHERE {cond}", args).rowcount
                    counts["archived"] = c.execute(
                        f"DELETE FROM archived_records WHERE {cond}", args
                    ).rowcount
                    if user_id is None or thread_id is not None:
                        # Slots are a thread's: the user condition is dropped, by position
                        # (a user id equal to the namespace or the thread id is no reason to
                        # drop those too).
                        slot_cond = cond.replace("user_id = ? AND ", "") if user_id else cond
                        slot_args = [namespace, thread_id] if user_id else args
                        counts["slot_threads"] = c.execute(
                            f"DELETE FROM slot_versions WHERE {slot_cond}", slot_args
                        ).rowcount
                        c.execute(f"DELETE FROM slots WHERE {slot_cond}", slot_args)
                    else:
                        threads = [
                            r[0]
                            for r in c.execute(
                                "SELECT thread_id FROM slot_versions "
                                "WHERE namespace = ? AND user_id = ?",
                                (namespace, user_id),
                            )
                        ]
                        for t in threads:
                            c.execute(
                                "DELETE FROM slots WHERE namespace = ? AND thread_id = ?",
                                (namespace, t),
                            )
                            c.execute(
                                "DELETE FROM slot_versions WHERE namespace = ? AND thread_id = ?",
                                (namespace, t),
                            )
                        counts["slot_threads"] = len(threads)
                    if user_id is None:
                        # A thread's (or the namespace's) agent checkpoints go with it; they
                        # name no user, so forgetting a user leaves them.
                        counts["checkpoints"] = forget_checkpoints(c, "?", namespace, thread_id)
                    c.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
                if compact:
                    before = file_bytes(w)
                    w.execute("VACUUM")
                    counts["bytes_freed"] = max(0, before - file_bytes(w))
                w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise translate(exc, "forgetting") from exc
            finally:
                self._db.reset_writer_pragma(f"secure_delete = {SECURE_DELETE}")
        return counts
