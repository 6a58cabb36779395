"""The supervisor of ``engramdb serve --workers 2`` replaces a worker that dies while its
health ping is in flight, without waiting out the healthcheck timeout.

The service waits up to ``WORKER_HEALTHCHECK_S`` (60 s) for a worker to answer a ping, so a
slow-starting worker is not killed as hung. A worker killed while a ping to it was
unanswered used to leave the service a worker short for that whole minute (uvicorn's own
check waits on the pipe alone, and the supervisor holds the pipe's other end).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from server_helpers import STARTUP_TIMEOUT, ServerProcess, cli_argv, free_port

from engramdb.server.connections import WORKER_HEALTHCHECK_S

pytestmark = pytest.mark.slow

WORKERS = 2
# Far below the healthcheck timeout that the old check waited out, far above the
# supervisor's tick (0.5 s) plus one slice of the wait (DEATH_CHECK_S).
REPLACED_WITHIN_S = WORKER_HEALTHCHECK_S / 2


class Service(ServerProcess):
    """``engramdb serve --workers 2`` on a SQLite file."""

    def __init__(self, db: Path, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = self.clean_env(ENGRAM_URL=f"sqlite:///{db}", ENGRAM_EMBEDDER="hash")
        argv = cli_argv() + ["serve", "--port", str(self.port), "--workers", str(WORKERS)]
        super().__init__("serve", argv, env, log)


def pids_answering(base: str, until: Callable[[set[int]], bool]) -> set[int]:
    """The worker pids that answer ``/health``, asked until ``until(pids)`` holds.

    Each request on a new connection: a connection stays with the worker that accepted it,
    and the kernel picks the accepting worker.
    """
    seen: set[int] = set()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not until(seen) and time.monotonic() < deadline:
        seen.add(httpx.get(f"{base}/health", timeout=30).json()["pid"])
    return seen


def test_a_worker_killed_while_its_ping_is_unanswered_is_replaced_at_once(
    tmp_path: Path,
) -> None:
    server = Service(tmp_path / "served.db", tmp_path / "serve.log")
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        server.wait_ready(server.base, deadline)
        while len(server.workers()) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.2)
        before = server.workers()
        assert len(before) == WORKERS, server.tail()
        # Every worker has answered a request, so each has finished starting up.
        answered = pids_answering(server.base, until=lambda seen: seen == before)
        assert answered == before, (answered, before)
        victim = min(before)
        # A stopped worker reads no ping: the supervisor's next ping to it stays unanswered
        # (it pings every worker every half second), as for a worker killed mid-ping.
        os.kill(victim, signal.SIGSTOP)
        time.sleep(2.0)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        while time.monotonic() < killed_at + WORKER_HEALTHCHECK_S * 2:
            now = server.workers()
            if victim not in now and len(now) == WORKERS:
                break
            time.sleep(0.1)
        replaced_in = time.monotonic() - killed_at
        after = server.workers()
        assert victim not in after and len(after) == WORKERS, (before, after, server.tail())
        assert replaced_in < REPLACED_WITHIN_S, f"replaced {replaced_in:.1f} s after the kill"
        # The replacement serves (the kernel picks the accepting worker: keep asking).
        replacement = after - before
        served = pids_answering(server.base, until=lambda seen: bool(seen & replacement))
        assert served & replacement, f"the replacement {replacement} never answered"
        assert "died" in server.log.read_text(errors="replace"), server.tail()
    finally:
        assert server.stop() == 0, server.tail()
