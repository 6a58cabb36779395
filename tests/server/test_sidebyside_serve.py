"""A real ``engramdb serve`` run side by side with a Chroma collection (the hash embedder).

What must hold: a REST write to the namespace run side by side lands in Chroma too (under
the same id) and in the service's store; reads follow the share set through
``PUT /v1/admin/read-from-new`` (admin key only, validated, audited, written to the control
file); compared reads show in the agreement figures; reads that disagree trip the automatic
rollback, which the route reports; and the admin page shows the share and changes it
through its CSRF-checked form.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import ADMIN_HEADERS, ADMIN_KEY, ServerProcess, assert_error, free_port
from test_auth_serve import cli_argv

from engramdb import HashEmbedder, Memory
from engramdb.ops.legacy import migrate_legacy
from engramdb.ops.legacy_memory import LegacyMemory
from engramdb.server.admin_page import BEARER_NONCE, csrf_token
from engramdb.sidebyside.control import RoutingControl
from tests.ops.chroma_helpers import build_chroma, chroma_docs

pytestmark = pytest.mark.slow
EMB = HashEmbedder(384)
ROUTE = "/v1/admin/read-from-new"
WAIT_S = 60.0  # comparisons run on the server's worker thread: wait for them, not a time


class SideBySideService(ServerProcess):
    """``engramdb serve`` over a SQLite store, side by side with a Chroma collection."""

    def __init__(self, tmp: Path, source: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.control = tmp / "routing.json"
        env = self.clean_env(
            ENGRAM_URL=f"sqlite:///{tmp / 'new.db'}",
            ENGRAM_EMBEDDER="hash",
            ENGRAM_SIDEBYSIDE_OLD=source,
            ENGRAM_SIDEBYSIDE_SAMPLE="1",
            ENGRAM_SIDEBYSIDE_MIN_SAMPLES="3",
            # Latency is the machine's, not the stores': only agreement may roll back here.
            ENGRAM_SIDEBYSIDE_MAX_ADDED_P95_MS="1000000",
            ENGRAM_SIDEBYSIDE_QUEUE=str(tmp / "dual.queue"),
            ENGRAM_SIDEBYSIDE_CONTROL=str(self.control),
        )
        argv = cli_argv() + ["serve", "--port", str(self.port)]
        super().__init__("serve side by side", argv, env, tmp / "serve.log")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[SideBySideService, str]]:
    chroma = tmp_path / "chroma"
    build_chroma(chroma, 3, ("notes",))
    source = f"chroma://{chroma}?collection=notes"
    target = f"sqlite:///{tmp_path / 'new.db'}"
    assert migrate_legacy(source, target, embedder=EMB, log_file=None)["written"] == 3
    server = SideBySideService(tmp_path, source)
    try:
        server.wait_ready(server.base)
        yield server, source
    finally:
        server.stop()


def _wait_compared(c: httpx.Client, at_least: int) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        status: dict[str, Any] = c.get(ROUTE).json()
        if status["agreement"]["compared"] >= at_least:
            return status
        time.sleep(0.1)
    pytest.fail(f"fewer than {at_least} compared reads in {WAIT_S}s")


def test_serve_side_by_side_with_chroma(
    served: tuple[SideBySideService, str], tmp_path: Path
) -> None:
    server, source = served
    with httpx.Client(base_url=server.base, timeout=60, headers=ADMIN_HEADERS) as c:
        status = c.get(ROUTE).json()
        assert status["namespace"] == "notes" and status["old"] == source
        assert (status["read_from_new"], status["rolled_back"], status["rollbacks"]) == (
            0,
            False,
            0,
        )

        # A write lands in both; at 0% the old store answers the read, so it is in Chroma.
        made = c.post("/v1/namespaces/notes/records", json={"text": "Alice moved to Lisbon"})
        rid = made.json()["results"][0]["record"]["id"]
        assert c.get(f"/v1/namespaces/notes/records/{rid}").json()["text"] == (
            "Alice moved to Lisbon"
        )
        hits = c.post("/v1/namespaces/notes/search", json={"query": "Alice moved to Lisbon"})
        assert hits.status_code == 200, hits.text
        assert hits.json()["hits"][0]["record"]["id"] == rid  # Chroma's nearest, same id
        count = c.post("/v1/namespaces/notes/records/count", json={})
        assert count.json()["count"] == 4
        filtered = c.post(
            "/v1/namespaces/notes/search", json={"query": "x", "filter": {"user_id": "ana"}}
        )
        assert "does not support 'filters'" in assert_error(filtered, 422)["message"]
        other = c.post("/v1/namespaces/other/records", json={"text": "not side by side"})
        assert other.status_code == 200  # every other namespace: the service's store alone

        # Validation, and admin keys only.
        assert_error(c.put(ROUTE, json={"percent": 150}), 422)
        assert_error(c.put(ROUTE, json={"percent": "50"}), 422)
        assert_error(c.put(ROUTE, json={}), 422)
        key = c.post("/v1/admin/keys", json={"namespace": "notes"}).json()["key"]
        ns_key = {"Authorization": f"Bearer {key}"}
        assert_error(c.get(ROUTE, headers=ns_key), 403, "permission_denied")
        assert_error(c.put(ROUTE, json={"percent": 100}, headers=ns_key), 403)

        # Every read from the new store, every read compared: the migrated copies agree.
        _wait_compared(c, 3)  # the get, search and count above, before the window restarts
        status = c.put(ROUTE, json={"percent": 100}).json()
        assert status["read_from_new"] == 100
        assert RoutingControl(server.control).read()["read_from_new"] == 100  # type: ignore[index]
        for doc in chroma_docs("notes", 3):
            hits = c.post("/v1/namespaces/notes/search", json={"query": doc, "top_k": 1})
            assert hits.json()["hits"][0]["record"]["text"] == doc
        status = _wait_compared(c, 6)
        agreement = status["agreement"]
        assert (agreement["samples"], agreement["inconsistency"]) == (3, 0.0)
        assert status["rolled_back"] is False and status["dual_write"]["pending"] == 0

        # Records only the new store holds: its answers disagree, and reads roll back.
        with Memory(f"sqlite:///{tmp_path / 'new.db'}", embedder=EMB) as other_process:
            for i in range(3):
                other_process.with_namespace("notes").add(f"zebra crossing {i} only in new")
        for i in range(3):
            c.post(
                "/v1/namespaces/notes/search",
                json={"query": f"zebra crossing {i} only in new", "top_k": 1},
            )
        deadline = time.monotonic() + WAIT_S
        while not (status := c.get(ROUTE).json())["rolled_back"]:
            assert time.monotonic() < deadline, f"no rollback: {status}"
            time.sleep(0.1)
        assert (status["read_from_new"], status["rollbacks"]) == (0, 1)
        assert status["last_rollback"]["reason"] == "inconsistency"
        assert RoutingControl(server.control).read()["rolled_back"] is True  # type: ignore[index]
        scraped = c.get("/metrics").text  # the alert, exported
        assert 'engramdb_sidebyside_rollbacks_total{reason="inconsistency"} 1.0' in scraped

        # The admin page shows it and sets the share through its form.
        page = c.get("/admin").text
        assert "Side by side" in page and "ROLLED BACK" in page
        assert 'name="percent"' in page and 'value="0"' in page
        csrf = csrf_token(ADMIN_KEY, BEARER_NONCE)
        sent = c.post("/admin/read-from-new", data={"percent": "25", "csrf": csrf})
        assert sent.status_code == 303, sent.text
        status = c.get(ROUTE).json()
        assert (status["read_from_new"], status["rolled_back"]) == (25, False)
        assert (
            c.post("/admin/read-from-new", data={"percent": "25", "csrf": "x"}).status_code == 403
        )
        bad = c.post("/admin/read-from-new", data={"percent": "lots", "csrf": csrf})
        assert bad.status_code == 422 and "0..100" in bad.text

        entries = c.get("/v1/admin/audit").json()["entries"]
        changes = [e for e in entries if e["action"] == "set_read_from_new" and e["result"] == "ok"]
        assert [e["details"]["read_from_new"] for e in changes] == [25, 100]  # newest first
        assert changes[0]["details"]["via"] == "admin page"
    assert server.stop() == 0
    from chromadb.api.client import SharedSystemClient

    # This process's Chroma client (the fixture's migration) predates the server's writes.
    SharedSystemClient.clear_system_cache()
    with LegacyMemory(source, embedder=EMB) as legacy:
        assert legacy.get(rid).text == "Alice moved to Lisbon"
    assert f"side by side with {source}" in server.log.read_text()


def test_serve_refuses_workers_beside_an_old_store(tmp_path: Path) -> None:
    import subprocess

    env = ServerProcess.clean_env(
        ENGRAM_URL=f"sqlite:///{tmp_path / 'new.db'}",
        ENGRAM_EMBEDDER="hash",
        ENGRAM_SIDEBYSIDE_OLD=f"sqlite:///{tmp_path / 'old.db'}",
    )
    done = subprocess.run(
        [*cli_argv(), "serve", "--port", str(free_port()), "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "use --workers 1" in done.stderr
