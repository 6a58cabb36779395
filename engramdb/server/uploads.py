"""File uploads (import, restore): the content type checked, the body streamed to disk.

Why a content-type check: a browser may post ``text/plain`` or a form across sites without
a preflight; an upload that replaces the store must not be reachable that way. Import takes
``application/x-ndjson`` (what export emits), restore ``application/octet-stream``; either
may come as the raw body or as the one file part of ``multipart/form-data``. Anything else
is :class:`~engramdb.errors.UnsupportedMediaTypeError` (415).

Why streaming: an upload may be larger than memory. The raw body is written chunk by chunk
as it arrives (its size bounded by ``max_upload_bytes`` in
:class:`~engramdb.server.limits.RequestLimitsMiddleware`); a multipart part is spooled to
disk by the form parser and then copied in chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from engramdb.errors import UnsupportedMediaTypeError, ValidationError

NDJSON = "application/x-ndjson"
OCTET_STREAM = "application/octet-stream"
MULTIPART = "multipart/form-data"
_CHUNK = 1 << 20


def upload_body(media_type: str) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of an upload route taking ``media_type``."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    form = {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary"}},
            "required": ["file"],
        }
    }
    return {"requestBody": {"required": True, "content": {media_type: binary, MULTIPART: form}}}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def receive_upload(request: Request, dest: Path, media_type: str) -> None:
    """Write the uploaded file of ``request`` to ``dest``, never holding it whole in memory.

    Raises:
        UnsupportedMediaTypeError: the body is neither ``media_type`` nor multipart.
        ValidationError: a multipart body without exactly one file part.
    """
    sent = _media_type(request)
    if sent == media_type:
        fh = await run_in_threadpool(open, dest, "wb")
        try:
            async for chunk in request.stream():
                if chunk:
                    await run_in_threadpool(fh.write, chunk)
        finally:
            await run_in_threadpool(fh.close)
        return
    if sent == MULTIPART:
        async with request.form(max_files=1, max_fields=8) as form:
            files = [v for v in form.values() if isinstance(v, UploadFile)]
            if len(files) != 1:
                raise ValidationError(
                    "a multipart upload must hold exactly one file part", field="file"
                )
            await _copy(files[0], dest)
        return
    raise UnsupportedMediaTypeError(
        f"this upload takes {media_type} (or {MULTIPART} with one file part), "
        f"not {sent or 'a body without a content type'}",
        content_type=sent,
        expected=[media_type, MULTIPART],
    )


async def _copy(upload: UploadFile, dest: Path) -> None:
    fh = await run_in_threadpool(open, dest, "wb")
    try:
        while chunk := await upload.read(_CHUNK):
            await run_in_threadpool(fh.write, chunk)
    finally:
        await run_in_threadpool(fh.close)
