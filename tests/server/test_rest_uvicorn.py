"""The service as it runs: a real uvicorn on a free loopback port, one or two processes."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from server_helpers import ADMIN_HEADERS, ADMIN_KEY, ServerProcess, free_port

from engramdb import Settings, ValidationError
from engramdb.server import run
from engramdb.server.runner import settings_to_env


class Served(ServerProcess):
    """A ``run(...)`` in a subprocess, its base URL and its log."""

    def __init__(self, db: Path, workers: int, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        code = (
            "from engramdb import Settings\n"
            "from engramdb.server import run\n"
            f"run(Settings(url={f'sqlite:///{db}'!r}, embedder='hash', hash_dim=64,"
            f" admin_key={ADMIN_KEY!r}),"
            f" '127.0.0.1', {self.port}, {workers})\n"
        )
        super().__init__("server", [sys.executable, "-c", code], self.clean_env(), log)

    def wait_ready(self, base: str | None = None, deadline: float | None = None) -> None:
        """Wait for this server's ``/health``."""
        super().wait_ready(self.base if base is None else base, deadline)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type[Served]]:
    started: list[Served] = []

    class Tracked(Served):
        def __init__(self, db: Path, workers: int, log: Path) -> None:
            super().__init__(db, workers, log)
            started.append(self)

    yield Tracked
    for s in started:
        s.stop()


def fresh_client(base: str) -> httpx.Client:
    """A client that opens a new connection per request (so the kernel picks a worker)."""
    return httpx.Client(
        base_url=base,
        timeout=30,
        limits=httpx.Limits(max_keepalive_connections=0),
        headers=ADMIN_HEADERS,
    )


def test_single_worker_serves_and_drains_on_sigterm(serve: type[Served], tmp_path: Path) -> None:
    server = serve(tmp_path / "one.db", 1, tmp_path / "one.log")
    server.wait_ready()
    with fresh_client(server.base) as c:
        added = c.post("/v1/namespaces/live/records", json={"text": "uvicorn is serving"})
        assert added.status_code == 200, added.text
        rid = added.json()["results"][0]["id"]
        assert c.get(f"/v1/namespaces/live/records/{rid}").json()["text"] == "uvicorn is serving"
        hits = c.post("/v1/namespaces/live/search", json={"query": "serving", "mode": "keyword"})
        assert [h["record"]["id"] for h in hits.json()["hits"]] == [rid]
        missing = c.get("/v1/namespaces/live/records/nope")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        assert c.get("/openapi.json").status_code == 200
    assert server.stop() == 0
    with sqlite3.connect(tmp_path / "one.db") as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 1
    conn.close()


@pytest.mark.slow
def test_two_workers_share_one_sqlite_file(serve: type[Served], tmp_path: Path) -> None:
    server = serve(tmp_path / "two.db", 2, tmp_path / "two.log")
    server.wait_ready()
    total = 40

    def add(i: int) -> int:
        with fresh_client(server.base) as c:
            resp = c.post(
                "/v1/namespaces/shared/records", json={"text": f"note number {i}", "user_id": "u"}
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["results"][0]["outcome"] == "written"
            pid: int = c.get("/health").json()["pid"]
            return pid

    with ThreadPoolExecutor(max_workers=8) as pool:
        pids = set(pool.map(add, range(total)))
    with fresh_client(server.base) as c:
        for _ in range(200):  # the kernel picks the accepting process; keep asking
            if len(pids) >= 2:
                break
            pids.add(c.get("/health").json()["pid"])
        counts = {c.post("/v1/namespaces/shared/records/count", json={}).json()["count"]
                  for _ in range(6)}  # fmt: skip
    assert len(pids) == 2, f"only pids {pids} answered"
    assert server.proc.pid not in pids  # the supervisor only supervises
    assert counts == {total}
    assert server.stop() == 0
    with sqlite3.connect(tmp_path / "two.db") as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == total
    conn.close()


def test_run_rejects_bad_worker_counts(tmp_path: Path) -> None:
    settings = Settings(url=f"sqlite:///{tmp_path / 'x.db'}", embedder="hash")
    with pytest.raises(ValidationError, match="workers"):
        run(settings, "127.0.0.1", 0, 0)
    with pytest.raises(ValidationError, match="in-memory"):
        run(Settings(url=":memory:", embedder="hash"), "127.0.0.1", 0, 2)


def test_settings_reach_workers_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Settings(
        url=f"sqlite:///{tmp_path / 'env.db'}",
        embedder="hash",
        hash_dim=32,
        synchronous="NORMAL",
        auto_migrate=False,
        max_text_bytes=123,
    )
    for key in list(os.environ):
        if key.startswith("ENGRAM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ENGRAM_MAX_CHUNK_TOKENS", "64")  # stale: the original has None
    for key, value in settings_to_env(original).items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    assert Settings() == original
