"""``engramdb mcp``: the MCP server over stdio, for a local client (Claude Desktop, an IDE).

stdout carries the protocol and nothing else: logs go to stderr, and anything printed while
the store opens (a model loading, a warning) is sent to stderr too. Over stdio there is no
key: the local user who starts the process owns the store, as with every other command.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Any

import click

from engramdb.cli.context import global_options, state


@click.command("mcp")
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Level of the JSON log lines written to stderr.",
)
@global_options
def mcp_cmd(log_level: str) -> None:
    """Serve the memory tools over MCP on stdin/stdout (for a local MCP client)."""
    try:
        server_mod: Any = importlib.import_module("engramdb.server.mcp_server")
        logs: Any = importlib.import_module("engramdb.server.logs")
    except ImportError as exc:
        raise click.ClickException(f"the MCP server is not available: {exc}") from exc
    logs.configure_logging(json_lines=True, level=log_level)
    with contextlib.redirect_stdout(sys.stderr):
        memory = state().open()
    try:
        from engramdb._async_memory import AsyncMemory

        server = server_mod.build_mcp_server(memory._view(AsyncMemory))
        server.run("stdio")
    finally:
        memory.close()


COMMANDS = [mcp_cmd]
