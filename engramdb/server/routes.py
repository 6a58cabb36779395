"""The REST routes: one endpoint per library method, under ``/v1``.

Layout (``{ns}`` is the namespace; the tenant boundary is in the URL)::

    POST   /v1/namespaces/{ns}/records                      add (one, or a batch)
    GET    /v1/namespaces/{ns}/records                      list (filter, shortcuts, cursor)
    POST   /v1/namespaces/{ns}/records/get-many             get_many
    POST   /v1/namespaces/{ns}/records/count                count
    POST   /v1/namespaces/{ns}/records/delete-all           delete_all
    GET    /v1/namespaces/{ns}/records/{id}                 get
    PATCH  /v1/namespaces/{ns}/records/{id}                 update
    DELETE /v1/namespaces/{ns}/records/{id}                 delete
    GET    /v1/namespaces/{ns}/records/{id}/history         history
    POST   /v1/namespaces/{ns}/search                       search
    POST   /v1/namespaces/{ns}/threads/{tid}/messages       add_messages
    POST   /v1/namespaces/{ns}/threads/{tid}/events         log_event
    GET    /v1/namespaces/{ns}/threads/{tid}/events         events
    GET    /v1/namespaces/{ns}/threads/{tid}/snapshot       snapshot
    GET    /v1/namespaces/{ns}/threads/{tid}/slots          get_slots
    PUT    /v1/namespaces/{ns}/threads/{tid}/slots          set_slots
    POST   /v1/namespaces/{ns}/forget                       forget
    GET    /v1/namespaces/{ns}/stats                        stats
    GET    /v1/namespaces                                   namespaces
    GET    /ready                                           health (/health: liveness)
    POST   /v1/admin/doctor | backup | restore | export | import | reembed

Every blocking call goes through ``AsyncMemory`` (a bounded thread pool), never the event
loop. ``backup`` and ``export`` stream the file they produce; ``restore`` and ``import``
take the file as the request body, so no client ever names a path on the server.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from engramdb._async_memory import AsyncMemory
from engramdb.errors import EngramError, ValidationError
from engramdb.server import schemas as s
from engramdb.server.auth import visible_namespaces, visible_stats
from engramdb.server.errors import ERROR_MEDIA_TYPE
from engramdb.server.uploads import NDJSON, OCTET_STREAM, receive_upload, upload_body

_ERR = {"model": s.ErrorOut, "content": {ERROR_MEDIA_TYPE: {}}}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_ERR, "description": "The Host header is not a trusted host"},
    401: {**_ERR, "description": "Missing or wrong API key"},
    403: {**_ERR, "description": "The API key may not make this call"},
    404: {**_ERR, "description": "Not found (also for another namespace's ids)"},
    405: {**_ERR, "description": "Method not allowed on this path"},
    408: {**_ERR, "description": "The request body did not arrive within body_timeout_s"},
    409: {**_ERR, "description": "Conflict: stale expected_version, id reused, embedder mismatch"},
    413: {**_ERR, "description": "A size or count limit was exceeded (details.limit names it)"},
    415: {**_ERR, "description": "An upload of the wrong content type"},
    422: {
        **_ERR,
        "description": "Invalid request (unknown fields or query parameters, bad values)",
    },
    429: {**_ERR, "description": "The key's rate or concurrency limit (see Retry-After)"},
    431: {**_ERR, "description": "Too many or too large request headers"},
    500: {**_ERR, "description": "Internal error (details are logged, never returned)"},
    502: {**_ERR, "description": "The embedder failed"},
    503: {**_ERR, "description": "The store is unavailable or the service is overloaded"},
    504: {**_ERR, "description": "A read ran past search_timeout_ms"},
}
# Library verb -> (HTTP method, path): one vocabulary; a test checks it covers ``Memory``.
ROUTES_BY_VERB: dict[str, tuple[str, str]] = {
    "add": ("POST", "/v1/namespaces/{ns}/records"),
    "list": ("GET", "/v1/namespaces/{ns}/records"),
    "get_many": ("POST", "/v1/namespaces/{ns}/records/get-many"),
    "count": ("POST", "/v1/namespaces/{ns}/records/count"),
    "delete_all": ("POST", "/v1/namespaces/{ns}/records/delete-all"),
    "get": ("GET", "/v1/namespaces/{ns}/records/{record_id}"),
    "update": ("PATCH", "/v1/namespaces/{ns}/records/{record_id}"),
    "delete": ("DELETE", "/v1/namespaces/{ns}/records/{record_id}"),
    "history": ("GET", "/v1/namespaces/{ns}/records/{record_id}/history"),
    "search": ("POST", "/v1/namespaces/{ns}/search"),
    "add_messages": ("POST", "/v1/namespaces/{ns}/threads/{thread_id}/messages"),
    "log_event": ("POST", "/v1/namespaces/{ns}/threads/{thread_id}/events"),
    "events": ("GET", "/v1/namespaces/{ns}/threads/{thread_id}/events"),
    "snapshot": ("GET", "/v1/namespaces/{ns}/threads/{thread_id}/snapshot"),
    "get_slots": ("GET", "/v1/namespaces/{ns}/threads/{thread_id}/slots"),
    "set_slots": ("PUT", "/v1/namespaces/{ns}/threads/{thread_id}/slots"),
    "forget": ("POST", "/v1/namespaces/{ns}/forget"),
    "stats": ("GET", "/v1/namespaces/{ns}/stats"),
    "namespaces": ("GET", "/v1/namespaces"),
    "health": ("GET", "/ready"),  # components; /health is liveness only (server/probes.py)
    "doctor": ("POST", "/v1/admin/doctor"),
    "backup": ("POST", "/v1/admin/backup"),
    "restore": ("POST", "/v1/admin/restore"),
    "export": ("POST", "/v1/admin/export"),
    "import_": ("POST", "/v1/admin/import"),
    "reembed": ("POST", "/v1/admin/reembed"),
}


async def memory_of(request: Request) -> AsyncMemory:
    """Return the app's ``AsyncMemory`` (scoped to the server's default namespace).

    ``async`` (like :func:`scoped`) although it awaits nothing: FastAPI runs a plain
    ``def`` dependency in its thread pool, one thread hop per request for no I/O.
    """
    mem: AsyncMemory = request.app.state.memory
    return mem


async def scoped(ns: s.NamespacePath, request: Request) -> AsyncMemory:
    """Dependency: the memory scoped to the namespace named in the URL (validated); in the
    namespace run side by side, the pair's view (``server/side_by_side.py``)."""
    mem: AsyncMemory = request.app.state.memory
    side = request.app.state.sidebyside
    if side is not None and ns == side.namespace:
        return cast(AsyncMemory, side.view(mem.with_namespace(ns)))
    return mem.with_namespace(ns)


