"""A real ``engramdb serve``: graceful SIGTERM under writes, and slow clients cut off."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import ADMIN_HEADERS, ServerProcess, free_port

from engramdb import HashEmbedder, Memory, Settings

CLIENTS = 4
ACKS_BEFORE_SIGTERM = 10


class Serve(ServerProcess):
    """``engramdb serve`` on a free port (address from ENGRAM_HOST/ENGRAM_PORT)."""

    def __init__(self, db: Path, log: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-c", "from engramdb.cli import main; main()", "--no-model"]
        argv += ["--url", f"sqlite:///{db}", "serve"]
        extra = {"ENGRAM_HOST": "127.0.0.1", "ENGRAM_PORT": str(self.port), **env}
        super().__init__("serve", argv, self.clean_env(**extra), log)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Serve]:
    server = Serve(tmp_path / "s.db", tmp_path / "s.log", ENGRAM_HEADER_TIMEOUT_S="1")
    server.wait_ready(server.base)
    yield server
    server.stop()


@pytest.mark.slow
def test_sigterm_during_writes_keeps_every_acknowledged_write(
    served: Serve, tmp_path: Path
) -> None:
    acked: list[list[str]] = [[] for _ in range(CLIENTS)]
    enough = threading.Barrier(CLIENTS + 1)
    errors: list[str] = []

    def writer(k: int) -> None:
        waited = False
        with httpx.Client(base_url=served.base, timeout=60, headers=ADMIN_HEADERS) as c:
            for i in range(100_000):
                try:
                    resp = c.post(
                        "/v1/namespaces/drain/records", json={"text": f"client {k} write {i}"}
                    )
                except httpx.TransportError:
                    break
                if resp.status_code != 200:
                    errors.append(f"{resp.status_code} {resp.text[:200]}")
                    break
                acked[k].append(resp.json()["results"][0]["id"])
                if not waited and len(acked[k]) >= ACKS_BEFORE_SIGTERM:
                    waited = True
                    enough.wait(timeout=120)
        if not waited:
            enough.abort()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    enough.wait(timeout=120)  # every client has had writes acknowledged
    assert served.stop() == 0, served.tail()
    for t in threads:
        t.join(timeout=120)
    # The drain ends connections; it never answers a write with a server error.
    assert not [e for e in errors if e.startswith("5")], errors
    ids = [rid for per in acked for rid in per]
    assert len(ids) >= CLIENTS * ACKS_BEFORE_SIGTERM
    settings = Settings(url=f"sqlite:///{tmp_path / 's.db'}", embedder="hash", hash_dim=384)
    with Memory(settings=settings, embedder=HashEmbedder(384), namespace="drain") as mem:
        stored = {r.id for r in mem.get_many(ids[:1000])}
        for start in range(1000, len(ids), 1000):
            stored |= {r.id for r in mem.get_many(ids[start : start + 1000])}
        assert set(ids) <= stored, f"{len(set(ids) - stored)} acknowledged writes lost"


@pytest.mark.slow
def test_a_request_head_that_trickles_in_is_cut_off(served: Serve) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=60) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finished
        assert sock.recv(1024) == b""  # closed by the server after header_timeout_s
    assert httpx.get(f"{served.base}/health").status_code == 200
