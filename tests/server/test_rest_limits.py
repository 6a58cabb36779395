"""Request limits: body size before reading, uploads, headers, content types, CORS, hosts.

In-process through the real ASGI app, and against a real uvicorn for what only a real
server does (its head-size limit, a body refused without being read, ENGRAM_HOST/PORT).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import ADMIN_HEADERS, ADMIN_KEY, ServerProcess, assert_error, free_port

from engramdb import HashEmbedder, Memory, Settings
from engramdb.server import create_app

NS = "/v1/namespaces/lim"
BODY_LIMIT = 4096
UPLOAD_LIMIT = 1024 * 1024
NDJSON = {"content-type": "application/x-ndjson"}
OCTET = {"content-type": "application/octet-stream"}


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Memory]:
    settings = Settings(
        url=f"sqlite:///{tmp_path / 'lim.db'}",
        embedder="hash",
        hash_dim=64,
        max_body_bytes=BODY_LIMIT,
        max_upload_bytes=UPLOAD_LIMIT,
        max_header_count=20,
        admin_key=ADMIN_KEY,
    )
    m = Memory(settings=settings, embedder=HashEmbedder(64))
    yield m
    m.close()


def _client(mem: Memory, **overrides: Any) -> httpx.AsyncClient:
    settings = mem.settings.model_copy(update=overrides)
    app = create_app(mem, settings=settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(
        transport=transport, base_url="http://engram.test", headers=ADMIN_HEADERS
    )


@pytest.fixture
async def lc(limited: Memory) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(limited) as c:
        yield c


async def _chunks(total: int, size: int = 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b" " * n


async def test_a_declared_length_over_the_limit_is_413_naming_it(lc: httpx.AsyncClient) -> None:
    body = json.dumps({"text": "x" * (BODY_LIMIT + 10)})
    resp = await lc.post(
        f"{NS}/records", content=body, headers={"content-type": "application/json"}
    )
    out = assert_error(resp, 413, "limit_exceeded")
    assert out["details"] == {"limit": "max_body_bytes", "max_bytes": BODY_LIMIT}
    assert "max_body_bytes" in str(out["message"])


async def test_a_chunked_body_is_counted_as_it_streams(lc: httpx.AsyncClient) -> None:
    # A generator body goes out chunked, without Content-Length.
    resp = await lc.post(
        f"{NS}/records",
        content=_chunks(BODY_LIMIT * 3),
        headers={"content-type": "application/json"},
    )
    out = assert_error(resp, 413, "limit_exceeded")
    assert out["details"]["limit"] == "max_body_bytes"
    small = await lc.post(f"{NS}/records", json={"text": "fits"})
    assert small.status_code == 200


async def test_a_body_that_stops_arriving_is_408(limited: Memory) -> None:
    never = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b'{"text": '
        await never.wait()  # the rest never comes
        yield b'"late"}'

    async with _client(limited, body_timeout_s=0.2) as c:
        resp = await c.post(
            f"{NS}/records", content=stalls(), headers={"content-type": "application/json"}
        )
        out = assert_error(resp, 408, "request_timeout")
        assert "body_timeout_s" in str(out["message"])
        assert (await c.post(f"{NS}/records", json={"text": "on time"})).status_code == 200


async def test_uploads_have_their_own_larger_limit(lc: httpx.AsyncClient) -> None:
    for i in range(40):
        await lc.post(f"{NS}/records", json={"text": f"record {i} " + "words " * 20})
    exported = await lc.post("/v1/admin/export", json={"namespace": "lim"})
    assert exported.status_code == 200 and BODY_LIMIT < len(exported.content) < UPLOAD_LIMIT
    resp = await lc.post(
        "/v1/admin/import", params={"namespace": "copy"}, content=exported.content, headers=NDJSON
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["imported"]["written"] == 40
    big = await lc.post("/v1/admin/restore", content=_chunks(UPLOAD_LIMIT * 2), headers=OCTET)
    out = assert_error(big, 413, "limit_exceeded")
    assert out["details"]["limit"] == "max_upload_bytes"
    declared = await lc.post(
        "/v1/admin/import",
        content=b"{}",
        headers={**NDJSON, "content-length": str(UPLOAD_LIMIT + 1)},
    )
    assert_error(declared, 413, "limit_exceeded")


async def test_uploads_take_only_their_content_types(
    lc: httpx.AsyncClient, limited: Memory
) -> None:
    await lc.post(f"{NS}/records", json={"text": "kept"})
    backup = await lc.post("/v1/admin/backup")
    exported = await lc.post("/v1/admin/export", json={"namespace": "lim"})
    for url, content, ctype in [
        ("/v1/admin/import", exported.content, "text/plain"),
        ("/v1/admin/import", exported.content, "application/json"),
        ("/v1/admin/import", exported.content, "application/x-www-form-urlencoded"),
        ("/v1/admin/restore", backup.content, "text/plain"),
        ("/v1/admin/restore", backup.content, "application/x-ndjson"),
    ]:
        resp = await lc.post(url, content=content, headers={"content-type": ctype})
        out = assert_error(resp, 415, "unsupported_media_type")
        assert out["details"]["content_type"] == ctype
    bare = await lc.post("/v1/admin/restore", content=backup.content)
    assert_error(bare, 415, "unsupported_media_type")
    # multipart, one file part: both uploads
    files = {"file": ("engram.db", backup.content, "application/octet-stream")}
    restored = await lc.post("/v1/admin/restore", files=files)
    assert restored.status_code == 200, restored.text
    files = {"file": ("export.jsonl", exported.content, "application/x-ndjson")}
    imported = await lc.post("/v1/admin/import", params={"namespace": "m"}, files=files)
    assert imported.status_code == 200 and imported.json()["imported"]["written"] == 1
    two = {"a": ("a", b"x"), "b": ("b", b"y")}
    assert (await lc.post("/v1/admin/import", files=two)).status_code in (400, 422)


async def test_too_many_or_too_large_headers_are_431(lc: httpx.AsyncClient) -> None:
    headers = {f"x-extra-{i}": "1" for i in range(25)}
    out = assert_error(await lc.get("/health", headers=headers), 431, "header_fields_too_large")
    assert out["details"]["limit"] == "max_header_count"
    big = {"x-big": "a" * 20_000}
    out = assert_error(await lc.get("/health", headers=big), 431, "header_fields_too_large")
    assert out["details"]["limit"] == "max_header_bytes"


async def test_cors_is_off_unless_origins_are_configured(limited: Memory) -> None:
    preflight = {
        "origin": "https://agent.example",
        "access-control-request-method": "POST",
    }
    async with _client(limited) as c:
        resp = await c.options(f"{NS}/search", headers=preflight)
        assert "access-control-allow-origin" not in resp.headers
        got = await c.get("/health", headers={"origin": "https://agent.example"})
        assert "access-control-allow-origin" not in got.headers
    async with _client(limited, cors_origins=["https://agent.example"]) as c:
        resp = await c.options(f"{NS}/search", headers=preflight)
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == "https://agent.example"
        other = await c.options(
            f"{NS}/search", headers={**preflight, "origin": "https://evil.example"}
        )
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


async def test_trusted_hosts(limited: Memory) -> None:
    async with _client(limited, trusted_hosts=["engram.test"]) as c:
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/health", headers={"host": "rebound.evil"})).status_code == 400


# ---------------------------------------------------------------------------- real server


class Serve(ServerProcess):
    """``engramdb serve`` with its address from ENGRAM_HOST/ENGRAM_PORT only."""

    def __init__(self, db: Path, log: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-c", "from engramdb.cli import main; main()", "--no-model"]
        argv += ["--url", f"sqlite:///{db}", "serve"]
        extra = {"ENGRAM_HOST": "127.0.0.1", "ENGRAM_PORT": str(self.port), **env}
        super().__init__("serve", argv, self.clean_env(**extra), log)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Serve]:
    server = Serve(
        tmp_path / "srv.db",
        tmp_path / "srv.log",
        ENGRAM_MAX_BODY_BYTES="65536",
        ENGRAM_MAX_HEADER_BYTES="4096",
    )
    yield server
    server.stop()


AUTH = f"Authorization: Bearer {ADMIN_KEY}\r\n"  # the raw requests' key header


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


@pytest.mark.slow
def test_a_real_server_honours_env_address_and_refuses_unread_bodies(served: Serve) -> None:
    served.wait_ready(served.base)
    assert httpx.get(f"{served.base}/health").status_code == 200
    # 300 MB announced, 1 KB sent: the answer comes without the rest being read.
    head = (
        f"POST {NS}/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{AUTH}"
        f"Content-Length: {300 * 1024 * 1024}\r\n\r\n"
    ).encode()
    reply = _raw(served.port, head + b"{" * 1024)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # 300 MB streamed without a length: refused once past the limit, and the connection
    # closed, so the client cannot push the rest.
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(
            f"POST {NS}/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{AUTH}"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk, sent = b"x" * (1 << 20), 0
        with contextlib.suppress(OSError):
            for _ in range(300):
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
        assert sent < 300 * len(chunk)
    # A request head past max_header_bytes is refused by the server itself.
    big_head = f"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 8192}\r\n\r\n".encode()
    reply = _raw(served.port, big_head)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert httpx.get(f"{served.base}/health").status_code == 200


async def test_docs_work_offline(lc: httpx.AsyncClient) -> None:
    resp = await lc.get("/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    # Nothing fetched from elsewhere: no script, no stylesheet link, no absolute URL.
    assert "<script" not in page and "<link" not in page and "://" not in page
    for path in ("/v1/namespaces/{ns}/search", "/v1/admin/restore", "/health"):
        assert path in page
    assert "SearchRequest" in page and "/openapi.json" in page


@pytest.mark.slow
def test_serve_against_an_unreachable_postgres_fails_in_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = ServerProcess.clean_env(ENGRAM_STORE_RETRY_S="300", ENGRAM_PORT=str(free_port()))
    argv = [sys.executable, "-c", "from engramdb.cli import main; main()", "--no-model"]
    argv += ["--url", f"postgresql://engram@127.0.0.1:{port}/engram", "serve"]
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)
    elapsed = time.monotonic() - started
    assert done.returncode == 8, done.stderr
    errors = [line for line in done.stderr.splitlines() if "rror" in line]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("Error: PostgreSQL at 127.0.0.1:") and "unreachable" in errors[0]
    assert elapsed < 200  # the 300 s retry window was not waited out