Mem = Annotated[AsyncMemory, Depends(scoped)]
Root = Annotated[AsyncMemory, Depends(memory_of)]

records = APIRouter(prefix="/v1/namespaces/{ns}", responses=ERROR_RESPONSES)
admin = APIRouter(prefix="/v1/admin", tags=["admin"], responses=ERROR_RESPONSES)
meta = APIRouter(responses=ERROR_RESPONSES)


def _parse_filter(raw: str | None) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"filter is not valid JSON: {exc.msg}", field="filter") from exc
    except RecursionError as exc:
        raise ValidationError("filter nests too deeply", field="filter") from exc
    if not isinstance(value, dict):
        raise ValidationError("filter must be a JSON object", field="filter")
    return value


# ---------------------------------------------------------------------------- records


@records.post("/records", tags=["records"], response_model=s.AddResultsOut)
async def add(body: s.AddRequest, mem: Mem) -> s.AddResultsOut:
    """Remember one text (``text``) or a batch (``items``) in one transaction."""
    results = await mem.add(
        body.library_items(), id=body.id, on_error=body.on_error, **body.library_defaults()
    )
    return s.AddResultsOut(results=[s.AddResultOut.of(r) for r in results])


@records.get("/records", tags=["records"], response_model=s.RecordPageOut)
async def list_records(
    mem: Mem,
    filter: Annotated[str | None, Query(description="Filter object as JSON")] = None,
    user_id: Annotated[str | None, Query(pattern=s.SCOPE_RE, max_length=256)] = None,
    agent_id: Annotated[str | None, Query(pattern=s.SCOPE_RE, max_length=256)] = None,
    thread_id: Annotated[str | None, Query(pattern=s.SCOPE_RE, max_length=256)] = None,
    type: Annotated[str | None, Query(pattern=s.TYPE_RE, max_length=64)] = None,
    tags: Annotated[list[s.TagStr] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, description="At most max_top_k (past it 413)")] = 100,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
    descending: bool = False,
    valid_at: datetime | None = None,
    include_expired: bool = False,
) -> s.RecordPageOut:
    """Return a page of records matching the filter, in id (creation) order."""
    page = await mem.list(
        _parse_filter(filter),
        limit=limit,
        cursor=cursor,
        descending=descending,
        user_id=user_id,
        agent_id=agent_id,
        thread_id=thread_id,
        type=type,
        tags=tags,
        valid_at=valid_at,
        include_expired=include_expired,
    )
    return s.RecordPageOut(
        records=[s.RecordOut.of(r) for r in page.records], next_cursor=page.next_cursor
    )


