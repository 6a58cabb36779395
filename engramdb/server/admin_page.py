"""The admin page: ``/admin``, server-rendered HTML over the same service, admin key only.

::

    GET  /admin/login                     the login form (open: the one page without a key)
    POST /admin/login                     check the key; keep it in an HttpOnly cookie
    POST /admin/logout                    forget the cookies
    GET  /admin                           counts, health, stats, side by side, the audit log
    GET  /admin/memories?ns=&q=           browse (newest first) or search a namespace
    GET  /admin/memory?ns=&id=            one memory and its history
    GET  /admin/keys                      keys (never a secret)
    POST /admin/keys                      make a namespace key (shown once)
    POST /admin/keys/{key_id}/revoke      revoke a key
    POST /admin/read-from-new             the side-by-side share (admin_sidebyside.py)

Rules:

* Authorization is :mod:`engramdb.server.auth`'s: every ``/admin`` path but the login is
  unlisted in its ``ROUTE_ACCESS``, so only an admin key passes; a namespace key gets 403.
  A browser's credential is the key itself in the ``engram_admin`` cookie (HttpOnly,
  SameSite=Strict, Secure over https, Path=/admin): :class:`AdminCookieMiddleware` turns it
  into the ``Authorization`` header the auth middleware checks, for ``/admin`` paths only,
  so the cookie never opens the REST API (which has no CSRF defence and needs none).
* Every form POST carries a CSRF token, checked in constant time: HMAC-SHA256 keyed by the
  SHA-256 of the session's key over the session's random nonce (``engram_csrf`` cookie,
  made at login), so it changes with every login and nobody without the key can make one.
  A request sending ``Authorization`` itself uses the fixed nonce ``bearer``. The login form
  has its own token (a random value in a cookie of the login path, double-submitted).
* Everything rendered is escaped (:mod:`engramdb.server.admin_html`); pages run no script
  and a Content-Security-Policy with a per-response style nonce forbids any.
* Key changes made here leave admin audit entries like the REST ones (``auth.AUDITED``);
  each login attempt leaves one too (``admin_login``: ok, or denied with who tried).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engramdb._async_memory import AsyncMemory
from engramdb.errors import (
    AuthenticationError,
    EngramError,
    LimitExceededError,
    PermissionDeniedError,
    ValidationError,
    status_for,
)
from engramdb.ops.keys import ADMIN_KEY_PATTERN, KeyService, hash_key
from engramdb.server import admin_html as h
from engramdb.server.auth import AUDIT_DETAILS, bearer, principal_of, route_path
from engramdb.server.metrics import operation_errors, operation_figures

log = logging.getLogger("engramdb.server.admin_page")

PREFIX = "/admin"
LOGIN_PATH = "/admin/login"  # the one /admin path auth.OPEN_PATHS lets through without a key
KEY_COOKIE = "engram_admin"  # the admin key (URL-quoted), for /admin paths only
CSRF_COOKIE = "engram_csrf"  # the session's random nonce, made at login
LOGIN_COOKIE = "engram_login"  # the login form's double-submitted token
COOKIE_SESSION = "engramdb.admin_cookie"  # scope key: the credential came from the cookie
BEARER_NONCE = "bearer"
MAX_FORM_BYTES = 16 * 1024
MAX_NAMESPACES_SHOWN = 200  # the overview reads stats once per namespace
AUDIT_SHOWN = 50
ERRORS_SCANNED = 500
LIST_PAGE = 50
SEARCH_TOP_K = 25
TEXT_SHOWN = 400
# The record types the overview counts one by one (types are open: the rest is "other").
COUNTED_TYPES = ("semantic", "fact", "preference", "summary", "message")
TYPES_FOR_NAMESPACES = 50  # the type breakdown costs one count per type and namespace

admin_page_router = APIRouter(prefix=PREFIX, include_in_schema=False)


# ---------------------------------------------------------------------------- sessions


def _is_under_admin(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _cookies(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, sep, v = part.strip().partition("=")
                if sep and k not in out:
                    out[k] = v
    return out


def csrf_token(key: str, nonce: str) -> str:
    """The CSRF token of a session: HMAC-SHA256 keyed by the key's hash over its nonce."""
    return hmac.new(hash_key(key).encode(), f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()


def session_csrf(request: Request) -> str:
    """The CSRF token the forms of this request's session carry."""
    key = bearer(request.scope) or ""
    if request.scope.get(COOKIE_SESSION):
        nonce = request.cookies.get(CSRF_COOKIE, "")
    else:
        nonce = BEARER_NONCE
    return csrf_token(key, nonce)


class AdminCookieMiddleware:
    """For ``/admin`` paths: the cookie's key becomes the ``Authorization`` header (ASGI).

    Installed outside the auth middleware, so the key is checked there like any other. A
    browser with no credential is sent to the login page; a cookie whose key no longer
    passes (revoked, changed) is cleared and the browser sent to log in again.
    """

    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled  # False with ENGRAM_AUTH=off: every caller is admin already

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call (see the class docstring)."""
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if not _is_under_admin(path) or path == LOGIN_PATH:
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers", ()))
        if any(name == b"authorization" for name, _ in headers):
            await self.app(scope, receive, send)
            return
        key = unquote(_cookies(scope).get(KEY_COOKIE, ""))
        if not ADMIN_KEY_PATTERN.fullmatch(key):  # what no key can be is no credential
            key = ""
        if not key:
            accept = b"".join(v for n, v in headers if n == b"accept")
            if scope.get("method") == "GET" and b"text/html" in accept:
                await RedirectResponse(LOGIN_PATH, status_code=303)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        scope["headers"] = [*headers, (b"authorization", f"Bearer {key}".encode("latin-1"))]
        scope[COOKIE_SESSION] = True
        await self.app(scope, receive, self._relogin_on_401(scope, send))

    @staticmethod
    def _relogin_on_401(scope: Scope, send: Send) -> Send:
        """A send that turns a 401 (the cookie's key refused) into a redirect to log in."""
        refused = False

        async def wrapped(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 401:
                refused = True
                redirect = RedirectResponse(LOGIN_PATH, status_code=303)
                redirect.delete_cookie(KEY_COOKIE, path=PREFIX)
                await send(
                    {"type": "http.response.start", "status": 303, "headers": redirect.raw_headers}
                )
                await send({"type": "http.response.body", "body": b""})
                return
            if refused:
                return  # the refused response's body: the redirect replaced it
            await send(message)

        return wrapped


def _set_cookie(response: Response, request: Request, name: str, value: str, path: str) -> None:
    response.set_cookie(
        name,
        value,
        path=path,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


# ---------------------------------------------------------------------------- responses


def html_page(title: str, body: h.Markup, csrf: str | None, status: int = 200) -> HTMLResponse:
    """A page with the headers every admin page carries (CSP, no caching, no framing)."""
    nonce = secrets.token_urlsafe(16)
    response = HTMLResponse(h.page(title, body, nonce, csrf), status_code=status)
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def error_page(request: Request, exc: EngramError, title: str = "Error") -> HTMLResponse:
    """An engramdb error as a page, with the status the REST error table gives it."""
    status = status_for(exc)
    return html_page(title, h.error_body(status, exc.message), session_csrf(request), status)


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form body (bounded), first value of each field.

    Raises:
        ValidationError: not a urlencoded form.
        LimitExceededError: a body over :data:`MAX_FORM_BYTES`.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ValidationError("the admin forms send application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise LimitExceededError(
                f"a form body may hold at most {MAX_FORM_BYTES} bytes", limit=MAX_FORM_BYTES
            )
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def check_same_origin(request: Request) -> None:
    """Refuse a form POST a browser says came from another site (``Sec-Fetch-Site``).

    Besides the token: with ``ENGRAM_AUTH=off`` there is no key to derive a token from, and
    this is what keeps another site's page from posting to a loopback service.

    Raises:
        PermissionDeniedError: the browser sent the form from another site.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise PermissionDeniedError("the admin forms may be sent from the admin page only")


async def checked_form(request: Request) -> dict[str, str]:
    """The form of a POST sent from the admin page whose CSRF token matches the session's.

    Raises:
        PermissionDeniedError: a missing or wrong CSRF token, or a form from another site.
    """
    check_same_origin(request)
    form = await read_form(request)
    if not hmac.compare_digest(form.get("csrf", "").encode(), session_csrf(request).encode()):
        raise PermissionDeniedError("the form's CSRF token is missing or wrong: reload the page")
    return form


def memory_of(request: Request) -> AsyncMemory:
    """The app's memory."""
    mem: AsyncMemory = request.app.state.memory
    return mem


def keys_of(request: Request) -> KeyService:
    """The app's key service."""
    keys: KeyService = request.app.state.keys
    return keys


# ---------------------------------------------------------------------------- login


def login_page(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    """The login form with a fresh double-submit token."""
    token = secrets.token_urlsafe(32)
    response = html_page("Log in", h.login_body(token, error), None, status)
    _set_cookie(response, request, LOGIN_COOKIE, token, LOGIN_PATH)
    return response


@admin_page_router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    """The login form (needs no key; with ``ENGRAM_AUTH=off`` there is nothing to log in to)."""
    if request.app.state.settings.auth == "off":
        return RedirectResponse(PREFIX, status_code=303)
    return login_page(request)


@admin_page_router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the key: an admin key gets the session cookies; anything else the form again."""
    try:
        check_same_origin(request)
        form = await read_form(request)
    except EngramError as exc:
        return login_page(request, exc.message, status_for(exc))
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(form.get("csrf", "").encode(), expected.encode()):
        return login_page(request, "the login form expired: try again", 403)
    key = form.get("key", "").strip()
    keys = keys_of(request)
    try:
        principal = await run_in_threadpool(keys.authenticate, key)
    except AuthenticationError:
        await _audit_login(keys, "unknown", 401)
        return login_page(request, "the key is not valid", 401)
    if not principal.admin:
        await _audit_login(keys, principal.key_id, 403)
        return login_page(request, "this key is not an admin key", 403)
    await _audit_login(keys, principal.key_id, 200)
    response = RedirectResponse(PREFIX, status_code=303)
    _set_cookie(response, request, KEY_COOKIE, quote(key, safe=""), PREFIX)
    _set_cookie(response, request, CSRF_COOKIE, secrets.token_urlsafe(32), PREFIX)
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
    return response


async def _audit_login(keys: KeyService, key_id: str, status: int) -> None:
    try:
        await run_in_threadpool(keys.audit, key_id, "admin_login", None, status, {})
    except EngramError:
        log.error("could not write the admin audit entry of a login by %s", key_id)


@admin_page_router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the session cookies."""
    try:
        await checked_form(request)
    except EngramError as exc:
        return error_page(request, exc)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(KEY_COOKIE, path=PREFIX)
    response.delete_cookie(CSRF_COOKIE, path=PREFIX)
    return response


# ---------------------------------------------------------------------------- overview


async def _section(title: str, build: Any) -> h.Markup:
    """A section whose failure shows as its error, not as a failed page."""
    try:
        body = await build()
    except EngramError as exc:
        body = h.error_body(status_for(exc), exc.message)
    return h.join([h.render("<h2>$t</h2>", t=title), body])


async def _health(mem: AsyncMemory) -> h.Markup:
    report = dict(await mem.health())
    overall = report.pop("status", "degraded")
    rows = []
    for name, part in sorted(report.items()):
        info = part if isinstance(part, dict) else {"status": part}
        extra = {k: v for k, v in info.items() if k != "status"}
        rows.append((name, h.status_cell(info.get("status")), h.pretty(extra)))
    summary = h.render("<p id='health'>Overall: $s</p>", s=h.status_cell(overall))
    return h.join([summary, h.table(("Component", "Status", "Details"), rows, "health")])


async def _counts(mem: AsyncMemory) -> h.Markup:
    namespaces = await mem.namespaces()
    names = sorted(namespaces)[:MAX_NAMESPACES_SHOWN]
    rows = []
    by_type = []
    for i, ns in enumerate(names):
        scoped = mem.with_namespace(ns)
        part = (await scoped.stats()).get("namespace_stats", {})
        link = h.link(f"/admin/memories?{urlencode({'ns': ns})}", ns)
        records = part.get("records")
        rows.append(
            (
                link,
                records,
                part.get("history"),
                part.get("events"),
                part.get("threads_with_slots"),
            )
        )
        if i < TYPES_FOR_NAMESPACES:
            counts = [await scoped.count(type=t) for t in COUNTED_TYPES]
            other = records - sum(counts) if isinstance(records, int) else None
            by_type.append((link, *counts, other))
    more = len(namespaces) - len(names)
    note = h.render("<p>$n more namespaces not shown.</p>", n=more) if more > 0 else h.Markup("")
    headers = ("Namespace", "Records", "History entries", "Events", "Threads with slots")
    type_headers = ("Namespace", *COUNTED_TYPES, "other types")
    return h.join(
        [
            h.table(headers, rows, "counts"),
            note,
            h.render("<h3>Records per namespace and type</h3>"),
            h.table(type_headers, by_type, "counts-by-type"),
        ]
    )


async def _latency() -> h.Markup:
    """Latency and failures per operation, from the metrics registry (every worker's)."""
    figures = operation_figures()
    rows = [
        (f["op"], f["calls"], f["failed"], f["mean_ms"], f["p50_ms"], f["p95_ms"]) for f in figures
    ]
    headers = ("Operation", "Calls", "Failed", "Mean ms", "p50 ms (bucket)", "p95 ms (bucket)")
    return h.table(headers, rows, "latency")


async def _op_errors() -> h.Markup:
    """Failed calls by operation and error code since the service started (metrics)."""
    rows = [(op, status, count) for op, status, count in operation_errors()]
    return h.table(("Operation", "Error", "Calls"), rows, "op-errors")


async def _stats(mem: AsyncMemory) -> h.Markup:
    stats = await mem.stats()
    store = {k: v for k, v in (stats.get("store") or {}).items() if k != "path"}
    shown = {"store": store, "embedder": stats.get("embedder"), "cache": stats.get("cache")}
    rows = [(part, h.pretty(value)) for part, value in shown.items()]
    return h.table(("Part", "Figures"), rows, "stats")


def _audit_rows(entries: list[Any]) -> list[tuple[Any, ...]]:
    from engramdb.timeutil import from_us_req

    return [
        (
            e.seq,
            from_us_req(e.at).isoformat(timespec="seconds"),
            e.key_id,
            e.action,
            e.target,
            e.status,
            h.status_cell(e.result),
        )
        for e in entries
    ]


AUDIT_HEADERS = ("Seq", "At (UTC)", "Key", "Action", "Target", "Status", "Result")


async def _audit(keys: KeyService) -> h.Markup:
    entries = await run_in_threadpool(keys.audit_log, ERRORS_SCANNED)
    errors = [e for e in entries if e.result != "ok"][:AUDIT_SHOWN]
    return h.join(
        [
            h.render("<h3>Recent operations</h3>"),
            h.table(AUDIT_HEADERS, _audit_rows(entries[:AUDIT_SHOWN]), "audit"),
            h.render("<h3>Errors and refusals</h3>"),
            h.table(AUDIT_HEADERS, _audit_rows(errors), "audit-errors"),
        ]
    )


@admin_page_router.get("", response_class=HTMLResponse)
async def overview(request: Request) -> HTMLResponse:
    """Counts per namespace, component health, stats, and the admin audit log."""
    principal_of(request)
    mem, keys = memory_of(request), keys_of(request)
    body = h.join(
        [
            await _section("Health", lambda: _health(mem)),
            await _section("Namespaces", lambda: _counts(mem)),
            await _section("Latency per operation", _latency),
            await _section("Recent errors by operation", _op_errors),
            await _section("Store, embedder and cache", lambda: _stats(mem)),
            await _section("Side by side", lambda: _side_by_side(request)),
            await _section("Admin audit log", lambda: _audit(keys)),
        ]
    )
    return html_page("Overview", body, session_csrf(request))


async def _side_by_side(request: Request) -> h.Markup:
    side = request.app.state.sidebyside
    status = None if side is None else await run_in_threadpool(side.status)
    return h.side_by_side(status, session_csrf(request))


# ---------------------------------------------------------------------------- memories


def _short(text: str) -> str:
    return text if len(text) <= TEXT_SHOWN else text[:TEXT_SHOWN] + "…"


def _record_link(ns: str, record_id: str) -> h.Markup:
    return h.link(f"/admin/memory?{urlencode({'ns': ns, 'id': record_id})}", record_id)


@admin_page_router.get("/memories", response_class=HTMLResponse)
async def memories(
    request: Request,
    ns: Annotated[str, Query(max_length=256)] = "",
    q: Annotated[str, Query(max_length=4096)] = "",
    cursor: Annotated[str, Query(max_length=4096)] = "",
) -> HTMLResponse:
    """Browse a namespace, newest first, or search it; a page at a time (``cursor``)."""
    mem = memory_of(request)
    csrf = session_csrf(request)
    try:
        known = sorted(await mem.namespaces())[:MAX_NAMESPACES_SHOWN]
        parts = [h.search_form(ns, q, known)]
        if ns:
            scoped = mem.with_namespace(ns)
            if q.strip():
                page = await scoped.search(q, top_k=SEARCH_TOP_K, cursor=cursor or None)
                after = page.next_cursor
                rows = [
                    (
                        _record_link(ns, x.record.id),
                        f"{x.score:.3f}",
                        _short(x.record.text),
                        x.record.type,
                        x.record.user_id,
                    )
                    for x in page.hits
                ]
                headers: tuple[str, ...] = ("Id", "Score", "Text", "Type", "User")
            else:
                listed = await scoped.list(limit=LIST_PAGE, descending=True, cursor=cursor or None)
                after = listed.next_cursor
                rows = [
                    (
                        _record_link(ns, r.id),
                        r.updated_at.isoformat(timespec="seconds") if r.updated_at else "",
                        _short(r.text),
                        r.type,
                        r.user_id,
                    )
                    for r in listed.records
                ]
                headers = ("Id", "Updated", "Text", "Type", "User")
            parts.append(h.table(headers, rows, "results"))
            if after:
                query = urlencode({"ns": ns, "q": q, "cursor": after})
                parts.append(h.render('<p id="next">$a</p>', a=h.link(f"?{query}", "Next page")))
    except EngramError as exc:
        return error_page(request, exc, "Memories")
    return html_page("Memories", h.join(parts), csrf)


@admin_page_router.get("/memory", response_class=HTMLResponse)
async def memory(
    request: Request,
    ns: Annotated[str, Query(max_length=256)],
    id: Annotated[str, Query(max_length=256)],
) -> HTMLResponse:
    """One memory, every field, and its history (oldest first).

    The namespace and id travel in the query, not the path: an error that names the path
    then carries neither.
    """
    record_id = id
    try:
        scoped = memory_of(request).with_namespace(ns)
        record = await scoped.get(record_id)
        changes = await scoped.history(record_id)
    except EngramError as exc:
        return error_page(request, exc, "Memory")
    fields = record.to_dict()
    text = fields.pop("text", "")
    rows = [
        (
            c.seq,
            c.op,
            c.version,
            c.at.isoformat(timespec="seconds"),
            _short(str((c.after or c.before or {}).get("text", ""))),
        )
        for c in changes
    ]
    body = h.join(
        [
            h.render(
                '<p><a href="$back">Back to $ns</a></p>'
                '<h2>Text</h2><pre id="memory-text">$text</pre><h2>Fields</h2>',
                back=f"/admin/memories?{urlencode({'ns': ns})}",
                ns=ns,
                text=text,
            ),
            h.pretty(fields),
            h.render("<h2>History</h2>"),
            h.table(("Seq", "Op", "Version", "At", "Text"), rows, "history"),
        ]
    )
    return html_page("Memory", body, session_csrf(request))


# ---------------------------------------------------------------------------- keys


async def _keys_page(request: Request, notice: h.Markup | None = None) -> HTMLResponse:
    csrf = session_csrf(request)
    rows = []
    for k in await run_in_threadpool(keys_of(request).list_keys):
        revoked = k.revoked_at is not None
        rows.append(
            (
                h.render('<code class="key-id">$id</code>', id=k.id),
                k.namespace if k.namespace is not None else "(admin)",
                "yes" if k.read_only else "no",
                k.created_at and _when(k.created_at),
                _when(k.revoked_at) if revoked else h.revoke_button(k.id, csrf),
            )
        )
    headers = ("Id", "Namespace", "Read-only", "Created (UTC)", "Revoked")
    body = h.join([notice or h.Markup(""), h.table(headers, rows, "keys"), h.key_form(csrf)])
    return html_page("Keys", body, csrf)


def _when(us: int | None) -> str:
    from engramdb.timeutil import from_us

    at = from_us(us)
    return at.isoformat(timespec="seconds") if at is not None else ""


@admin_page_router.get("/keys", response_class=HTMLResponse)
async def keys_page(request: Request) -> HTMLResponse:
    """Every key (never a secret), with the forms that make and revoke keys."""
    try:
        return await _keys_page(request)
    except EngramError as exc:
        return error_page(request, exc, "Keys")


@admin_page_router.post("/keys", response_class=HTMLResponse)
async def create_key(request: Request) -> HTMLResponse:
    """Make a namespace key; the page shows it this once."""
    try:
        form = await checked_form(request)
        namespace = form.get("namespace", "").strip()
        read_only = form.get("read_only", "") in ("1", "on", "true")
        made = await run_in_threadpool(keys_of(request).create, namespace, read_only)
        request.scope[AUDIT_DETAILS] = {
            "created_key_id": made.row.id,
            "namespace": made.row.namespace,
            "read_only": made.row.read_only,
            "admin": False,
            "via": "admin page",
        }
        return await _keys_page(
            request, h.new_key_notice(made.key, made.row.id, made.row.namespace)
        )
    except EngramError as exc:
        return error_page(request, exc, "Keys")


@admin_page_router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request) -> Response:
    """Revoke a key, then show the keys again."""
    try:
        await checked_form(request)
        row = await run_in_threadpool(keys_of(request).revoke, key_id)
    except EngramError as exc:
        return error_page(request, exc, "Keys")
    request.scope[AUDIT_DETAILS] = {"namespace": row.namespace, "via": "admin page"}
    return RedirectResponse(f"{PREFIX}/keys", status_code=303)


def install_admin_page(app: Any) -> None:
    """Add the admin page to an app whose auth is installed (call after ``install_auth``:
    the cookie middleware must run before the auth middleware)."""
    app.include_router(admin_page_router)
    app.add_middleware(AdminCookieMiddleware, enabled=app.state.settings.auth != "off")
