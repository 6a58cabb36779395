"""Long-running and delegated commands: ``serve`` (the REST service) and ``bench``."""

from __future__ import annotations

import importlib
import signal
from typing import Any

import click

from engramdb.cli.context import global_options, state
from engramdb.config import url_without_password


@click.command("serve")
@click.option("--host", default=None, help="Address to bind [default: ENGRAM_HOST or 127.0.0.1].")
@click.option(
    "--port", type=int, default=None, help="Port to listen on [default: ENGRAM_PORT or 8080]."
)
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
@click.option(
    "--zmq",
    "zmq_url",
    default=None,
    help="Also serve a ZeroMQ endpoint here, e.g. tcp://127.0.0.1:5570 (or ENGRAM_ZMQ_URL).",
)
@global_options
def serve_cmd(host: str | None, port: int | None, workers: int, zmq_url: str | None) -> None:
    """Run the REST service over the store (OpenAPI docs at /docs)."""
    settings = state().settings()
    if settings.sidebyside_old and workers > 1:
        raise click.UsageError(
            "side by side (ENGRAM_SIDEBYSIDE_OLD) runs in one worker process: its retry "
            "queue is drained by the process that owns it; use --workers 1"
        )
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    try:
        run: Any = importlib.import_module("engramdb.server").run
    except (ImportError, AttributeError) as exc:
        raise click.ClickException(f"the REST server is not available: {exc}") from exc
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"engramdb serving {url_without_password(settings.url, '***')} at http://{shown}:{port}",
        err=True,
    )
    click.echo(f"OpenAPI docs: http://{shown}:{port}/docs", err=True)
    if settings.sidebyside_old:
        click.echo(
            f"side by side with {url_without_password(settings.sidebyside_old, '***')} "
            f"(GET/PUT /v1/admin/read-from-new)",
            err=True,
        )
    zmq_url = zmq_url or settings.zmq_url
    if zmq_url:
        click.echo(f"ZeroMQ endpoint: {zmq_url}", err=True)
    # uvicorn drains requests on SIGTERM, then re-raises the signal under the handler that was
    # installed before it started: make that a clean exit 0 rather than death by signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    run(settings, host, port, workers, zmq_url)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


@click.command(
    "bench",
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],
    },
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_cmd(args: tuple[str, ...]) -> None:
    """Run the benchmarks (arguments go to the bench tool; try `engramdb bench --help`)."""
    try:
        bench_cli: Any = importlib.import_module("bench.cli")
        bench_main = bench_cli.main
    except (ImportError, AttributeError) as exc:
        raise click.ClickException(
            f"the benchmark package is not installed ({exc}); run it from a source checkout "
            "with `pip install -e '.[bench]'`"
        ) from exc
    raise SystemExit(int(bench_main(list(args)) or 0))


COMMANDS = [serve_cmd, bench_cmd]
