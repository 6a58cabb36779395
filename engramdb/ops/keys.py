"""Service keys: making, checking and revoking them, and the admin audit log.

A key is ``ek_<id>_<secret>``: 16 hex digits of public id (what lists, the audit log and
``DELETE /v1/admin/keys/{id}`` name) and 32 random bytes of secret (base64url). The store
keeps the SHA-256 of the whole key, never the key: a key carries 256 bits of chance, so a
plain hash cannot be reversed by guessing, and a slow password hash would only cost every
request time. Checking compares digests with :func:`hmac.compare_digest` (constant time).

Two kinds: an admin key (no namespace; every route) and a namespace key (its namespace's
routes only; ``read_only`` keeps it to reads). The admin key of ``ENGRAM_ADMIN_KEY`` lives
in the settings, not the store; without it, the first start of a service over a store with
no admin key makes one (:meth:`KeyService.ensure_admin_key`) and prints it once.

A check reads the key's row from the store (one primary-key read, on the primary for
PostgreSQL), so a revocation holds for the next request of every worker process at once.
The one shortcut keeps that promise: a store with a cheap change counter
(``KeyStore.keys_version``; SQLite's ``data_version``, which moves on every commit of any
process) lets :meth:`KeyService.cached` answer a key checked since the counter last moved,
without a read and without leaving the event loop. Any commit, a revocation among them,
moves the counter, and the next check reads the row again. PostgreSQL has no such counter
and always reads.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engramdb.config import Settings
from engramdb.engine.validation import NAMESPACE_PATTERN, check_namespace
from engramdb.errors import (
    AuthenticationError,
    NotFoundError,
    NotSupportedError,
    PermissionDeniedError,
    ValidationError,
)
from engramdb.stores import open_store
from engramdb.stores.base import KeyStore, Store
from engramdb.stores.key_rows import AuditRow, KeyRow
from engramdb.timeutil import now_us

if TYPE_CHECKING:
    from engramdb._facade import _Shared

__all__ = [
    "AUTH_OFF_ID",
    "CLI_ID",
    "ENV_ADMIN_ID",
    "AuditRow",
    "KeyRow",
    "KeyService",
    "NewKey",
    "Principal",
    "hash_key",
    "open_keys",
]

KEY_PATTERN = re.compile(r"^ek_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})$")
ADMIN_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{16,512}$")  # printable ASCII, no spaces
ENV_ADMIN_ID = "env-admin"  # who, in the audit log, the ENGRAM_ADMIN_KEY admin is
AUTH_OFF_ID = "auth-off"  # who, when the service runs without keys (loopback only)
CLI_ID = "cli"  # who, when the command line changes keys on the store directly
MAX_AUDIT_PAGE = 1000
MAX_CACHED_KEYS = 1024


def hash_key(key: str) -> str:
    """The SHA-256 of a key, hex: what the store keeps and what a check compares."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh ``(id, key)``."""
    key_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return key_id, f"ek_{key_id}_{secret}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a key's id, its namespace (None: admin) and its rights."""

    key_id: str
    namespace: str | None
    read_only: bool = False

    @property
    def admin(self) -> bool:
        """True for an admin key: every route, every namespace."""
        return self.namespace is None

    def require(self, namespace: str | None, write: bool) -> None:
        """Refuse a call this key may not make; every surface (REST, ZeroMQ, MCP) asks here.

        ``namespace`` is the one the call reaches, None for a store-wide (admin) call;
        ``write`` says whether it changes anything.

        Raises:
            PermissionDeniedError: an admin call, another namespace, or a write with a
                read-only key.
        """
        if self.namespace is None:
            return
        if namespace is None:
            raise PermissionDeniedError("this call needs an admin key")
        if namespace != self.namespace:
            raise PermissionDeniedError(
                f"this key is for namespace {self.namespace!r} only", namespace=self.namespace
            )
        if write and self.read_only:
            raise PermissionDeniedError("this key is read-only", namespace=self.namespace)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: its stored row and the key itself (shown once, never stored)."""

    row: KeyRow
    key: str


class KeyService:
    """Keys and the audit log of one store (see the module docstring).

    Example::

        with open_keys(Settings(url="sqlite:///agent.db")) as keys:
            made = keys.create("team-a", read_only=True)
            print(made.key)
    """

    def __init__(self, store: Store, admin_key: str | None = None) -> None:
        if not isinstance(store, KeyStore):
            raise NotSupportedError(
                f"the {store.backend} store keeps no service keys",
                backend=store.backend,
                capability="KeyStore",
            )
        if admin_key is not None and not ADMIN_KEY_PATTERN.match(admin_key):
            raise ValidationError(
                "ENGRAM_ADMIN_KEY must be 16-512 printable ASCII characters without spaces",
                field="admin_key",
            )
        self._store: KeyStore = store
        self._admin_hash = hash_key(admin_key) if admin_key is not None else None
        # digest -> (keys_version when the row was read, principal); see ``cached``.
        self._checked: dict[str, tuple[int, Principal]] = {}
        self._pid = os.getpid()  # a forked child's counter is another connection's: start over

    @classmethod
    def of(cls, memory: _Shared, settings: Settings | None = None) -> KeyService:
        """The key service over the store a ``Memory``/``AsyncMemory`` is open on."""
        chosen = settings if settings is not None else memory.settings
        secret = chosen.admin_key.get_secret_value() if chosen.admin_key else None
        return cls(memory.engine.store, secret)

    @property
    def has_settings_admin(self) -> bool:
        """Whether an admin key comes from the settings (``ENGRAM_ADMIN_KEY``)."""
        return self._admin_hash is not None

    # ------------------------------------------------------------------ keys

    def create(
        self, namespace: str | None, read_only: bool = False, *, admin: bool = False
    ) -> NewKey:
        """Make a key for ``namespace`` (which may hold nothing yet), or an admin key.

        Raises:
            ValidationError: a bad namespace, both or neither of ``namespace`` and ``admin``,
                or a read-only admin key.
        """
        if admin:
            if namespace is not None or read_only:
                raise ValidationError(
                    "an admin key has no namespace and is never read-only", field="admin"
                )
        else:
            if namespace is None:
                raise ValidationError(
                    "a key needs a namespace, or must be an admin key", field="namespace"
                )
            check_namespace(namespace)
            if not NAMESPACE_PATTERN.fullmatch(namespace):  # no trailing newline either
                raise ValidationError(f"namespace {namespace!r} is invalid", field="namespace")
        if not isinstance(read_only, bool):
            raise ValidationError("read_only must be true or false", field="read_only")
        key_id, key = new_key()
        row = KeyRow(key_id, hash_key(key), namespace, read_only, now_us())
        self._store.insert_key(row)
        return NewKey(row, key)

    def ensure_admin_key(self) -> NewKey | None:
        """Make the store's admin key when no admin key exists at all; else None.

        None when ``ENGRAM_ADMIN_KEY`` is set or the store already holds an admin key in
        force. Several processes starting at once make one key between them.
        """
        if self._admin_hash is not None:
            return None
        key_id, key = new_key()
        row = KeyRow(key_id, hash_key(key), None, False, now_us())
        return NewKey(row, key) if self._store.insert_key(row, only_if_no_admin=True) else None

    def list_keys(self) -> list[KeyRow]:
        """Every key in the store, revoked ones included (never a secret)."""
        return self._store.list_keys()

    def revoke(self, key_id: str) -> KeyRow:
        """Revoke a key now; every process refuses it from its next request.

        Raises:
            NotFoundError: no key has this id (the settings' admin key is not in the store:
                change ``ENGRAM_ADMIN_KEY`` to retire it).
        """
        if not isinstance(key_id, str) or not re.fullmatch(r"[0-9a-f]{16}", key_id):
            raise NotFoundError(f"no key has id {key_id!r}", key_id=str(key_id)[:64])
        row = self._store.revoke_key(key_id, now_us())
        if row is None:
            raise NotFoundError(f"no key has id {key_id!r}", key_id=key_id)
        return row

    def authenticate(self, key: str) -> Principal:
        """The principal ``key`` stands for (reads the store: call it off the event loop).

        Raises:
            AuthenticationError: the key is unknown, malformed or revoked (the message
                never repeats it).
        """
        digest = hash_key(key)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal(ENV_ADMIN_ID, None)
        found = KEY_PATTERN.match(key)
        # Read before the row: a change committed between the two moves it past this value.
        version = self._store.keys_version() if found else None
        row = self._store.get_key(found.group(1)) if found else None
        if row is None or not hmac.compare_digest(digest, row.secret_hash):
            raise AuthenticationError("the key is not valid")
        if row.revoked_at is not None:
            raise AuthenticationError("the key was revoked", key_id=row.id)
        principal = Principal(row.id, row.namespace, row.read_only)
        if version is not None and self._pid == os.getpid():
            if len(self._checked) >= MAX_CACHED_KEYS:
                self._checked.clear()
            self._checked[digest] = (version, principal)
        return principal

    def cached(self, key: str) -> Principal | None:
        """The principal of ``key`` when that needs no read of the store, else None (then
        call :meth:`authenticate`). Never waits: safe on an event loop.

        Answers the settings' admin key, and a store key :meth:`authenticate` accepted
        while no commit has happened since (``KeyStore.keys_version`` unchanged); a revoked
        or changed key always misses. Refusals are never answered from here.
        """
        digest = hash_key(key)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal(ENV_ADMIN_ID, None)
        if self._pid != os.getpid():
            self._checked, self._pid = {}, os.getpid()
        entry = self._checked.get(digest)
        if entry is None:
            return None
        version = self._store.keys_version()
        if version is None or version != entry[0]:
            return None
        return entry[1]

    # ------------------------------------------------------------------ audit log

    def audit(
        self,
        key_id: str,
        action: str,
        target: str | None,
        status: int,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append one entry to the admin audit log (who, when, what, on what, result)."""
        result = "ok" if status < 400 else "denied" if status in (401, 403) else "failed"
        text = json.dumps(details or {}, sort_keys=True, default=str)
        return self._store.append_audit(
            AuditRow(now_us(), key_id, action, target, status, result, text)
        )

    def audit_log(self, limit: int = 100, before: int | None = None) -> list[AuditRow]:
        """The newest ``limit`` audit entries (older than seq ``before``), newest first.

        Raises:
            ValidationError: ``limit`` outside 1-1000 or a negative ``before``.
        """
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_AUDIT_PAGE
        ):
            raise ValidationError(f"limit must be 1-{MAX_AUDIT_PAGE}", field="limit")
        if before is not None and (
            isinstance(before, bool) or not isinstance(before, int) or before < 0
        ):
            raise ValidationError("before must be a sequence number (0 or more)", field="before")
        return self._store.list_audit(limit, before)


@contextmanager
def open_keys(settings: Settings) -> Iterator[KeyService]:
    """The key service over the store ``settings.url`` names, opened for the block.

    For the command line and the server's start (before workers exist); no embedder loads.
    """
    store = open_store(settings.url, settings)
    try:
        secret = settings.admin_key.get_secret_value() if settings.admin_key else None
        yield KeyService(store, secret)
    finally:
        store.close()
