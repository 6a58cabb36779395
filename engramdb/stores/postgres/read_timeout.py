"""A budgeted read's ``statement_timeout`` on PostgreSQL, kept on the connection between reads.

Why: a read under a time budget (:mod:`engramdb.deadline`) bounds its statements by what is
left of the budget through the server's ``statement_timeout``. Setting it before each read
and putting the default back after cost two round trips on top of every read: a hybrid
search makes three reads, so six, about 0.85 ms of a 4.2 ms filtered search at p50 on the
100k benchmark store. So the timeout a read set stays on the connection, and the next
budgeted read on it keeps it when it is within :func:`close_enough` of what that read needs
(a search's reads are milliseconds apart, and each search opens a budget of the same
length). Every other use of the connection (writes, reads without a budget) puts the
default back first, and so does a read that set a short timeout (under
:data:`KEEP_MIN_MS`), so a pooled connection never carries a timeout that could cut a
connection check, a replica probe or a write.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from engramdb.deadline import remaining_ms

# A timeout shorter than this is put back to the default when its read ends.
KEEP_MIN_MS = 1_000
# How far a kept timeout may be from what a read needs: this many ms, or 1% of it.
SLACK_MS = 20

# A timeout whose setting failed midway: whatever the server holds is put back or set again.
UNKNOWN = -1
# The statement_timeout (ms) a budgeted read left set on each connection.
_kept: weakref.WeakKeyDictionary[psycopg.Connection[Any], int] = weakref.WeakKeyDictionary()


def close_enough(kept: int, wanted: int) -> bool:
    """Whether a kept timeout may stand for the one a read wants: a statement is then cut
    at most ``SLACK_MS`` (or 1%) before or after the budget ends."""
    return abs(kept - wanted) <= max(SLACK_MS, wanted // 100)


def restore_default(conn: psycopg.Connection[Any]) -> None:
    """Put the session's default ``statement_timeout`` back if a budgeted read left one."""
    if _kept.pop(conn, None) is not None:
        conn.execute("SET statement_timeout = DEFAULT")


@contextmanager
def budgeted(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Bound the statements of a read on ``conn`` by what is left of its budget (none
    without a budget)."""
    left = remaining_ms()
    if left is None:
        restore_default(conn)
        yield
        return
    wanted = max(1, left)
    kept = _kept.get(conn)
    if kept is None or not close_enough(kept, wanted):
        _kept[conn] = UNKNOWN  # until the statement below succeeds
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(wanted),))
        _kept[conn] = kept = wanted
    try:
        yield
    finally:
        if (
            kept < KEEP_MIN_MS
            and not conn.closed
            and conn.info.transaction_status == TransactionStatus.IDLE
        ):
            restore_default(conn)
