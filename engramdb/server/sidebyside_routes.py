"""The admin routes of running side by side (:mod:`engramdb.server.side_by_side`).

::

    GET /v1/admin/read-from-new   the share of reads the new store answers, the rollback
                                  state, the agreement figures and the dual-write queue
    PUT /v1/admin/read-from-new   set the share: {"percent": 0..100} (clears a rollback)

Admin keys only (:mod:`engramdb.server.auth`: unlisted paths are admin-only), and a change
leaves an admin audit entry (``set_read_from_new``, with the share before and after). A
server not running side by side answers 409 naming the setting that turns it on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from engramdb.server.auth import AUDIT_DETAILS
from engramdb.server.errors import ERROR_MEDIA_TYPE
from engramdb.server.schemas import ErrorOut
from engramdb.server.side_by_side import side_of

_ERR = {"model": ErrorOut, "content": {ERROR_MEDIA_TYPE: {}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {**_ERR, "description": "No key, or a key that is unknown or revoked"},
    403: {**_ERR, "description": "Only an admin key may call this"},
    409: {**_ERR, "description": "The server is not running side by side"},
    422: {**_ERR, "description": "Invalid request (percent not an integer within 0..100)"},
}
# The routes of this module (no library verb behind them).
SIDEBYSIDE_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {("GET", "/v1/admin/read-from-new"), ("PUT", "/v1/admin/read-from-new")}
)

sidebyside_router = APIRouter(prefix="/v1/admin", tags=["side by side"], responses=RESPONSES)


class ReadFromNewRequest(BaseModel):
    """The share of reads the new store answers."""

    model_config = ConfigDict(extra="forbid")

    percent: int = Field(ge=0, le=100, strict=True, description="0..100")


class AgreementOut(BaseModel):
    """The compared reads over the rollback window."""

    model_config = ConfigDict(extra="forbid")

    compared: int = Field(description="Reads compared since the start")
    new_errors: int = Field(description="Compared reads the new store failed")
    dropped: int = Field(description="Comparisons dropped behind a slow store")
    samples: int = Field(description="Compared reads in the window")
    inconsistency: float = Field(description="Share of the window's reads that disagreed")
    added_p95_ms: float = Field(description="The new store's p95 latency minus the old's")
    error_rate: float = Field(description="Share of the window's reads the new store failed")
    reason: str | None = Field(description="The rule the window breaks, if any")


class RollbackOut(BaseModel):
    """The window's figures when reads rolled back."""

    model_config = ConfigDict(extra="forbid")

    samples: int
    inconsistency: float
    added_p95_ms: float
    error_rate: float
    reason: str | None


class DualWriteOut(BaseModel):
    """The old store's side of the dual writes."""

    model_config = ConfigDict(extra="forbid")

    pending: int = Field(description="Writes queued for the old store")
    secondary_failures: int = Field(description="Writes the old store failed (then queued)")
    replayed: int = Field(description="Queued writes the old store has since taken")


class ReadFromNewOut(BaseModel):
    """Where reads go, why (after a rollback), and how well the two stores agree."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(description="The namespace served side by side")
    old: str = Field(description="The old store's URL (without a password)")
    read_from_new: int = Field(description="Percentage of reads the new store answers")
    rolled_back: bool = Field(description="Reads went back to the old store automatically")
    rollbacks: int = Field(description="Automatic rollbacks since the start")
    last_rollback: RollbackOut | None
    agreement: AgreementOut
    dual_write: DualWriteOut


@sidebyside_router.get("/read-from-new", response_model=ReadFromNewOut)
async def get_read_from_new(request: Request) -> ReadFromNewOut:
    """The share of reads the new store answers, the rollback state and the agreement."""
    side = side_of(request.app)
    return ReadFromNewOut.model_validate(await run_in_threadpool(side.status))


@sidebyside_router.put("/read-from-new", response_model=ReadFromNewOut)
async def put_read_from_new(body: ReadFromNewRequest, request: Request) -> ReadFromNewOut:
    """Route ``percent`` of reads to the new store from the next read on (clears a rollback
    and the comparison window)."""
    side = side_of(request.app)
    was = side.shadow.read_from_new
    status = await run_in_threadpool(side.set_read_from_new, body.percent, "REST")
    request.scope[AUDIT_DETAILS] = {"read_from_new": body.percent, "was": was}
    return ReadFromNewOut.model_validate(status)
