"""Who may call what: service keys on every request, namespace isolation, the audit log.

Rules (one place, default deny):

* ``/health``, ``/ready``, ``/openapi.json``, ``/docs`` (with anything under it) and the
  admin page's login form ``/admin/login`` answer without a key (:data:`OPEN_PATHS`,
  :data:`OPEN_PREFIXES`); everything else needs ``Authorization: Bearer <key>`` (the admin
  page's cookie becomes that header before this check, for ``/admin`` paths only). No key,
  or a key that is malformed, unknown or revoked: 401 with ``WWW-Authenticate: Bearer``.
* An admin key may call every route. A namespace key may call only routes under
  ``/v1/namespaces/{ns}`` with its own ``{ns}`` (another namespace: 403), plus the routes of
  :data:`ROUTE_ACCESS` marked :attr:`Access.ANY_KEY`, which scope their answer to the key
  themselves (``/v1/namespaces`` lists only the key's namespace). Every other route
  (``/v1/admin/*``, and any route added later that no rule names) is admin-only.
* A read-only key may use GET and the reads sent as POST (:data:`READ_POSTS`); any other
  method is a write: 403.
* The namespace of a namespace route is the URL's: the routes scope the store by it, so no
  body, filter or cursor can reach past it.

The check runs as a pure ASGI middleware before any route, on the path exactly as the
router will match it (decoded, ``root_path`` removed): every namespace route is
``/v1/namespaces/{ns}/…`` and a path parameter never holds a ``/``, so the fourth segment of
the path is the ``{ns}`` the route will be given (a trailing newline or any look-alike is
another namespace: 403). It depends on no router internals, and a path no rule names
(a route added later, a mount) is admin-only.

Destructive calls (:data:`AUDITED`) leave one admin audit entry each (key id, time, action,
target, status), written before the response starts, so a client that has its answer finds
the entry. Refusals (403) of those calls are logged too.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
from enum import Enum
from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engramdb.config import Settings
from engramdb.errors import (
    AuthenticationError,
    EngramError,
    PermissionDeniedError,
    ValidationError,
    status_for,
)
from engramdb.ops.keys import AUTH_OFF_ID, KeyService, NewKey, Principal
from engramdb.server.errors import error_response

log = logging.getLogger("engramdb.server.auth")

PRINCIPAL = "engramdb.principal"  # scope key: the request's Principal
AUDIT_DETAILS = "engramdb.audit"  # scope key: details a route adds to its audit entry
# "/admin/login" is the admin page's login form: it must be reachable to get a key in.
OPEN_PATHS = frozenset({"/health", "/ready", "/openapi.json", "/docs", "/admin/login"})
OPEN_PREFIXES = ("/docs/",)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reads sent as POST, by their path after /v1/namespaces/{ns}/.
READ_POSTS = frozenset({("search",), ("records", "count"), ("records", "get-many"), ("summarize",)})
CHALLENGE = 'Bearer realm="engramdb"'


class Access(Enum):
    """What a path needs of a key."""

    ANY_KEY = "any key; the route scopes its answer to the key's namespace"
    NAMESPACE = "a key of the namespace in the URL (or an admin key)"
    ADMIN = "an admin key"


# Paths outside /v1/namespaces/{ns} that a namespace key may call (each route must scope
# what it returns with ``principal_of``); a path ending in "/" names everything under it.
# Every other path is for admin keys only.
ROUTE_ACCESS: dict[str, Access] = {
    "/v1/namespaces": Access.ANY_KEY,
    # MCP over HTTP: every tool call resolves its namespace (and checks a read-only key's
    # writes) through the principal, in engramdb.server.mcp_server.namespace_for_request.
    "/mcp": Access.ANY_KEY,
    "/mcp/": Access.ANY_KEY,
}

# The destructive calls that leave an admin audit entry: (method, path pattern, action).
AUDITED: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/v1/admin/restore"), "restore"),
    ("POST", re.compile(r"/v1/admin/import"), "import"),
    ("POST", re.compile(r"/v1/admin/reembed"), "reembed"),
    ("POST", re.compile(r"/v1/namespaces/(?P<ns>[^/]+)/forget"), "forget"),
    ("POST", re.compile(r"/v1/namespaces/(?P<ns>[^/]+)/records/delete-all"), "delete_all"),
    ("POST", re.compile(r"/v1/admin/keys"), "create_key"),
    ("DELETE", re.compile(r"/v1/admin/keys/(?P<key_id>[^/]+)"), "revoke_key"),
    ("POST", re.compile(r"/admin/keys"), "create_key"),  # the admin page's forms
    ("POST", re.compile(r"/admin/keys/(?P<key_id>[^/]+)/revoke"), "revoke_key"),
    ("PUT", re.compile(r"/v1/admin/read-from-new"), "set_read_from_new"),
    ("POST", re.compile(r"/admin/read-from-new"), "set_read_from_new"),
]


def route_path(scope: Scope) -> str:
    """The path the router matches (``root_path`` removed), decoded as the router sees it."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def classify(path: str) -> tuple[Access, str | None, tuple[str, ...]]:
    """The access a path needs, the namespace it names, and what follows the namespace.

    Every namespace route lives under ``/v1/namespaces/{ns}/``, and a path parameter never
    holds a ``/``: the path's fourth segment is the ``{ns}`` the route will be given.
    """
    for prefix, access in ROUTE_ACCESS.items():
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return access, None, ()
    parts = path.split("/")
    if len(parts) >= 4 and parts[:3] == ["", "v1", "namespaces"] and parts[3]:
        return Access.NAMESPACE, parts[3], tuple(parts[4:])
    return Access.ADMIN, None, ()


