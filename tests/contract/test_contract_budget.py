"""Contract: a search, list or count past ``search_timeout_ms`` fails with QueryTimeoutError.

The budget's clock is our own module attribute (``engramdb.deadline.clock``): the tests move
it past the deadline instead of waiting for a slow query, so they never depend on timing.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator

import pytest

from engramdb import Memory, QueryTimeoutError
from engramdb import deadline as dl
from engramdb.stores.sqlite.connection import translate


@pytest.fixture
def late_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clock whose first reading opens the budget and every later one is an hour on."""
    ticks = itertools.chain([1000.0], itertools.repeat(4600.0))
    monkeypatch.setattr(dl, "clock", lambda: next(ticks))
    yield


def test_reads_past_their_budget_fail_clearly(mem: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    mem.add("a record to look for", user_id="u", metadata={"k": 1})
    assert mem.settings.search_timeout_ms > 0
    calls = {
        "search": lambda: mem.search("record", user_id="u"),
        "count": lambda: mem.count({"metadata.k": 1}),
        "list": lambda: mem.list(user_id="u"),
    }
    for name, call in calls.items():
        ticks = itertools.chain([1000.0], itertools.repeat(4600.0))
        monkeypatch.setattr(dl, "clock", lambda t=ticks: next(t))
        with pytest.raises(QueryTimeoutError) as err:
            call()
        assert err.value.details["limit"] == "search_timeout_ms", name
        assert "search_timeout_ms" in err.value.message
    monkeypatch.setattr(dl, "clock", lambda: 1000.0)
    assert mem.count({"metadata.k": 1}) == 1  # a read within its budget is untouched
    mem.add("writes are never cut short")


def test_the_sqlite_progress_handler_interrupts_a_long_statement(late_clock: None) -> None:
    conn = sqlite3.connect(":memory:")
    conn.set_progress_handler(dl.sqlite_progress, 1000)
    long = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) "
        "SELECT count(*) FROM n"
    )
    with dl.read_budget(50):
        with pytest.raises(sqlite3.OperationalError) as raised:
            conn.execute(long).fetchone()
        err = translate(raised.value, "counting records")
    assert isinstance(err, QueryTimeoutError)
    conn.close()


def test_no_budget_when_the_setting_is_zero() -> None:
    with dl.read_budget(0):
        assert dl.remaining_ms() is None and not dl.expired()
    with dl.read_budget(1000), dl.read_budget(1):  # an outer budget stays
        assert dl.remaining_ms() is not None and dl.remaining_ms() > 1  # type: ignore[operator]
