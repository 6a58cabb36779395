"""The FastAPI application: ``create_app`` over a ``Memory``, and the env-driven factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from engramdb._async_memory import AsyncMemory
from engramdb.config import Settings
from engramdb.memory import Memory
from engramdb.server import consolidate_routes, entity_routes, idempotency
from engramdb.server.admin_page import install_admin_page
from engramdb.server.admin_sidebyside import admin_sidebyside_router
from engramdb.server.auth import install_auth
from engramdb.server.docs import install_docs
from engramdb.server.errors import install_error_handlers
from engramdb.server.keys_routes import keys_router
from engramdb.server.limits import install_limits
from engramdb.server.logs import RequestLogMiddleware, configure_logging
from engramdb.server.lsn import ReadFloorMiddleware
from engramdb.server.mcp_server import mount_mcp
from engramdb.server.metrics import install_metrics, worker_exited
from engramdb.server.probes import probes
from engramdb.server.routes import admin, meta, records
from engramdb.server.schedule import scheduled_consolidation
from engramdb.server.side_by_side import SideBySide
from engramdb.server.sidebyside_routes import sidebyside_router

API_DESCRIPTION = """Long-term memory for AI agents over HTTP: the same verbs as the library.

Every error answers `{"error", "message", "details"}`; a namespace in the URL is the tenant
boundary. Request bodies refuse unknown and server-owned fields with 422.
"""


def create_app(memory: Memory | None = None, settings: Settings | None = None) -> FastAPI:
    """Build the REST app over ``memory`` (or over a new ``Memory`` opened from ``settings``).

    A ``Memory`` passed in stays the caller's: the app never closes it. One opened here is
    closed when the app shuts down. Blocking work runs in ``AsyncMemory``'s bounded thread
    pool, never on the event loop.

    Example::

        app = create_app(Memory("sqlite:///agent.db"))
        # uvicorn.run(app, host="127.0.0.1", port=8080)
    """
    from engramdb import __version__

    owned = memory is None
    if memory is None:
        memory = Memory(settings=settings if settings is not None else Settings())
    if settings is None:
        settings = memory.settings
    mem = memory

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            app.state.mcp_lifespan(),
            scheduled_consolidation(app.state.memory, settings.consolidate_interval_s),
        ):
            yield
        worker_exited()
        if app.state.sidebyside is not None:
            await run_in_threadpool(app.state.sidebyside.close)
        if owned:
            await run_in_threadpool(mem.close)

    app = FastAPI(
        title="engramdb",
        version=__version__,
        description=API_DESCRIPTION,
        docs_url=None,  # server/docs.py: a self-contained page, no CDN
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.memory = memory._view(AsyncMemory)
    app.state.settings = settings
    # Side by side with an old store (server/side_by_side.py): opened before serving, so a
    # wrong URL stops the start with its error instead of failing every request.
    try:
        app.state.sidebyside = SideBySide(memory, settings) if settings.sidebyside_old else None
    except BaseException:
        if owned:
            memory.close()
        raise
    install_error_handlers(app)
    app.add_middleware(ReadFloorMiddleware, last_write_lsn=memory._last_write_lsn)
    install_limits(app, settings)
    idempotency.install(app, memory)  # keys in the store: a retry lands once, any worker
    app.include_router(records)
    app.include_router(meta)
    app.include_router(admin)
    app.include_router(probes)
    app.include_router(keys_router)
    install_docs(app)
    install_metrics(app)
    app.state.mcp_lifespan = mount_mcp(app, app.state.memory, host=settings.host)
    install_auth(app, memory, settings)  # keys on every route but /health, /ready, /docs
    install_admin_page(app)  # /admin: the HTML page; its cookie middleware runs before auth
    app.add_middleware(RequestLogMiddleware)  # outermost: ids and times every request
    app.include_router(entity_routes.entities)
    app.include_router(consolidate_routes.consolidation)
    app.include_router(sidebyside_router)
    app.include_router(admin_sidebyside_router)
    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` and worker processes: settings from ``ENGRAM_*``.

    Each worker process calls it and opens its own connections to the one store file.
    """
    settings = Settings()
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    return create_app(settings=settings)