@records.post("/records/get-many", tags=["records"], response_model=s.RecordsOut)
async def get_many(body: s.GetManyRequest, mem: Mem) -> s.RecordsOut:
    """Return the records among ``ids`` that exist, in the order given."""
    found = await mem.get_many(body.ids)
    return s.RecordsOut(records=[s.RecordOut.of(r) for r in found])


@records.post("/records/count", tags=["records"], response_model=s.CountOut)
async def count(body: s.CountRequest, mem: Mem) -> s.CountOut:
    """Count records matching the filter."""
    n = await mem.count(
        body.filter,
        valid_at=body.valid_at,
        include_expired=body.include_expired,
        **body.shortcuts(),
    )
    return s.CountOut(count=n)


@records.post("/records/delete-all", tags=["records"], response_model=s.DeletedOut)
async def delete_all(body: s.DeleteAllRequest, mem: Mem) -> s.DeletedOut:
    """Delete every record matching the filter (``all=true`` when there is none)."""
    n = await mem.delete_all(body.filter, all=body.all, **body.shortcuts())
    return s.DeletedOut(deleted=n)


@records.get("/records/{record_id}", tags=["records"], response_model=s.RecordOut)
async def get(record_id: s.RecordIdPath, mem: Mem) -> s.RecordOut:
    """Return one record (404 when it is not in this namespace)."""
    return s.RecordOut.of(await mem.get(record_id))


@records.patch("/records/{record_id}", tags=["records"], response_model=s.RecordOut)
async def update(record_id: s.RecordIdPath, body: s.UpdateRequest, mem: Mem) -> s.RecordOut:
    """Change a record; ``expected_version`` makes it a compare-and-set (409 when stale)."""
    fields = body.model_dump(exclude={"expected_version"})
    rec = await mem.update(record_id, expected_version=body.expected_version, **fields)
    return s.RecordOut.of(rec)


@records.delete("/records/{record_id}", tags=["records"], status_code=204)
async def delete(record_id: s.RecordIdPath, mem: Mem) -> Response:
    """Delete a record; its before-image stays in history."""
    await mem.delete(record_id)
    return Response(status_code=204)


@records.get("/records/{record_id}/history", tags=["records"], response_model=s.HistoryOut)
async def history(record_id: s.RecordIdPath, mem: Mem) -> s.HistoryOut:
    """Return every change of a record, oldest first."""
    entries = await mem.history(record_id)
    return s.HistoryOut(entries=[s.HistoryEntryOut.of(h) for h in entries])


@records.post("/search", tags=["search"], response_model=s.SearchPageOut)
async def search(body: s.SearchRequest, mem: Mem) -> s.SearchPageOut:
    """Find the records most relevant to ``query`` (hybrid, vector or keyword)."""
    page = await mem.search(
        body.query,
        top_k=body.top_k,
        filters=body.filter,
        mode=body.mode,
        threshold=body.threshold,
        offset=body.offset,
        cursor=body.cursor,
        valid_at=body.valid_at,
        include_expired=body.include_expired,
        include_entities=body.include_entities,
        **body.shortcuts(),
    )
    return s.SearchPageOut(
        hits=[s.SearchHitOut.of(h) for h in page.hits], next_cursor=page.next_cursor
    )


# ---------------------------------------------------------------------------- threads


