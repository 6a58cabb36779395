"""The ``engramdb`` command line: one command per ``Memory`` method, in kebab-case.

::

    engramdb --no-model --url sqlite:///agent.db add "Alice moved to Lisbon" --user-id alice
    engramdb search "where does alice live" --user-id alice --json

Every :class:`~engramdb.errors.EngramError` exits with the code from the shared error table
(``engramdb.errors.exit_code_for``); usage errors exit 2. With ``--json`` results go to stdout
as JSON and errors to stderr as ``{"error", "message", "details"}``.
"""

from __future__ import annotations

from typing import Any

import click

from engramdb.cli import (
    commands_admin,
    commands_consolidate,
    commands_entities,
    commands_keys,
    commands_mcp,
    commands_reconcile,
    commands_records,
    commands_serve,
    commands_threads,
)
from engramdb.cli.context import CliState, global_options
from engramdb.cli.output import report_error, report_os_error
from engramdb.errors import EngramError

__all__ = ["cli", "main"]


class EngramGroup(click.Group):
    """A click group that turns an EngramError into its exit code, with no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; map an EngramError (or OSError, exit 1) to a message and code."""
        try:
            return super().invoke(ctx)
        except EngramError as exc:
            ctx.exit(report_error(exc))
        except OSError as exc:
            ctx.exit(report_os_error(exc))

    def list_commands(self, ctx: click.Context) -> list[str]:
        """List commands in the order they were registered (library order)."""
        return list(self.commands)


@click.group(cls=EngramGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="engramdb")
@global_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Long-term memory for AI agents: the engramdb command line."""
    ctx.ensure_object(CliState)


for _module in (
    commands_records,
    commands_threads,
    commands_entities,
    commands_consolidate,
    commands_admin,
    commands_keys,
    commands_serve,
    commands_mcp,
    commands_reconcile,
):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Entry point of the ``engramdb`` script."""
    cli(prog_name="engramdb")
