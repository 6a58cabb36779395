"""Schemathesis against a live ``engramdb serve``: no 5xx, every response as declared.

Cases are generated from the service's own OpenAPI document (its patterns and bounds), a
bounded number per operation with a fixed seed (``derandomize``), and sent over a real
socket to a real uvicorn on a fresh SQLite store (the hash embedder: no model).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)
from server_helpers import ServerProcess, free_port

EXAMPLES = 15


class Live(ServerProcess):
    """``engramdb serve`` on a free port."""

    def __init__(self, db: Path, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-c", "from engramdb.cli import main; main()", "--no-model"]
        argv += ["--url", f"sqlite:///{db}", "serve", "--port", str(self.port)]
        super().__init__("live", argv, self.clean_env(), log)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    server = Live(tmp / "live.db", tmp / "live.log")
    server.wait_ready(server.base)
    yield server
    server.stop()


@pytest.mark.slow
def test_every_operation_answers_as_declared(live: Live) -> None:
    # A loop over the operations rather than ``schemathesis.pytest``'s lazy fixture, whose
    # node-id rewriting does not run under pytest 9.
    api = schemathesis.openapi.from_url(f"{live.base}/openapi.json")
    failures: list[str] = []
    ran = 0
    for result in api.get_all_operations():
        operation = result.ok()
        ran += 1

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=live.base,
                checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
                timeout=180,  # reembed to "minilm" loads the real model on first use
            )

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # report every operation's failures
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")
    assert ran >= 25
    assert not failures, "\n\n".join(failures)
