"""The admin page's side-by-side form: ``POST /admin/read-from-new`` sets the share of reads
the new store answers (the overview shows it, :func:`engramdb.server.admin_html.side_by_side`).

Admin key only and CSRF-checked like every form of the page (:mod:`engramdb.server.admin_page`);
the change leaves an admin audit entry (``set_read_from_new``), like the REST route's.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from engramdb.errors import EngramError, ValidationError
from engramdb.server.admin_page import PREFIX, checked_form, error_page
from engramdb.server.auth import AUDIT_DETAILS
from engramdb.server.side_by_side import side_of

admin_sidebyside_router = APIRouter(prefix=PREFIX, include_in_schema=False)


def parse_percent(raw: str) -> int:
    """The form's percentage.

    Raises:
        ValidationError: not a whole number within 0..100.
    """
    text = raw.strip()
    if not text.isdigit() or not 0 <= int(text) <= 100:
        raise ValidationError(
            f"percent must be a whole number within 0..100, got {raw[:20]!r}", field="percent"
        )
    return int(text)


@admin_sidebyside_router.post("/read-from-new", response_class=HTMLResponse)
async def set_read_from_new(request: Request) -> Response:
    """Set the share of reads the new store answers, then show the overview again."""
    try:
        form = await checked_form(request)
        side = side_of(request.app)
        percent = parse_percent(form.get("percent", ""))
        was = side.shadow.read_from_new
        await run_in_threadpool(side.set_read_from_new, percent, "admin page")
    except EngramError as exc:
        return error_page(request, exc, "Side by side")
    request.scope[AUDIT_DETAILS] = {"read_from_new": percent, "was": was, "via": "admin page"}
    return RedirectResponse(PREFIX, status_code=303)
