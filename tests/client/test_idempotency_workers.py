"""Idempotency keys across processes: a retried write is applied once whichever process
answers it, because the keys live in the store (migration 0017), not in a worker.

Two ``engramdb serve`` processes on one SQLite file make "the retry reached another
worker" certain; ``serve --workers 2`` is then driven the way a client retries, each try
on a new connection, which the kernel hands to either worker.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from client_helpers import ADMIN_HEADERS, Service

pytestmark = pytest.mark.slow


def _add(base: str, key: str, text: str) -> httpx.Response:
    """One write with an Idempotency-Key, on a connection of its own."""
    with httpx.Client(base_url=base, timeout=60, headers=ADMIN_HEADERS) as http:
        return http.post(
            "/v1/namespaces/idem/records",
            json={"text": text, "user_id": "u"},
            headers={"Idempotency-Key": key},
        )


def _count(base: str, text: str) -> int:
    with httpx.Client(base_url=base, timeout=60, headers=ADMIN_HEADERS) as http:
        page = http.get("/v1/namespaces/idem/records", params={"limit": 1000})
        assert page.status_code == 200, page.text
        return sum(1 for r in page.json()["records"] if r["text"] == text)


def test_a_retry_on_another_process_replays_the_first_answer(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    one = Service(db, tmp_path / "one.log").wait_ready()
    two = Service(db, tmp_path / "two.log").wait_ready()
    try:
        first = _add(one.url, "retry-1", "written once, asked twice")
        again = _add(two.url, "retry-1", "written once, asked twice")
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert _count(one.url, "written once, asked twice") == 1
        fresh = _add(two.url, "retry-2", "a new key is a new write")
        assert fresh.status_code == 200 and "idempotent-replayed" not in fresh.headers
        assert fresh.json() != first.json()
    finally:
        # Not asserting the exit codes: two services on one file is this test's device
        # (the supported shape is --workers, below), and the first to stop may wait out
        # the drain deadline for the other's hold on the file.
        two.stop()
        one.stop()


def test_retries_to_serve_with_two_workers_apply_once(tmp_path: Path) -> None:
    served = Service(tmp_path / "workers.db", tmp_path / "workers.log", workers=2).wait_ready()
    try:
        answers = [_add(served.url, "w-1", "one write, twelve tries") for _ in range(12)]
        assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
        assert all(a.json() == answers[0].json() for a in answers)
        assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 11
        assert _count(served.url, "one write, twelve tries") == 1
    finally:
        assert served.stop() == 0, served.tail()
