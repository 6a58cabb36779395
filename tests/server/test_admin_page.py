"""The admin page over the real ASGI app: login, cookies, CSRF, escaping, keys, refusals.

The browser itself is driven in ``test_admin_browser.py``; here each rule is checked on the
HTTP exchange, where the headers (Set-Cookie attributes, CSP, redirects) are visible.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from server_helpers import ADMIN_HEADERS, ADMIN_KEY

from engramdb import Memory
from engramdb.server import create_app
from engramdb.server.admin_page import BEARER_NONCE, csrf_token

XSS = "<script>alert('owned')</script> & <img src=x onerror=alert(1)>"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF_FIELD.search(page)
    assert found, page[:500]
    return found.group(1)


@pytest.fixture
async def browser(server_mem: Memory) -> AsyncIterator[httpx.AsyncClient]:
    """A keyless client of the app that keeps cookies, as a browser does."""
    app = create_app(server_mem)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://engram.test") as c:
        yield c


async def log_in(c: httpx.AsyncClient, key: str = ADMIN_KEY) -> httpx.Response:
    """Fetch the login form and post ``key`` with its token."""
    form = await c.get("/admin/login")
    assert form.status_code == 200
    return await c.post("/admin/login", data={"key": key, "csrf": csrf_of(form.text)})


def set_cookies(resp: httpx.Response) -> dict[str, str]:
    """The Set-Cookie headers of a response, by cookie name."""
    return {v.split("=", 1)[0]: v for v in resp.headers.get_list("set-cookie")}


async def test_login_keeps_the_key_in_a_strict_httponly_cookie_for_admin_only(
    browser: httpx.AsyncClient,
) -> None:
    resp = await log_in(browser)
    assert resp.status_code == 303 and resp.headers["location"] == "/admin"
    cookies = set_cookies(resp)
    for name in ("engram_admin", "engram_csrf"):
        attrs = cookies[name].lower()
        assert "httponly" in attrs and "samesite=strict" in attrs and "path=/admin" in attrs
        assert "secure" not in attrs  # plain http here
    page = await browser.get("/admin")
    assert page.status_code == 200
    assert "Health" in page.text and "Namespaces" in page.text
    # The cookie opens /admin only: sent by hand to the REST API it is no credential.
    raw = f"engram_admin={browser.cookies.get('engram_admin')}"
    rest = await browser.get("/v1/namespaces", headers={"cookie": raw})
    assert rest.status_code == 401


async def test_cookies_are_secure_over_https(server_mem: Memory) -> None:
    app = create_app(server_mem)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://engram.test") as c:
        resp = await log_in(c)
    assert resp.status_code == 303
    for name, attrs in set_cookies(resp).items():
        if name in ("engram_admin", "engram_csrf"):
            assert "secure" in attrs.lower(), attrs


async def test_a_wrong_key_a_namespace_key_or_no_token_cannot_log_in(
    browser: httpx.AsyncClient, server_mem: Memory
) -> None:
    wrong = await log_in(browser, "ek_00000000000000ff_" + "A" * 43)
    assert wrong.status_code == 401 and "the key is not valid" in wrong.text
    assert "engram_admin" not in set_cookies(wrong)
    ns_key = create_app(server_mem).state.keys.create("team-a").key
    refused = await log_in(browser, ns_key)
    assert refused.status_code == 403 and "not an admin key" in refused.text
    assert "engram_admin" not in set_cookies(refused)
    # A post without the login form's token (a cross-site form) is refused too.
    forged = await browser.post("/admin/login", data={"key": ADMIN_KEY, "csrf": "guess"})
    assert forged.status_code == 403 and "engram_admin" not in set_cookies(forged)
    log = create_app(server_mem).state.keys.audit_log(10)
    logins = [(e.action, e.status, e.result) for e in log if e.action == "admin_login"]
    assert logins == [("admin_login", 403, "denied"), ("admin_login", 401, "denied")]


async def test_without_a_key_a_browser_is_sent_to_log_in_and_an_api_caller_gets_401(
    browser: httpx.AsyncClient,
) -> None:
    page = await browser.get("/admin", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/admin/login"
    api = await browser.get("/admin")
    assert api.status_code == 401 and api.headers["www-authenticate"].startswith("Bearer")


async def test_a_namespace_key_is_refused_and_the_admin_bearer_key_works(
    browser: httpx.AsyncClient, server_mem: Memory
) -> None:
    ns_key = create_app(server_mem).state.keys.create("team-a").key
    for path in ("/admin", "/admin/keys", "/admin/memories"):
        got = await browser.get(path, headers={"Authorization": f"Bearer {ns_key}"})
        assert got.status_code == 403, path
        assert (await browser.get(path, headers=ADMIN_HEADERS)).status_code == 200, path


async def test_memory_text_is_shown_as_text_never_as_markup(
    browser: httpx.AsyncClient, server_mem: Memory
) -> None:
    mem = server_mem.with_namespace("team-a")
    rec = (await asyncio.to_thread(mem.add, XSS, metadata={"note": XSS}, id="evil"))[0]
    await log_in(browser)
    listed = await browser.get("/admin/memories", params={"ns": "team-a"})
    found = await browser.get("/admin/memories", params={"ns": "team-a", "q": "owned"})
    shown = await browser.get("/admin/memory", params={"ns": "team-a", "id": rec.id})
    for resp in (listed, found, shown):
        assert resp.status_code == 200
        assert "<script>alert" not in resp.text and "<img src=x" not in resp.text
        assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in resp.text
        csp = resp.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp
    assert "<script" not in shown.text  # the page itself runs no script at all


async def test_a_memory_and_its_history_are_shown(
    browser: httpx.AsyncClient, server_mem: Memory
) -> None:
    mem = server_mem.with_namespace("team-a")
    rec = (await asyncio.to_thread(mem.add, "Alice lives in Porto", id="alice-home"))[0]
    await asyncio.to_thread(mem.update, rec.id, text="Alice lives in Lisbon")
    await log_in(browser)
    page = await browser.get("/admin/memory", params={"ns": "team-a", "id": rec.id})
    assert page.status_code == 200
    history = page.text.split('class="history"')[1]
    assert history.index("Porto") < history.index("Lisbon")
    assert ">add<" in history and ">update<" in history
    missing = await browser.get("/admin/memory", params={"ns": "team-a", "id": "nope"})
    assert missing.status_code == 404 and "nope" in missing.text
    bad = await browser.get("/admin/memories", params={"ns": "bad ns!"})
    assert bad.status_code == 422


async def test_key_forms_need_the_session_csrf_token(
    browser: httpx.AsyncClient, server_mem: Memory
) -> None:
    keys = create_app(server_mem).state.keys
    await log_in(browser)
    page = await browser.get("/admin/keys")
    token = csrf_of(page.text)
    for forged in ({"namespace": "team-a"}, {"namespace": "team-a", "csrf": "x" * 64}):
        refused = await browser.post("/admin/keys", data=forged)
        assert refused.status_code == 403, forged
    assert keys.list_keys() == []
    made = await browser.post("/admin/keys", data={"namespace": "team-a", "csrf": token})
    assert made.status_code == 200
    secret = re.search(r'id="new-key-secret">([^<]+)<', made.text)
    assert secret, made.text
    new_key = secret.group(1)
    rest = {"Authorization": f"Bearer {new_key}"}
    assert (await browser.get("/v1/namespaces/team-a/records", headers=rest)).status_code == 200
    key_id = keys.list_keys()[0].id
    forged_revoke = await browser.post(f"/admin/keys/{key_id}/revoke", data={"csrf": "x"})
    assert forged_revoke.status_code == 403
    revoked = await browser.post(f"/admin/keys/{key_id}/revoke", data={"csrf": token})
    assert revoked.status_code == 303 and revoked.headers["location"] == "/admin/keys"
    assert (await browser.get("/v1/namespaces/team-a/records", headers=rest)).status_code == 401
    # The page's key changes are in the admin audit log, like the REST ones.
    entries = [(e.action, e.target, e.status) for e in keys.audit_log(20)]
    assert ("create_key", None, 200) in entries
    assert ("revoke_key", key_id, 303) in entries
    assert ("revoke_key", key_id, 403) in entries
    created = next(e for e in keys.audit_log(20) if e.action == "create_key" and e.status == 200)
    assert json.loads(created.details)["via"] == "admin page"
    # A new login gets a new token; the old one no longer passes.
    await log_in(browser)
    stale = await browser.post("/admin/keys", data={"namespace": "team-b", "csrf": token})
    assert stale.status_code == 403


async def test_a_bearer_caller_posts_forms_with_its_own_token(browser: httpx.AsyncClient) -> None:
    token = csrf_token(ADMIN_KEY, BEARER_NONCE)
    assert csrf_of((await browser.get("/admin/keys", headers=ADMIN_HEADERS)).text) == token
    made = await browser.post(
        "/admin/keys", headers=ADMIN_HEADERS, data={"namespace": "team-a", "csrf": token}
    )
    assert made.status_code == 200 and 'id="new-key"' in made.text
    not_a_form = await browser.post(
        "/admin/keys", headers=ADMIN_HEADERS, json={"namespace": "team-a", "csrf": token}
    )
    assert not_a_form.status_code == 422


async def test_a_revoked_cookie_key_sends_the_browser_back_to_log_in(
    browser: httpx.AsyncClient, server_mem: Memory
) -> None:
    keys = create_app(server_mem).state.keys
    second_admin = keys.create(None, admin=True)
    assert (await log_in(browser, second_admin.key)).status_code == 303
    assert (await browser.get("/admin")).status_code == 200
    keys.revoke(second_admin.row.id)
    again = await browser.get("/admin")
    assert again.status_code == 303 and again.headers["location"] == "/admin/login"
    assert "engram_admin" not in browser.cookies


async def test_logout_forgets_the_session(browser: httpx.AsyncClient) -> None:
    await log_in(browser)
    token = csrf_of((await browser.get("/admin")).text)
    out = await browser.post("/admin/logout", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/admin/login"
    assert (await browser.get("/admin")).status_code == 401


async def test_a_form_sent_from_another_site_is_refused_even_with_the_token(
    browser: httpx.AsyncClient, server_mem: Memory
) -> None:
    await log_in(browser)
    token = csrf_of((await browser.get("/admin/keys")).text)
    cross = {"sec-fetch-site": "cross-site"}
    made = await browser.post(
        "/admin/keys", headers=cross, data={"namespace": "team-a", "csrf": token}
    )
    assert made.status_code == 403
    assert create_app(server_mem).state.keys.list_keys() == []
    form = await browser.get("/admin/login")
    login = await browser.post(
        "/admin/login", headers=cross, data={"key": ADMIN_KEY, "csrf": csrf_of(form.text)}
    )
    assert login.status_code == 403 and "engram_admin" not in set_cookies(login)


async def test_a_cookie_no_key_could_be_is_no_credential(browser: httpx.AsyncClient) -> None:
    for raw in ("%E2%82%AC" * 20, "%0D%0Aevil-header-injected", "short"):
        got = await browser.get("/admin", headers={"cookie": f"engram_admin={raw}"})
        assert got.status_code == 401, raw


async def test_with_auth_off_the_page_needs_no_login(server_mem: Memory) -> None:
    settings = server_mem.settings.model_copy(update={"auth": "off", "admin_key": None})
    app = create_app(server_mem, settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        login = await c.get("/admin/login")
        assert login.status_code == 303 and login.headers["location"] == "/admin"
        page = await c.get("/admin", headers={"accept": "text/html"})
        assert page.status_code == 200 and "Health" in page.text
        token = csrf_of(page.text)
        cross = await c.post(
            "/admin/keys",
            headers={"sec-fetch-site": "cross-site"},
            data={"namespace": "team-a", "csrf": token},
        )
        assert cross.status_code == 403
        same = await c.post(
            "/admin/keys",
            headers={"sec-fetch-site": "same-origin"},
            data={"namespace": "team-a", "csrf": token},
        )
        assert same.status_code == 200 and 'id="new-key"' in same.text


async def test_browsing_a_namespace_pages_through_every_memory(
    browser: httpx.AsyncClient, server_mem: Memory
) -> None:
    mem = server_mem.with_namespace("team-a")
    texts = [{"text": f"note number {i:03d}"} for i in range(60)]
    await asyncio.to_thread(mem.add, texts)
    await log_in(browser)
    seen: list[str] = []
    url: str | None = "/admin/memories?ns=team-a"
    while url is not None:
        page = await browser.get(url)
        assert page.status_code == 200
        seen += re.findall(r"note number (\d{3})", page.text)
        nxt = re.search(r'id="next"><a href="([^"]+)"', page.text)
        url = "/admin/memories" + nxt.group(1).replace("&amp;", "&") if nxt else None
    assert sorted(seen) == [f"{i:03d}" for i in range(60)] and len(seen) == 60
