"""``run``: serve the REST app with uvicorn, in one process or several on one store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from pydantic import SecretStr

from engramdb.config import Settings
from engramdb.errors import ValidationError
from engramdb.ops.keys import open_keys
from engramdb.ops.schema import check_reachable, is_in_memory, upgrade_store
from engramdb.server.auth import announce_admin_key, check_bind
from engramdb.server.connections import uvicorn_options
from engramdb.server.logs import configure_logging, uvicorn_log_config

APP_FACTORY = "engramdb.server.app:app_from_env"


def settings_to_env(settings: Settings) -> dict[str, str | None]:
    """Return ``ENGRAM_*`` variables that make ``Settings()`` equal ``settings``.

    A value of None means "unset the variable" (the field is None, its default).
    """
    prefix = str(Settings.model_config.get("env_prefix") or "")
    out: dict[str, str | None] = {}
    for name in Settings.model_fields:
        value: Any = getattr(settings, name)
        key = f"{prefix}{name}".upper()
        if value is None:
            out[key] = None
        elif isinstance(value, SecretStr):
            out[key] = value.get_secret_value()
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, dict | list | tuple):
            out[key] = json.dumps(value)
        else:
            out[key] = str(value)
    return out


class _Stopped(Exception):
    """SIGTERM arrived outside uvicorn's own handler (before start, or re-raised after)."""


@contextmanager
def _shared_metrics_dir() -> Iterator[None]:
    """Give the worker processes one fresh Prometheus multiprocess directory.

    Set before they start (prometheus-client reads it when a process imports it) and removed
    when the service stops. A directory the operator set is used as it is and kept.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    path = tempfile.mkdtemp(prefix="engramdb-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _sigterm_exits_cleanly() -> Iterator[None]:
    """Make SIGTERM a clean stop (exit 0) instead of death by signal.

    uvicorn drains requests on SIGTERM, then re-raises the signal with the handler that was
    in place before it started; that handler is this one, so a drained shutdown returns
    normally from :func:`run`, and a SIGTERM during startup stops it the same way.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise _Stopped

    previous: Callable[[int, Any], Any] | int | None = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except _Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _zmq_beside(app: Any, zmq_url: str | None) -> Iterator[None]:
    """Serve ``app`` over ZeroMQ too while the block runs (nothing when no address is set)."""
    if not zmq_url:
        yield
        return
    from engramdb.zmq import serve_zmq

    with serve_zmq(app, zmq_url, default_namespace=app.state.settings.namespace):
        yield


@contextmanager
def _zmq_in_supervisor(settings: Settings, zmq_url: str | None) -> Iterator[None]:
    """With several workers the ZeroMQ endpoint is bound once, in the supervising process,
    over an app of its own on the same store."""
    if not zmq_url:
        yield
        return
    from engramdb.memory import Memory
    from engramdb.server.app import create_app

    mem = Memory(settings=settings)
    try:
        with _zmq_beside(create_app(mem), zmq_url):
            yield
    finally:
        mem.close()


def run(settings: Settings, host: str, port: int, workers: int, zmq_url: str | None = None) -> None:
    """Serve the REST API on ``host:port`` until SIGINT or SIGTERM; in-flight requests drain.

    With ``workers > 1``, uvicorn starts that many processes from the import-string factory
    ``engramdb.server.app:app_from_env``; ``settings`` reach them as ``ENGRAM_*``
    environment variables, and each opens its own connections to the same store. The schema
    is brought up to date once, here, before any worker starts.

    ``zmq_url`` (default ``settings.zmq_url``) adds the ZeroMQ endpoint, bound once per
    service whatever ``workers`` is.

    Raises:
        ValidationError: ``workers`` is below 1, or several workers on an in-memory store.
    """
    import uvicorn

    from engramdb.server.supervisor import supervise

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValidationError(f"workers must be at least 1, got {workers!r}", field="workers")
    check_bind(settings, host)  # no keys only on loopback, and only when asked
    check_reachable(settings)  # an unreachable server: one clear error, within the timeout
    base_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    # The app reads the bind address from its settings (MCP's DNS-rebinding check).
    settings = settings.model_copy(update={"host": host, "port": port})
    if workers == 1:
        from engramdb.server.app import create_app

        configure_logging(json_lines=settings.log_json, level=settings.log_level)
        with _sigterm_exits_cleanly():
            app = create_app(settings=settings)
            announce_admin_key(settings, app.state.keys, base_url)
            with _zmq_beside(app, zmq_url or settings.zmq_url):
                uvicorn.run(
                    app,
                    host=host,
                    port=port,
                    log_level=settings.log_level.lower(),
                    log_config=uvicorn_log_config(),
                    access_log=False,
                    **uvicorn_options(settings),
                )
        return
    if is_in_memory(settings.url):
        raise ValidationError(
            "several workers cannot share an in-memory store; use a file URL", field="url"
        )
    upgrade_store(settings)  # migrate once, before N processes race to do it
    with open_keys(settings) as keys:
        announce_admin_key(settings, keys, base_url)
    for key, value in settings_to_env(settings).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    with _shared_metrics_dir(), _zmq_in_supervisor(settings, zmq_url or settings.zmq_url):
        config = uvicorn.Config(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level.lower(),
            log_config=uvicorn_log_config(),
            access_log=False,
            **uvicorn_options(settings),
        )
        with suppress(KeyboardInterrupt):
            supervise(config)