@records.post("/threads/{thread_id}/messages", tags=["threads"], response_model=s.AddResultsOut)
async def add_messages(
    thread_id: s.ThreadIdPath, body: s.AddMessagesRequest, mem: Mem
) -> s.AddResultsOut:
    """Append conversation turns to a thread (and remember each as a record)."""
    msgs = [m.model_dump(exclude_none=True) for m in body.messages]
    results = await mem.add_messages(
        thread_id, msgs, user_id=body.user_id, agent_id=body.agent_id, remember=body.remember
    )
    return s.AddResultsOut(results=[s.AddResultOut.of(r) for r in results])


@records.post(
    "/threads/{thread_id}/events", tags=["threads"], response_model=s.EventOut, status_code=201
)
async def log_event(thread_id: s.ThreadIdPath, body: s.LogEventRequest, mem: Mem) -> s.EventOut:
    """Append one event to a thread's log."""
    ev = await mem.log_event(
        thread_id, body.action, body.payload, user_id=body.user_id, actor=body.actor
    )
    return s.EventOut.of(ev)


@records.get("/threads/{thread_id}/events", tags=["threads"], response_model=s.EventsOut)
async def events(
    thread_id: s.ThreadIdPath,
    mem: Mem,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, description="At most max_top_k (past it 413)")] = 1000,
) -> s.EventsOut:
    """Return a thread's events in the order they were appended."""
    found = await mem.events(thread_id, since=since, limit=limit)
    return s.EventsOut(events=[s.EventOut.of(e) for e in found])


@records.get("/threads/{thread_id}/snapshot", tags=["threads"], response_model=s.SnapshotOut)
async def snapshot(thread_id: s.ThreadIdPath, mem: Mem) -> s.SnapshotOut:
    """Return a readable, ordered account of a thread: its events and slots."""
    snap = await mem.snapshot(thread_id)
    return s.SnapshotOut(
        namespace=snap.namespace,
        thread_id=snap.thread_id,
        events=[s.EventOut.of(e) for e in snap.events],
        slots=s.SlotsOut.of(snap.slots),
        checkpoints=[s.CheckpointOut.of(c) for c in snap.checkpoints],
        text=snap.text,
    )


@records.get("/threads/{thread_id}/slots", tags=["threads"], response_model=s.SlotsOut)
async def get_slots(thread_id: s.ThreadIdPath, mem: Mem) -> s.SlotsOut:
    """Return a thread's working-memory slots and their version."""
    return s.SlotsOut.of(await mem.get_slots(thread_id))


@records.put("/threads/{thread_id}/slots", tags=["threads"], response_model=s.SlotsOut)
async def set_slots(thread_id: s.ThreadIdPath, body: s.SetSlotsRequest, mem: Mem) -> s.SlotsOut:
    """Write slots (null removes one); ``expected_version`` makes it a compare-and-set."""
    slots = await mem.set_slots(
        thread_id, body.values, expected_version=body.expected_version, user_id=body.user_id
    )
    return s.SlotsOut.of(slots)


# ---------------------------------------------------------------------------- namespace


@records.post("/forget", tags=["namespaces"], response_model=s.ForgetOut)
async def forget(body: s.ForgetRequest, mem: Mem) -> s.ForgetOut:
    """Erase a user's, a thread's or the namespace's data for good (no history kept)."""
    erased = await mem.forget(
        user_id=body.user_id,
        thread_id=body.thread_id,
        namespace=body.namespace,
        compact=body.compact,
    )
    return s.ForgetOut(erased=erased)


@records.get("/stats", tags=["namespaces"], response_model=s.StatsOut)
async def stats(mem: Mem, request: Request) -> s.StatsOut:
    """Return counts and sizes for this namespace and the whole store."""
    out = visible_stats(request, await mem.stats())
    # File paths are server configuration: counts and sizes only leave the server.
    for part in ("namespace_stats", "store"):
        if isinstance(out.get(part), dict):
            out[part] = {k: v for k, v in out[part].items() if k != "path"}
    return s.StatsOut(**out)


@meta.get("/v1/namespaces", tags=["namespaces"], response_model=s.NamespacesOut)
async def namespaces(mem: Root, request: Request) -> s.NamespacesOut:
    """Return every namespace with its record count (a namespace key: its own only)."""
    return s.NamespacesOut(namespaces=visible_namespaces(request, await mem.namespaces()))


