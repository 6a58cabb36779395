"""Keys in a real ``engramdb serve --workers 2``: the admin key printed once on the first
start, and a revocation that every worker process honours with its next request.

A keep-alive connection stays with the worker that accepted it, so a connection per worker
(told apart by the pid ``/health`` reports) checks each process on its own.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from server_helpers import ServerProcess, free_port

pytestmark = pytest.mark.slow

KEY = re.compile(r"ek_[0-9a-f]{16}_[A-Za-z0-9_\-]{43}")
CLI = Path(sys.executable).with_name("engramdb")


def cli_argv() -> list[str]:
    return [str(CLI)] if CLI.exists() else [sys.executable, "-m", "engramdb.cli"]


class Service(ServerProcess):
    """``engramdb serve`` on a SQLite file, with no ENGRAM_ADMIN_KEY."""

    def __init__(self, db: Path, workers: int, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = self.clean_env(ENGRAM_URL=f"sqlite:///{db}", ENGRAM_EMBEDDER="hash")
        argv = cli_argv() + ["serve", "--port", str(self.port), "--workers", str(workers)]
        super().__init__("serve", argv, env, log)


def one_connection_per_worker(base: str, workers: int) -> dict[int, httpx.Client]:
    """Keep-alive clients, one pinned to each worker process (by the pid it reports)."""
    pinned: dict[int, httpx.Client] = {}
    for _ in range(400):  # the kernel picks the accepting process; keep asking
        if len(pinned) == workers:
            return pinned
        c = httpx.Client(base_url=base, timeout=30)
        pid = c.get("/health").json()["pid"]
        if pid in pinned:
            c.close()
        else:
            pinned[pid] = c
    pytest.fail(f"only workers {sorted(pinned)} answered")


def status(c: httpx.Client, pid: int, key: str) -> int:
    """The status of a keyed read on ``c``, checking that worker ``pid`` still serves it."""
    assert c.get("/health").json()["pid"] == pid
    resp = c.get("/v1/namespaces/alpha/records", headers={"Authorization": f"Bearer {key}"})
    assert c.get("/health").json()["pid"] == pid
    return resp.status_code


def test_the_admin_key_is_printed_once_and_revocation_reaches_every_worker(
    tmp_path: Path,
) -> None:
    db = tmp_path / "served.db"
    server = Service(db, 2, tmp_path / "first.log")
    try:
        server.wait_ready(server.base)
        printed = sorted(set(KEY.findall(server.log.read_text(errors="replace"))))
        assert len(printed) == 1, server.tail()  # the key, and a curl line that uses it
        admin = {"Authorization": f"Bearer {printed[0]}"}
        pinned = one_connection_per_worker(server.base, 2)
        try:
            (pid1, one), (pid2, two) = pinned.items()
            made = [
                one.post("/v1/admin/keys", json={"namespace": "alpha"}, headers=admin).json()
                for _ in range(2)
            ]
            for k in made:
                assert status(one, pid1, k["key"]) == 200
                assert status(two, pid2, k["key"]) == 200
            # Revoked through worker 1: worker 2 refuses the key with its next request.
            assert one.delete(f"/v1/admin/keys/{made[0]['id']}", headers=admin).status_code == 200
            assert status(two, pid2, made[0]["key"]) == 401
            assert status(one, pid1, made[0]["key"]) == 401
            # Revoked by another process entirely (the CLI on the store): both refuse it.
            revoke = subprocess.Popen(
                cli_argv() + ["--url", f"sqlite:///{db}", "keys", "revoke", made[1]["id"]],
                env=ServerProcess.clean_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            while revoke.poll() is None:  # keep both connections alive meanwhile
                for pid, c in pinned.items():
                    assert c.get("/health").json()["pid"] == pid
                with contextlib.suppress(subprocess.TimeoutExpired):
                    revoke.wait(timeout=0.5)
            assert revoke.returncode == 0, revoke.stdout.read() if revoke.stdout else ""
            assert status(one, pid1, made[1]["key"]) == 401
            assert status(two, pid2, made[1]["key"]) == 401
        finally:
            for c in pinned.values():
                c.close()
    finally:
        assert server.stop() == 0
    # A second start prints no key: the first one is in force (only its hash is stored).
    again = Service(db, 1, tmp_path / "second.log")
    try:
        again.wait_ready(again.base)
        assert KEY.findall(again.log.read_text(errors="replace")) == []
        with httpx.Client(base_url=again.base, timeout=30, headers=admin) as c:
            keys = c.get("/v1/admin/keys").json()["keys"]
            assert [k["revoked_at"] is not None for k in keys if not k["admin"]] == [True, True]
            actions = [e["action"] for e in c.get("/v1/admin/audit").json()["entries"]]
            assert actions == ["revoke_key", "revoke_key", "create_key", "create_key"]
    finally:
        assert again.stop() == 0
    assert printed[0] not in (tmp_path / "second.log").read_text(errors="replace")