def is_write(method: str, tail: tuple[str, ...]) -> bool:
    """Whether a call writes (a read-only key may not make it)."""
    return method not in READ_METHODS and not (method == "POST" and tail in READ_POSTS)


def authorize(principal: Principal, method: str, path: str) -> None:
    """Raise PermissionDeniedError unless ``principal`` may call ``method path``.

    Raises:
        PermissionDeniedError: another namespace, a write with a read-only key, or a path
            only an admin key may call.
    """
    if principal.admin:
        return
    access, namespace, tail = classify(path)
    if access is Access.ADMIN:
        raise PermissionDeniedError("this route needs an admin key", path=path[:256])
    if access is Access.NAMESPACE:
        principal.require(namespace, is_write(method, tail))


def audited(method: str, path: str) -> tuple[str, str | None] | None:
    """``(action, target)`` when ``method path`` is a destructive call, else None."""
    for verb, pattern, action in AUDITED:
        found = pattern.fullmatch(path)
        if verb == method and found:
            groups = found.groupdict()
            return action, groups.get("ns") or groups.get("key_id")
    return None


def principal_of(request: Any) -> Principal:
    """The principal the middleware authenticated for ``request`` (a Starlette request).

    Raises:
        AuthenticationError: the request went past no authentication (an open route).
    """
    found = request.scope.get(PRINCIPAL)
    if not isinstance(found, Principal):
        raise AuthenticationError("this route needs a key")
    return found


def visible_namespaces(request: Any, counts: dict[str, int]) -> dict[str, int]:
    """The namespaces ``request``'s key may see: all for an admin, else its own (even empty)."""
    principal = principal_of(request)
    if principal.namespace is None:
        return counts
    return {principal.namespace: counts.get(principal.namespace, 0)}


def visible_stats(request: Any, out: dict[str, Any]) -> dict[str, Any]:
    """``stats`` as ``request``'s key may see it: a namespace key gets no store-wide counts
    (they add up other namespaces' records)."""
    if principal_of(request).namespace is not None and isinstance(out.get("store"), dict):
        out["store"] = {k: v for k, v in out["store"].items() if k == "backend"}
    return out


def bearer(scope: Scope) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header (None when there is none)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            if not text:
                return None  # an empty header sends no credentials at all
            scheme, _, token = text.partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else ""
    return None


def _is_preflight(scope: Scope) -> bool:
    """A browser's CORS preflight (OPTIONS with Origin and Access-Control-Request-Method).

    It carries no key by design and returns no data: the CORS layer inside answers it (or,
    with CORS off, the router refuses it), so it passes the key check.
    """
    if scope.get("type") != "http" or scope.get("method") != "OPTIONS":
        return False
    names = {name for name, _ in scope.get("headers", [])}
    return b"origin" in names and b"access-control-request-method" in names


