"""The admin routes of service keys and of the admin audit log.

::

    POST   /v1/admin/keys            make a key: {"namespace", "read_only"} (or {"admin": true})
    GET    /v1/admin/keys            list keys (ids, namespaces, rights, times; never a secret)
    DELETE /v1/admin/keys/{key_id}   revoke a key, at once, in every worker process
    GET    /v1/admin/audit           the admin audit log, newest first

Admin keys only (:mod:`engramdb.server.auth`); key changes are audited there.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from engramdb.ops.keys import AuditRow, KeyRow, KeyService
from engramdb.server.auth import AUDIT_DETAILS
from engramdb.server.errors import ERROR_MEDIA_TYPE
from engramdb.server.schemas import ErrorOut
from engramdb.timeutil import from_us, from_us_req

_ERR = {"model": ErrorOut, "content": {ERROR_MEDIA_TYPE: {}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {**_ERR, "description": "No key, or a key that is unknown or revoked"},
    403: {**_ERR, "description": "Only an admin key may call this"},
    404: {**_ERR, "description": "No key has this id"},
    422: {**_ERR, "description": "Invalid request"},
    503: {**_ERR, "description": "The store is busy or unavailable"},
}
# The routes of this module (no library verb behind them): a test checks the OpenAPI lists them.
KEY_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/v1/admin/keys"),
        ("GET", "/v1/admin/keys"),
        ("DELETE", "/v1/admin/keys/{key_id}"),
        ("GET", "/v1/admin/audit"),
    }
)
NAMESPACE_FIELD = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"

keys_router = APIRouter(prefix="/v1/admin", tags=["keys"], responses=RESPONSES)


class CreateKeyRequest(BaseModel):
    """A namespace key (``namespace``, optionally ``read_only``), or an admin key."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = Field(
        None,
        pattern=NAMESPACE_FIELD,
        description="The namespace the key reaches (it may hold nothing yet)",
    )
    read_only: bool = Field(False, description="Reads only: every write answers 403")
    admin: bool = Field(False, description="An admin key (no namespace): every route")


class KeyOut(BaseModel):
    """A key as listed: never its secret."""

    model_config = ConfigDict(extra="forbid")

    id: str
    namespace: str | None = Field(description="None for an admin key")
    read_only: bool
    admin: bool
    created_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, row: KeyRow) -> KeyOut:
        """Build from a stored row."""
        return cls(
            id=row.id,
            namespace=row.namespace,
            read_only=row.read_only,
            admin=row.admin,
            created_at=from_us_req(row.created_at),
            revoked_at=from_us(row.revoked_at),
        )


class NewKeyOut(BaseModel):
    """A key just made: ``key`` is shown this once (only its hash is stored)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    key: str = Field(description="Send as Authorization: Bearer <key>; shown only now")
    namespace: str | None
    read_only: bool
    admin: bool
    created_at: datetime


class KeysOut(BaseModel):
    """Every key, revoked ones included, oldest first."""

    model_config = ConfigDict(extra="forbid")

    keys: list[KeyOut]


class AuditEntryOut(BaseModel):
    """One admin audit entry: who (key id), when, what, on what, with what result."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    at: datetime
    key_id: str
    action: str
    target: str | None
    status: int
    result: str = Field(description="ok, denied (401/403) or failed")
    details: dict[str, Any]

    @classmethod
    def of(cls, row: AuditRow) -> AuditEntryOut:
        """Build from a stored row."""
        try:
            details = json.loads(row.details)
        except json.JSONDecodeError:
            details = {}
        return cls(
            seq=row.seq,
            at=from_us_req(row.at),
            key_id=row.key_id,
            action=row.action,
            target=row.target,
            status=row.status,
            result=row.result,
            details=details if isinstance(details, dict) else {},
        )


class AuditOut(BaseModel):
    """A page of the audit log, newest first; ``next_before`` pages further back."""

    model_config = ConfigDict(extra="forbid")

    entries: list[AuditEntryOut]
    next_before: int | None = None


def keys_of(request: Request) -> KeyService:
    """The app's key service."""
    keys: KeyService = request.app.state.keys
    return keys


@keys_router.post("/keys", response_model=NewKeyOut, status_code=201)
async def create_key(body: CreateKeyRequest, request: Request) -> NewKeyOut:
    """Make a key for a namespace (read-only or not), or an admin key; shown once."""
    made = await run_in_threadpool(
        keys_of(request).create, body.namespace, body.read_only, admin=body.admin
    )
    row = made.row
    request.scope[AUDIT_DETAILS] = {
        "created_key_id": row.id,
        "namespace": row.namespace,
        "read_only": row.read_only,
        "admin": row.admin,
    }
    return NewKeyOut(
        id=row.id,
        key=made.key,
        namespace=row.namespace,
        read_only=row.read_only,
        admin=row.admin,
        created_at=from_us_req(row.created_at),
    )


@keys_router.get("/keys", response_model=KeysOut)
async def list_keys(request: Request) -> KeysOut:
    """List every key (never a secret), revoked ones with their ``revoked_at``."""
    rows = await run_in_threadpool(keys_of(request).list_keys)
    return KeysOut(keys=[KeyOut.of(r) for r in rows])


@keys_router.delete("/keys/{key_id}", response_model=KeyOut)
async def revoke_key(key_id: str, request: Request) -> KeyOut:
    """Revoke a key: every worker refuses it from its next request."""
    row = await run_in_threadpool(keys_of(request).revoke, key_id)
    request.scope[AUDIT_DETAILS] = {"namespace": row.namespace, "admin": row.admin}
    return KeyOut.of(row)


@keys_router.get("/audit", response_model=AuditOut)
async def audit(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=0)] = None,
) -> AuditOut:
    """The admin audit log (restore, import, reembed, forget, delete-all, key changes)."""
    rows = await run_in_threadpool(keys_of(request).audit_log, limit, before)
    nxt = rows[-1].seq if len(rows) == limit else None
    return AuditOut(entries=[AuditEntryOut.of(r) for r in rows], next_before=nxt)
