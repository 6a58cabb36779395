"""The admin page in a real headless Chromium against a real ``engramdb serve --no-model``.

Debian's ``chromium`` (``make system-deps`` installs it) driven by Playwright. The page must
load with no console error; a wrong key is refused at login and the admin key gets in; a
search typed into the page shows the expected memory, and a memory holding ``<script>``
shows it as text without running it; a key created on the page works on the REST API until
it is revoked from the page, then the API refuses it. A screenshot goes to the test's tmp dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import ADMIN_HEADERS, ADMIN_KEY, ServerProcess, cli_argv, free_port

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
XSS = "<script>window.__owned = 1; alert('owned')</script> keep me as text"
WRONG_KEY = "ek_00000000000000ff_" + "A" * 43


class Service(ServerProcess):
    """``engramdb serve --no-model`` on a SQLite file with the tests' admin key."""

    def __init__(self, db: Path, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = self.clean_env(ENGRAM_ADMIN_KEY=ADMIN_KEY)
        argv = cli_argv() + [
            "serve",
            "--no-model",
            "--url",
            f"sqlite:///{db}",
            "--port",
            str(self.port),
        ]
        super().__init__("serve", argv, env, log)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    server = Service(tmp_path / "admin.db", tmp_path / "serve.log")
    try:
        server.wait_ready(server.base)
        yield server
    finally:
        server.stop()


def test_the_admin_page_in_headless_chromium(service: Service, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "install Debian's chromium (make system-deps)"
    with httpx.Client(base_url=service.base, headers=ADMIN_HEADERS, timeout=30) as api:
        for text, kind in (
            ("Alice moved to Lisbon in March", "fact"),
            ("Bob prefers tea", "preference"),
            (XSS, "semantic"),
            ("A note of a type of its own", "journal"),
        ):
            resp = api.post("/v1/namespaces/team-a/records", json={"text": text, "type": kind})
            assert resp.status_code == 200, resp.text
        missing = api.get("/v1/namespaces/team-a/records/no-such-record")
        assert missing.status_code == 404, missing.text

    console_errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()

            def on_console(msg: Any) -> None:
                if msg.type == "error":
                    console_errors.append(f"{page.url}: {msg.text}")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: console_errors.append(f"page error: {exc}"))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            # No key yet: the page sends the browser to log in; a wrong key is refused.
            page.goto(f"{service.base}/admin")
            assert page.url == f"{service.base}/admin/login"
            page.fill("input[name=key]", WRONG_KEY)
            with page.expect_navigation() as refused:
                page.click("button[type=submit]")
            assert refused.value is not None and refused.value.status == 401
            assert "the key is not valid" in page.inner_text("#error")
            assert not [c for c in page.context.cookies() if c["name"] == "engram_admin"]
            # Chromium logs the refused login's 401 itself; nothing else may be logged.
            assert all("401" in e for e in console_errors), console_errors
            console_errors.clear()

            page.fill("input[name=key]", ADMIN_KEY)
            page.click("button[type=submit]")
            page.wait_for_url(f"{service.base}/admin")
            assert "ok" in page.inner_text("#health")
            assert "team-a" in page.inner_text("table.counts")
            # Counts per namespace and type; latency and failures per operation (metrics).
            by_type = page.locator("table.counts-by-type tbody tr", has_text="team-a")
            cells = [c.strip() for c in by_type.inner_text().split("\t")]
            header = page.inner_text("table.counts-by-type thead").split("\t")
            counts = dict(zip([h.strip() for h in header], cells, strict=True))
            assert counts["fact"] == counts["preference"] == counts["semantic"] == "1", counts
            assert counts["message"] == "0" and counts["other types"] == "1", counts
            latency = page.locator("table.latency tbody tr", has_text="add").first.inner_text()
            assert latency.split("\t")[1].strip() == "4", latency  # four adds, all ok
            assert "not_found" in page.inner_text("table.op-errors")
            session = next(c for c in page.context.cookies() if c["name"] == "engram_admin")
            assert session["httpOnly"] and session["sameSite"] == "Strict"

            # A search typed into the page shows the expected memory.
            page.click("text=Memories")
            page.fill("input[name=ns]", "team-a")
            page.fill("input[name=q]", "Lisbon")
            page.click("#search button[type=submit]")
            page.wait_for_selector("table.results")
            results = page.inner_text("table.results")
            assert "Alice moved to Lisbon in March" in results
            # Untrusted text is shown as text and never runs.
            page.fill("input[name=q]", "owned")
            page.click("#search button[type=submit]")
            page.wait_for_selector("table.results")
            assert XSS in page.inner_text("table.results")
            page.click("table.results a")
            assert page.inner_text("#memory-text") == XSS
            assert page.evaluate("window.__owned") is None and dialogs == []

            # A key made on the page works until it is revoked from the page.
            page.click("text=Keys")
            page.fill("#create-key input[name=namespace]", "team-b")
            page.click("#create-key button[type=submit]")
            new_key = page.inner_text("#new-key-secret").strip()
            key_id = new_key.split("_")[1]
            rest = {"Authorization": f"Bearer {new_key}"}
            url = f"{service.base}/v1/namespaces/team-b/records"
            assert httpx.get(url, headers=rest, timeout=30).status_code == 200
            page.click(f"button[name=revoke][value='{key_id}']")
            page.wait_for_url(f"{service.base}/admin/keys")
            assert page.locator(f"button[name=revoke][value='{key_id}']").count() == 0
            refused_rest = httpx.get(url, headers=rest, timeout=30)
            assert refused_rest.status_code == 401, refused_rest.text

            page.click("text=Overview")
            assert "revoke_key" in page.inner_text("table.audit")
            shot = tmp_path / "admin-overview.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 1000
        finally:
            browser.close()
    assert console_errors == [], console_errors
