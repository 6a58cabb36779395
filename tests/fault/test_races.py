"""K3 duplicate race (threads and processes) and K4 lost update, on one SQLite file."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from engramdb import ConflictError

from .helpers import Repl, open_mem, raw_checks

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]


def race(n: int, fn: Any) -> list[Any]:
    """Run ``fn(i)`` on ``n`` threads released together by a barrier; return results/errors."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        try:
            return fn(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.parametrize("threads", [2, 8])
def test_dedup_race_threads(tmp_path: Path, threads: int) -> None:
    rounds = 60
    with open_mem(tmp_path / "k3.db") as mem:
        for r in range(rounds):
            text = f"identical content of round {r}"
            out = race(threads, lambda _i, t=text: mem.add(t, user_id="race")[0])
            errors = [o for o in out if isinstance(o, Exception)]
            assert not errors, errors
            assert len({o.id for o in out}) == 1, out
            assert sorted(o.outcome for o in out).count("written") == 1
            assert mem.count(user_id="race") == r + 1
        checks = raw_checks(tmp_path / "k3.db")
        assert checks["records"] == rounds
        assert checks["integrity"] == ["ok"]


def test_dedup_race_processes(tmp_path: Path) -> None:
    db = tmp_path / "k3p.db"
    with open_mem(db):
        pass  # create the schema once so the children only race on the adds
    procs = [Repl(db) for _ in range(3)]
    try:
        rounds = 25
        for r in range(rounds):
            at = time.time() + 0.03
            for p in procs:
                p.send("add_round", at=at, text=f"the same memory, round {r}")
            outs = [p.recv() for p in procs]
            assert all(o["ok"] for o in outs), outs
            ids = {o["result"][0] for o in outs}
            assert len(ids) == 1, outs
        with open_mem(db) as mem:
            assert mem.count(user_id="race") == rounds
    finally:
        for p in procs:
            p.close()


def test_concurrent_tag_updates_lose_nothing(tmp_path: Path) -> None:
    with open_mem(tmp_path / "k4.db") as mem:
        rid = mem.add("one record, many taggers", tags=["base"])[0].id
        out = race(50, lambda i: mem.update(rid, add_tags=[f"t{i}"]))
        assert not [o for o in out if isinstance(o, Exception)]
        rec = mem.get(rid)
        assert set(rec.tags) == {"base", *(f"t{i}" for i in range(50))}
        assert rec.version == 51
        assert len(mem.history(rid)) == 51


def test_conditional_update_has_one_winner(tmp_path: Path) -> None:
    with open_mem(tmp_path / "k4v.db") as mem:
        rid = mem.add("compare and set target")[0].id
        v = mem.get(rid).version
        out = race(50, lambda i: mem.update(rid, metadata={"writer": i}, expected_version=v))
        winners = [o for o in out if not isinstance(o, Exception)]
        losers = [o for o in out if isinstance(o, Exception)]
        assert len(winners) == 1, out
        assert len(losers) == 49 and all(isinstance(e, ConflictError) for e in losers), losers
        rec = mem.get(rid)
        assert rec.version == v + 1
        assert rec.metadata == winners[0].metadata


def test_tag_updates_from_processes(tmp_path: Path) -> None:
    """The tag merge is one SQL statement, so it holds across processes as well."""
    db = tmp_path / "k4p.db"
    with open_mem(db) as mem:
        rid = mem.add("shared record")[0].id
    procs = [Repl(db) for _ in range(3)]
    try:
        for round_ in range(6):
            at = time.time() + 0.03
            for n, p in enumerate(procs):
                p.send("update", rid, at=at, add_tags=[f"p{n}r{round_}"])
            assert all(p.recv()["ok"] for p in procs)
        with open_mem(db) as mem:
            tags = set(mem.get(rid).tags)
        assert tags == {f"p{n}r{r}" for n in range(3) for r in range(6)}
    finally:
        for p in procs:
            p.close()
