"""Helpers of the client tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

STARTUP_TIMEOUT = 90.0  # the service imports the whole stack on a loaded machine
ADMIN_KEY = "client-tests-admin-key-0123456789"  # ENGRAM_ADMIN_KEY of the test service
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
ENGRAMDB = str(Path(sys.executable).parent / "engramdb")


def free_port() -> int:
    """A free TCP port on the loopback interface, chosen at run time."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Service:
    """``engramdb serve --no-model`` in a subprocess on free loopback ports, with ZeroMQ."""

    def __init__(self, db: Path, log: Path, *, workers: int = 1, zmq_by_env: bool = False) -> None:
        self.port = free_port()
        self.zmq_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.zmq_url = f"tcp://127.0.0.1:{self.zmq_port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        env["HF_HUB_OFFLINE"] = "1"
        env["ENGRAM_ADMIN_KEY"] = ADMIN_KEY
        argv = [ENGRAMDB, "serve", "--url", f"sqlite:///{db}", "--no-model"]
        argv += ["--port", str(self.port), "--workers", str(workers)]
        if zmq_by_env:
            env["ENGRAM_ZMQ_URL"] = self.zmq_url
        else:
            argv += ["--zmq", self.zmq_url]
        self._log_fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log_fh, stderr=subprocess.STDOUT)

    def namespace_key(self, namespace: str, read_only: bool = False) -> str:
        """A new key of ``namespace`` made through the admin API (the way an operator would)."""
        resp = httpx.post(
            f"{self.url}/v1/admin/keys",
            json={"namespace": namespace, "read_only": read_only},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=30,
        )
        assert resp.status_code == 201, resp.text
        key: str = resp.json()["key"]
        return key

    def tail(self, lines: int = 40) -> str:
        """The end of the service's log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self) -> Service:
        """Wait until ``/health`` answers 200 (fail the test if the process exits first)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"service exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"service not ready in {STARTUP_TIMEOUT}s:\n{self.tail()}")

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
