"""Helpers of the REST tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import re
import socket

import httpx

MAX_TEXT = 2048
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
