"""``reconcile`` and ``engramdb reconcile``: differences found on real SQLite files, repaired on
request, and the ``--every`` schedule run with a short interval and a stop condition."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from engramdb import Memory
from engramdb.cli import cli
from engramdb.sidebyside import reconcile, run_every
from engramdb.sidebyside.reconcile import parse_interval


def _pair(tmp_path: Path) -> tuple[str, str, dict[str, str]]:
    """Two stores that agree on 3 records and differ in 4 ways (in two namespaces)."""
    a_url, b_url = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    ids = {}
    with Memory(a_url, embedder="hash") as a, Memory(b_url, embedder="hash") as b:
        for i in range(3):
            r = a.add(f"shared {i}", user_id="u", tags=["t"])[0].record
            b.add(
                {"id": r.id, "text": r.text, "tags": ["t"], "occurred_at": r.occurred_at},
                user_id="u",
            )
        ids["only_a"] = a.add("only in a", user_id="u")[0].record.id
        ids["only_b"] = b.add("only in b", user_id="u")[0].record.id
        same = a.add("same text other tags", user_id="u", tags=["x"])[0].record
        b.add(
            {"id": same.id, "text": same.text, "tags": ["y"], "occurred_at": same.occurred_at},
            user_id="u",
        )
        ids["tags"] = same.id
        other = a.with_namespace("other").add("text in a", user_id="v")[0].record
        b.with_namespace("other").add({"id": other.id, "text": "text in b"}, user_id="v")
        ids["text"] = other.id
    return a_url, b_url, ids


def test_reconcile_finds_each_kind_and_repairs_it(tmp_path: Path) -> None:
    a_url, b_url, ids = _pair(tmp_path)
    with Memory(a_url, embedder="hash") as a, Memory(b_url, embedder="hash") as b:
        report = reconcile(a, b)
        assert report["differences"] == 4 and report["repaired"] == 0
        d = report["namespaces"]["default"]
        assert d["ids"] == {
            "missing_in_a": [ids["only_b"]],
            "missing_in_b": [ids["only_a"]],
            "different": [ids["tags"]],
        }
        assert report["namespaces"]["other"]["ids"]["different"] == [ids["text"]]
        fixed = reconcile(a, b, repair=True)
        assert fixed["differences"] == 4 and fixed["repaired"] == 4
        assert reconcile(a, b)["differences"] == 0
        assert b.with_namespace("other").get(ids["text"]).text == "text in a"  # a wins
        assert a.get(ids["only_b"]).text == "only in b"  # copied with its id
        assert b.get(ids["tags"]).tags == ["x"]


def test_cli_reports_exits_and_repairs(tmp_path: Path) -> None:
    a_url, b_url, _ = _pair(tmp_path)
    runner = CliRunner()
    out = tmp_path / "report.json"
    res = runner.invoke(cli, ["reconcile", "--a", a_url, "--b", b_url, "--output", str(out)])
    assert res.exit_code == 1, res.output  # differences remain
    assert "differences: 4, repaired: 0" in res.output
    assert json.loads(out.read_text())["differences"] == 4
    res = runner.invoke(cli, ["--json", "reconcile", "--a", a_url, "--b", b_url, "--repair"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["repaired"] == 4
    res = runner.invoke(cli, ["reconcile", "--a", a_url, "--b", b_url])
    assert res.exit_code == 0 and "differences: 0" in res.output


def test_cli_every_writes_a_dated_report_per_run(tmp_path: Path) -> None:
    a_url, b_url, _ = _pair(tmp_path)
    reports = tmp_path / "reports"
    reports.mkdir()
    res = CliRunner().invoke(
        cli,
        [
            "reconcile",
            "--a",
            a_url,
            "--b",
            b_url,
            "--repair",
            "--every",
            "0.01s",
            "--max-runs",
            "3",
            "--output",
            str(reports / "daily.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    files = sorted(reports.iterdir())
    assert len(files) == 3 and all(f.name.startswith("daily-2") for f in files)
    found = [json.loads(f.read_text())["differences"] for f in files]
    assert found == [4, 0, 0]  # the first run repaired everything
    res = CliRunner().invoke(cli, ["reconcile", "--a", a_url, "--b", b_url, "--every", "soon"])
    assert res.exit_code == 2 and "--every" in res.output


@pytest.mark.timeout(30)
def test_run_every_stops_on_its_condition() -> None:
    stop = threading.Event()
    seen: list[int] = []

    def job(run: int) -> None:
        seen.append(run)
        stop.set()  # e.g. a signal handler; the hour's pause is never taken

    assert run_every(3600, job, stop) == 1
    assert seen == [1]
    assert run_every(3600, job, stop) == 0  # already stopped: no run at all


@pytest.mark.timeout(30)
def test_run_every_waits_the_interval_between_runs() -> None:
    stop = threading.Event()
    waits: list[float] = []

    class Recorder(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0)
            return len(waits) >= 2

    assert run_every(86400, lambda run: None, Recorder()) == 2
    assert waits == [86400, 86400]
    assert not stop.is_set()


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400), ("30m", 1800), ("90s", 90), ("1d", 86400), ("5", 5)]
)
def test_intervals(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("bad", ["", "h", "-1h", "0s", "nan", "soon"])
def test_bad_intervals_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match="--every"):
        parse_interval(bad)
