"""``run``: serve the REST app with uvicorn, in one process or several on one store."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import SecretStr

from engramdb.config import Settings
from engramdb.errors import ValidationError
from engramdb.ops.schema import check_reachable, is_in_memory, upgrade_store
from engramdb.server.connections import uvicorn_options

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


def run(settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve the REST API on ``host:port`` until SIGINT or SIGTERM; in-flight requests drain.

    With ``workers > 1``, uvicorn starts that many processes from the import-string factory
    ``engramdb.server.app:app_from_env``; ``settings`` reach them as ``ENGRAM_*``
    environment variables, and each opens its own connections to the same store. The schema
    is brought up to date once, here, before any worker starts.

    Raises:
        ValidationError: ``workers`` is below 1, or several workers on an in-memory store.
    """
    import uvicorn

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValidationError(f"workers must be at least 1, got {workers!r}", field="workers")
    check_reachable(settings)  # an unreachable server: one clear error, within the timeout
    if workers == 1:
        from engramdb.server.app import create_app

        with _sigterm_exits_cleanly():
            app = create_app(settings=settings)
            uvicorn.run(app, host=host, port=port, log_level="info", **uvicorn_options(settings))
        return
    if is_in_memory(settings.url):
        raise ValidationError(
            "several workers cannot share an in-memory store; use a file URL", field="url"
        )
    upgrade_store(settings)  # migrate once, before N processes race to do it
    for key, value in settings_to_env(settings).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        **uvicorn_options(settings),
    )
