"""Helpers of the REST tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from pydantic import SecretStr

from engramdb import Settings

MAX_TEXT = 2048
# The admin key the REST tests serve with (ENGRAM_ADMIN_KEY), and the header that sends it.
ADMIN_KEY = "test-admin-key-0123456789abcdef"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


def with_admin_key(settings: Settings) -> Settings:
    """``settings`` with :data:`ADMIN_KEY` as the service's admin key."""
    return settings.model_copy(update={"admin_key": SecretStr(ADMIN_KEY)})


# What must never leak from an error body: SQL, tracebacks, driver names, file paths.
LEAKS = re.compile(
    r"\bSELECT\b|\bINSERT\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE FROM\b|\bWHERE\b|Traceback|"
    r"File \"|sqlite3\.|\.py\b"
)


def free_port() -> int:
    """A free TCP port on the loopback interface, chosen at run time."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def assert_error(resp: httpx.Response, status: int, error: str | None = None) -> dict[str, object]:
    """Check an error response: status, the {error, message, details} shape, no leaks."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "message", "details"}, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    if error is not None:
        assert body["error"] == error, body
    assert not LEAKS.search(resp.text), resp.text
    return body


STARTUP_TIMEOUT = 90.0  # a spawned worker imports the whole stack on a loaded machine


def cli_argv() -> list[str]:
    """How to run this environment's ``engramdb`` command (its script, else the module)."""
    cli = Path(sys.executable).with_name("engramdb")
    return [str(cli)] if cli.exists() else [sys.executable, "-m", "engramdb.cli"]


class ServerProcess:
    """A service subprocess on a free loopback port: its base URL, its log, readiness and a
    graceful stop. Subclasses choose the command line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log_fh, stderr=subprocess.STDOUT)

    @staticmethod
    def clean_env(with_admin_key: bool = True, **extra: str) -> dict[str, str]:
        """This process's environment without ENGRAM_* settings, offline, with the tests'
        admin key (ENGRAM_ADMIN_KEY) unless ``with_admin_key`` is False, plus ``extra``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        env["HF_HUB_OFFLINE"] = "1"
        if with_admin_key:
            env["ENGRAM_ADMIN_KEY"] = ADMIN_KEY
        env.update(extra)
        return env

    def tail(self, lines: int = 40) -> str:
        """The end of the service's log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def workers(self) -> set[int]:
        """The pids of the supervisor's live worker processes (uvicorn spawns them)."""
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return set()
        out = set()
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE and any(
                    "spawn_main" in part for part in child.cmdline()
                ):
                    out.add(child.pid)
            except psutil.NoSuchProcess:
                continue
        return out

    def wait_ready(self, base: str, deadline: float | None = None) -> None:
        """Wait until ``/health`` answers 200 (fail the test if the process exits first)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT if deadline is None else deadline
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"{self.name} not ready in {STARTUP_TIMEOUT}s:\n{self.tail()}")

    def stop(self) -> int:
        """SIGTERM (the graceful drain), then SIGKILL after 30 s; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log_fh.close()
        return self.proc.returncode