# ---------------------------------------------------------------------------- admin


@asynccontextmanager
async def _scratch() -> AsyncIterator[Path]:
    """A private temporary directory, removed afterwards (unless handed to a response)."""
    path = Path(await run_in_threadpool(tempfile.mkdtemp, prefix="engramdb-"))
    try:
        yield path
    except BaseException:
        await run_in_threadpool(shutil.rmtree, path, True)
        raise


def _file_response(path: Path, media_type: str, filename: str) -> FileResponse:
    return FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        background=BackgroundTask(shutil.rmtree, path.parent, True),
    )


@contextmanager
def _uploaded_as(path: Path) -> Iterator[None]:
    """Name an uploaded file "the uploaded file" in errors: server paths stay private."""
    try:
        yield
    except EngramError as exc:
        exc.message = exc.message.replace(str(path), "the uploaded file")
        exc.args = (exc.message,)
        exc.details = {
            k: ("the uploaded file" if str(v) == str(path) else v) for k, v in exc.details.items()
        }
        raise


@admin.post("/doctor", response_model=s.DoctorOut)
async def doctor(body: s.DoctorRequest, mem: Root) -> s.DoctorOut:
    """Check integrity and that every derived index agrees with the tables."""
    return s.DoctorOut(report=await mem.doctor(repair=body.repair))


@admin.post(
    "/backup",
    response_class=FileResponse,
    responses={200: {"content": {"application/vnd.sqlite3": {}}}},
)
async def backup(mem: Root) -> FileResponse:
    """Stream a consistent online copy of the whole store (a SQLite file)."""
    async with _scratch() as tmp:
        path = tmp / "engram-backup.db"
        await mem.backup(path)
        return _file_response(path, "application/vnd.sqlite3", path.name)


@admin.post("/restore", response_model=s.DoctorOut, openapi_extra=upload_body(OCTET_STREAM))
async def restore(request: Request, mem: Root) -> s.DoctorOut:
    """Replace the store's content with an uploaded backup, then report ``doctor``."""
    async with _scratch() as tmp:
        try:
            path = tmp / "restore.db"
            await receive_upload(request, path, OCTET_STREAM)
            with _uploaded_as(path):
                await mem.restore(path)
        finally:
            await run_in_threadpool(shutil.rmtree, tmp, True)
    return s.DoctorOut(report=await mem.doctor())


@admin.post(
    "/export",
    response_class=FileResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def export(body: s.ExportRequest, mem: Root) -> FileResponse:
    """Stream records (with history), events and slots as versioned JSONL."""
    scoped_mem = mem.with_namespace(body.namespace) if body.namespace else mem
    async with _scratch() as tmp:
        path = tmp / "engram-export.jsonl"
        await scoped_mem.export(
            path, body.filter, all_namespaces=body.all_namespaces, vectors=body.vectors
        )
        return _file_response(path, "application/x-ndjson", path.name)


@admin.post("/import", response_model=s.ImportOut, openapi_extra=upload_body(NDJSON))
async def import_(
    request: Request,
    mem: Root,
    namespace: Annotated[str | None, Query(pattern=s.NAMESPACE_RE, max_length=128)] = None,
    keep_namespaces: bool = False,
) -> s.ImportOut:
    """Import an export file (the request body) into ``namespace`` or each line's own."""
    target = mem.with_namespace(namespace) if namespace else mem
    async with _scratch() as tmp:
        try:
            path = tmp / "import.jsonl"
            await receive_upload(request, path, NDJSON)
            with _uploaded_as(path):
                counts = await target.import_(path, keep_namespaces=keep_namespaces)
        finally:
            await run_in_threadpool(shutil.rmtree, tmp, True)
    return s.ImportOut(imported=counts)


@admin.post("/reembed", response_model=s.ReembedOut)
async def reembed(body: s.ReembedRequest, mem: Root) -> s.ReembedOut:
    """Re-embed every chunk with another embedder (resumable), then switch to it."""
    n = await mem.reembed(body.embedder, batch=body.batch)
    target = mem.embedder
    return s.ReembedOut(reembedded=n, embedder={"name": target.name, "dim": target.dim})