class AuthMiddleware:
    """Authenticates every request that is not open, authorizes it, audits it (ASGI)."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyService,
        enabled: bool = True,
        open_paths: frozenset[str] = OPEN_PATHS,
    ) -> None:
        self.app = app
        self.keys = keys
        self.enabled = enabled
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call (see the module docstring)."""
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path in self.open_paths or path.startswith(OPEN_PREFIXES) or _is_preflight(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websocket route is open or keyed: refuse it
            await send({"type": "websocket.close", "code": 1008})
            return
        try:
            principal = await self._authenticate(scope)
        except EngramError as exc:  # 401; or the store failing the lookup (503), as JSON
            await self._refuse(scope, receive, send, exc)
            return
        scope[PRINCIPAL] = principal
        scope.setdefault("state", {})["key_id"] = principal.key_id  # for the access line
        method = scope.get("method", "GET")
        audit = audited(method, path)
        try:
            authorize(principal, method, path)
        except PermissionDeniedError as exc:
            if audit is not None:
                await self._audit(scope, principal, *audit, status_for(exc))
            await self._refuse(scope, receive, send, exc)
            return
        if audit is None:
            await self.app(scope, receive, send)
            return

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._audit(scope, principal, *audit, int(message["status"]))
            await send(message)

        await self.app(scope, receive, audited_send)

    async def _authenticate(self, scope: Scope) -> Principal:
        if not self.enabled:
            return Principal(AUTH_OFF_ID, None)
        key = bearer(scope)
        if not key:
            raise AuthenticationError(
                "this route needs a key: send Authorization: Bearer <key>",
                header="Authorization",
            )
        # A key checked since the store last changed needs no read, and no thread.
        known = self.keys.cached(key)
        if known is not None:
            return known
        return await anyio.to_thread.run_sync(self.keys.authenticate, key)

    async def _audit(
        self, scope: Scope, principal: Principal, action: str, target: str | None, status: int
    ) -> None:
        details = dict(scope.get(AUDIT_DETAILS) or {})
        query = scope.get("query_string", b"").decode("latin-1")
        if query:
            details["query"] = query[:512]
        try:
            await anyio.to_thread.run_sync(
                self.keys.audit, principal.key_id, action, target, status, details
            )
        except EngramError:
            # The call itself is done; its answer must not turn into a failure.
            log.error("could not write the admin audit entry of %s by %s", action, principal.key_id)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, exc: EngramError) -> None:
        status = status_for(exc)
        response = error_response(status, exc.code, exc.message, exc.details)
        if status == 401:
            invalid = bearer(scope) is not None
            response.headers["WWW-Authenticate"] = CHALLENGE + (
                ', error="invalid_token"' if invalid else ""
            )
        await response(scope, receive, send)


def install_auth(app: Any, memory: Any, settings: Settings) -> None:
    """Wire keys into a FastAPI app: the middleware and ``app.state.keys`` (the key routes
    themselves are included by the app, like every other router).

    Called by :func:`engramdb.server.app.create_app` after its other middleware, so this one
    runs first on every request.
    """
    keys = KeyService.of(memory, settings)
    app.state.keys = keys
    _declare_bearer(app)
    enabled = settings.auth != "off"
    if not enabled:
        log.warning("authentication is OFF: every caller is admin (ENGRAM_AUTH=off)")
    # /metrics is keyed like every route unless a scrape port is meant to read it openly.
    open_paths = OPEN_PATHS | ({"/metrics"} if settings.metrics_public else set())
    app.add_middleware(AuthMiddleware, keys=keys, enabled=enabled, open_paths=open_paths)


def _declare_bearer(app: Any) -> None:
    """Declare the Bearer scheme in the OpenAPI document (``/docs`` gets its Authorize
    button); the open routes say they need none. Wraps whatever ``app.openapi`` is."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            schema: dict[str, Any] = app.openapi_schema
            return schema
        schema = build()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "A service key: the admin key, or a namespace key",
        }
        schema["security"] = [{"bearer": []}]
        for path, operations in schema.get("paths", {}).items():
            if path in OPEN_PATHS:
                for operation in operations.values():
                    operation["security"] = []
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


# ---------------------------------------------------------------------------- serving


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to serve without keys anywhere but on a loopback address; warn when off.

    Raises:
        ValidationError: ``auth`` is off and ``host`` is not a loopback address.
    """
    if settings.auth != "off":
        return
    if not is_loopback(host):
        raise ValidationError(
            f"ENGRAM_AUTH=off is allowed only on a loopback address, not {host!r}: "
            "serve with keys (unset ENGRAM_AUTH) or bind 127.0.0.1",
            field="auth",
        )
    print(
        "engramdb: WARNING: authentication is OFF (ENGRAM_AUTH=off): anyone who can reach "
        f"{host} is admin",
        file=sys.stderr,
        flush=True,
    )


def announce_admin_key(settings: Settings, keys: KeyService, base_url: str) -> NewKey | None:
    """Make the store's admin key on the first start and print it (once: only its hash stays).

    Nothing when keys are off, when ``ENGRAM_ADMIN_KEY`` is set, or when the store already
    holds an admin key.
    """
    if settings.auth == "off":
        return None
    made = keys.ensure_admin_key()
    if made is not None:
        print(
            "engramdb: admin key created (shown once; keep it, only its hash is stored):\n"
            f"  {made.key}\n"
            f'  curl -H "Authorization: Bearer {made.key}" {base_url}/v1/namespaces',
            file=sys.stderr,
            flush=True,
        )
    return made
