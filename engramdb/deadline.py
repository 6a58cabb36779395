"""The time budget of a read (``search_timeout_ms``), shared by the engine and the stores.

Why: a search, list or count over a large scope with a costly filter could hold a worker
for minutes. The engine opens a budget around each such call (:func:`read_budget`); the
stores enforce it where the time goes: SQLite through a progress handler on its read
connections (:func:`sqlite_progress`, which interrupts the statement), PostgreSQL through
``statement_timeout`` set from :func:`remaining_ms`. Past the budget the call fails with
:class:`~engramdb.errors.QueryTimeoutError` (504), never with a partial answer.

A context variable, like the read floor in :mod:`engramdb.consistency`: it follows the call
into the thread that runs it. A leaf module: every layer may import it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from engramdb.errors import QueryTimeoutError

# (deadline on the monotonic clock, the budget in ms) of the read in progress, if any.
_BUDGET: ContextVar[tuple[float, int] | None] = ContextVar("engramdb_read_budget", default=None)
clock: Callable[[], float] = time.monotonic


@contextmanager
def read_budget(ms: int) -> Iterator[None]:
    """Give the reads inside ``ms`` milliseconds (0: no budget); an outer budget stays."""
    if ms <= 0 or _BUDGET.get() is not None:
        yield
        return
    token = _BUDGET.set((clock() + ms / 1000, ms))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def remaining_ms() -> int | None:
    """Milliseconds left in the current budget (None when there is none)."""
    budget = _BUDGET.get()
    if budget is None:
        return None
    return int((budget[0] - clock()) * 1000)


def expired() -> bool:
    """True when the current read has used up its budget."""
    left = remaining_ms()
    return left is not None and left <= 0


def timeout_error(doing: str) -> QueryTimeoutError:
    """The error of a read stopped past its budget."""
    budget = _BUDGET.get()
    ms = budget[1] if budget is not None else 0
    return QueryTimeoutError(
        f"{doing} took longer than search_timeout_ms={ms}; narrow the filter or the scope, "
        "or raise the setting",
        limit="search_timeout_ms",
        timeout_ms=ms,
    )


@contextmanager
def paused() -> Iterator[None]:
    """Run the block outside the current budget, and give the budget back its time.

    Why: catching a derived index up with the table (after a bulk load, a million rows) is
    work shared by every later read, not the caller's own query. Counted against one
    search's budget it failed that search, and interrupted it could be started again by
    every next one and never finish.
    """
    budget = _BUDGET.get()
    if budget is None:
        yield
        return
    token = _BUDGET.set(None)
    started = clock()
    try:
        yield
    finally:
        _BUDGET.reset(token)
        deadline, ms = budget
        _BUDGET.set((deadline + (clock() - started), ms))


def check(doing: str) -> None:
    """Raise :class:`QueryTimeoutError` when the budget is used up."""
    if expired():
        raise timeout_error(doing)


def sqlite_progress() -> int:
    """SQLite progress handler: non-zero interrupts the running statement."""
    return 1 if expired() else 0
