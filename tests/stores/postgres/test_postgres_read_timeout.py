"""PostgreSQL: a read under a time budget bounds its statements with ``statement_timeout``,
which stays on the connection for the next budgeted read and never reaches other uses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from engramdb import HashEmbedder, Memory, QueryTimeoutError, Settings
from engramdb import deadline as dl
from engramdb.deadline import read_budget
from engramdb.engine.core import Engine
from engramdb.stores.postgres import PostgresStore
from engramdb.stores.postgres.connection import Database
from engramdb.stores.postgres.read_timeout import close_enough

pytestmark = pytest.mark.postgres


@pytest.fixture
def one_conn(postgres_url: str) -> Iterator[tuple[Memory, Database]]:
    """A store whose pool holds one connection: every call gets the same one back."""
    store = PostgresStore(postgres_url, pool_min=1, pool_max=1)
    mem = Memory(_engine=Engine(Settings(url=postgres_url), HashEmbedder(64), store))
    mem.add([f"line {i} of the log" for i in range(20)], user_id="u")
    yield mem, store._db
    mem.close()


@pytest.fixture
def timeout_sets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statement_timeout changes sent from now on, in order."""
    sent: list[str] = []
    real = psycopg.Connection.execute

    def execute(self: psycopg.Connection[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        text = str(query)
        if "statement_timeout" in text and not text.startswith("SHOW"):
            sent.append(text)
        return real(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    return sent


def shown(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SHOW statement_timeout").fetchone()
    assert row is not None
    return str(row[0])


def shown_ms(conn: psycopg.Connection[Any]) -> int:
    """The session's statement_timeout in ms (the server shows "0", "59997ms", "1min")."""
    text = shown(conn)
    for unit, scale in (("ms", 1), ("min", 60_000), ("s", 1_000)):
        if text.endswith(unit):
            return int(text[: -len(unit)]) * scale
    return int(text)


def test_a_statement_past_the_budget_is_cut(one_conn: tuple[Memory, Database]) -> None:
    _, db = one_conn
    with (
        read_budget(300),
        pytest.raises(QueryTimeoutError),
        db.read("sleeping past the budget") as conn,
    ):
        conn.execute("SELECT pg_sleep(30)")
    # The connection is fine afterwards, and a write is not bound by that budget.
    with db.write("checking the timeout") as conn:
        assert shown(conn) == "0"


def test_budgeted_reads_keep_the_timeout_and_other_uses_see_the_default(
    one_conn: tuple[Memory, Database], timeout_sets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mem, db = one_conn
    # The budget's clock stands still: each read wants exactly its budget, however slow
    # the machine (the slack itself is tested below, without a server).
    monkeypatch.setattr(dl, "clock", lambda: 1000.0)
    with read_budget(60_000):
        with db.read("one") as conn:
            first = shown(conn)
        with db.read("two") as conn:
            assert shown(conn) == first
    assert first != "0"
    assert len(timeout_sets) == 1  # one setting for both reads
    # A new budget of the same length: the kept timeout is close enough.
    with read_budget(60_000):
        assert len(mem.search("line 4", user_id="u", top_k=5).hits) == 5
        with db.read("three") as conn:
            assert shown(conn) == first
    assert len(timeout_sets) == 1
    # A write, and a read without a budget, get the session's default back first.
    with db.write("writing") as conn:
        assert shown(conn) == "0"
    assert len(timeout_sets) == 2 and timeout_sets[1].startswith("SET statement_timeout")
    with read_budget(60_000), db.read("four") as conn:
        assert shown_ms(conn) == 60_000  # set again
    with db.read("five, without a budget") as conn:
        assert shown(conn) == "0"
    # A much shorter budget sets its own timeout, and puts the default back when it ends.
    timeout_sets.clear()
    with read_budget(500), db.read("short") as conn:
        assert shown_ms(conn) == 500
    assert len(timeout_sets) == 2  # set, then put back
    with db._primary() as conn:  # the connection as the pool holds it
        assert shown(conn) == "0"


def test_how_close_a_kept_timeout_must_be() -> None:
    assert close_enough(9_990, 10_000) and close_enough(10_050, 10_000)
    assert not close_enough(10_150, 10_000) and not close_enough(9_000, 10_000)
    assert close_enough(500, 515) and not close_enough(500, 530)
