"""Keys in a real ``engramdb serve --workers 2``: the admin key printed once on the first
start, and a revocation that every worker process honours with its next request.

A keep-alive connection stays with the worker that accepted it, so reads bracketed by two
``/health`` calls naming the same pid check each worker process on its own.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest
from server_helpers import ServerProcess, cli_argv, free_port

pytestmark = pytest.mark.slow

KEY = re.compile(r"ek_[0-9a-f]{16}_[A-Za-z0-9_\-]{43}")


class Service(ServerProcess):
    """``engramdb serve`` on a SQLite file, with no ENGRAM_ADMIN_KEY."""

    def __init__(self, db: Path, workers: int, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = self.clean_env(
            with_admin_key=False, ENGRAM_URL=f"sqlite:///{db}", ENGRAM_EMBEDDER="hash"
        )
        argv = cli_argv() + ["serve", "--port", str(self.port), "--workers", str(workers)]
        super().__init__("serve", argv, env, log)


def by_worker(base: str, key: str, workers: int = 2) -> dict[int, set[int]]:
    """The statuses a keyed read gets from each of ``workers`` distinct worker processes.

    A sample counts when ``/health`` names the same pid just before and just after the
    keyed read on one keep-alive connection (a connection stays with the process that
    accepted it; a sample whose connection moved is dropped).
    """
    seen: dict[int, set[int]] = {}
    for _ in range(400):  # the kernel picks the accepting process; keep asking
        with httpx.Client(base_url=base, timeout=30) as c:
            before = c.get("/health").json()["pid"]
            got = c.get("/v1/namespaces/alpha/records", headers={"Authorization": f"Bearer {key}"})
            if c.get("/health").json()["pid"] == before:
                seen.setdefault(before, set()).add(got.status_code)
        if len(seen) >= workers:
            return seen
    pytest.fail(f"only workers {sorted(seen)} answered")


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
        with httpx.Client(base_url=server.base, timeout=30, headers=admin) as c:
            made = [c.post("/v1/admin/keys", json={"namespace": "alpha"}).json() for _ in range(2)]
            for k in made:
                assert list(by_worker(server.base, k["key"]).values()) == [{200}, {200}]
            # Revoked through one worker: every worker refuses the key from its next request.
            assert c.delete(f"/v1/admin/keys/{made[0]['id']}").status_code == 200
        assert list(by_worker(server.base, made[0]["key"]).values()) == [{401}, {401}]
        # Revoked by another process entirely (the CLI on the store): every worker refuses it.
        revoke = subprocess.run(
            cli_argv() + ["--url", f"sqlite:///{db}", "keys", "revoke", made[1]["id"]],
            env=ServerProcess.clean_env(with_admin_key=False),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert revoke.returncode == 0, revoke.stdout + revoke.stderr
        assert list(by_worker(server.base, made[1]["key"]).values()) == [{401}, {401}]
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
