"""CLI fixtures: a fresh SQLite file per test and a runner that invokes ``engramdb``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engramdb.cli import cli

Run = Callable[..., Result]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A URL of a fresh store file."""
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def run(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    """Invoke ``engramdb --no-model --url <db_url> ARGS`` in-process; return the result."""
    for var in ("ENGRAM_URL", "ENGRAM_NAMESPACE", "ENGRAM_EMBEDDER"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, base: bool = True) -> Result:
        prefix = ["--no-model", "--url", db_url] if base else []
        return runner.invoke(cli, [*prefix, *args], input=input, catch_exceptions=False)

    return invoke


def out_json(result: Result) -> Any:
    """The JSON document a ``--json`` command printed on stdout."""
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def err_json(result: Result) -> Any:
    """The JSON error body a failed ``--json`` command printed on stderr."""
    assert result.stdout == ""
    return json.loads(result.stderr)
