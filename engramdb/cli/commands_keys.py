"""Service keys on the command line: ``keys create | list | revoke | audit``.

They act on the store directly (whoever can open the store is its operator), so they work
with the service stopped, and a key made or revoked here holds for every running worker
from its next request. Key changes made here are audited as ``cli``. ``--namespace`` here is
the key's namespace, so these commands take ``--url`` and ``--json`` but not the global
``-n``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from engramdb.cli.context import state
from engramdb.cli.output import emit
from engramdb.errors import NotFoundError
from engramdb.ops.keys import CLI_ID, KeyRow, open_keys
from engramdb.timeutil import from_us, from_us_req

F = TypeVar("F", bound=Callable[..., Any])


def _store_options(fn: F) -> F:
    """``--url`` and ``--json`` (the global ones; ``-n`` would clash with ``--namespace``)."""

    def set_url(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            state().url = value

    def set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            state().json = True

    fn = click.option(
        "--json",
        "json_",
        is_flag=True,
        expose_value=False,
        callback=set_json,
        help="Machine-readable output: JSON on stdout, JSON errors on stderr.",
    )(fn)
    fn = click.option(
        "--url",
        expose_value=False,
        callback=set_url,
        help="Store URL (default: ENGRAM_URL or sqlite:///engram.db).",
    )(fn)
    return fn


def _key_dict(row: KeyRow) -> dict[str, Any]:
    created = from_us(row.created_at)
    revoked = from_us(row.revoked_at)
    return {
        "id": row.id,
        "namespace": row.namespace,
        "read_only": row.read_only,
        "admin": row.admin,
        "created_at": created.isoformat() if created else None,
        "revoked_at": revoked.isoformat() if revoked else None,
    }


@click.group("keys")
def keys_group() -> None:
    """Service keys: create, list, revoke, and the admin audit log."""


@keys_group.command("create")
@click.option("--namespace", help="The namespace the key reaches (it may hold nothing yet).")
@click.option("--read-only", is_flag=True, help="Reads only: every write is refused (403).")
@click.option("--admin", is_flag=True, help="An admin key (no namespace): every route.")
@_store_options
def keys_create_cmd(namespace: str | None, read_only: bool, admin: bool) -> None:
    """Make a key; it is printed this once (only its hash is stored)."""
    with open_keys(state().settings()) as keys:
        made = keys.create(namespace, read_only, admin=admin)
        keys.audit(
            CLI_ID,
            "create_key",
            None,
            201,
            {"created_key_id": made.row.id, "namespace": namespace, "read_only": read_only},
        )
    emit(
        {**_key_dict(made.row), "key": made.key},
        lambda d: click.echo(
            f"{d['key']}\n(id {d['id']}, "
            + ("admin" if d["admin"] else f"namespace {d['namespace']}")
            + (", read-only" if d["read_only"] else "")
            + "; shown once, keep it)"
        ),
    )


@keys_group.command("list")
@_store_options
def keys_list_cmd() -> None:
    """List every key (never a secret), revoked ones included."""
    with open_keys(state().settings()) as keys:
        rows = [_key_dict(r) for r in keys.list_keys()]

    def human(data: list[dict[str, Any]]) -> None:
        if not data:
            click.echo("no keys", err=True)
        for d in data:
            scope = "admin" if d["admin"] else f"ns={d['namespace']}"
            rights = "read-only" if d["read_only"] else "read-write"
            state_ = f"revoked {d['revoked_at']}" if d["revoked_at"] else "active"
            click.echo(f"{d['id']}  {scope}  {rights}  created {d['created_at']}  {state_}")

    emit(rows, human)


@keys_group.command("revoke")
@click.argument("key_id")
@_store_options
def keys_revoke_cmd(key_id: str) -> None:
    """Revoke a key now: every worker of a running service refuses it from its next request."""
    with open_keys(state().settings()) as keys:
        try:
            row = keys.revoke(key_id)
        except NotFoundError:
            keys.audit(CLI_ID, "revoke_key", key_id[:64], 404)
            raise
        keys.audit(CLI_ID, "revoke_key", key_id, 200, {"namespace": row.namespace})
    emit(_key_dict(row), lambda d: click.echo(f"revoked {d['id']} at {d['revoked_at']}"))


@keys_group.command("audit")
@click.option("--limit", type=int, default=100, show_default=True, help="Most entries shown.")
@_store_options
def keys_audit_cmd(limit: int) -> None:
    """Show the admin audit log, newest first (who, when, what, on what, result)."""
    with open_keys(state().settings()) as keys:
        rows = keys.audit_log(limit)
    entries = [
        {
            "seq": r.seq,
            "at": from_us_req(r.at).isoformat(),
            "key_id": r.key_id,
            "action": r.action,
            "target": r.target,
            "status": r.status,
            "result": r.result,
            "details": r.details,
        }
        for r in rows
    ]

    def human(data: list[dict[str, Any]]) -> None:
        if not data:
            click.echo("no audit entries", err=True)
        for d in data:
            click.echo(
                f"{d['seq']}  {d['at']}  {d['key_id']}  {d['action']}  {d['target'] or '-'}  "
                f"{d['status']} {d['result']}"
            )

    emit(entries, human)


COMMANDS = [keys_group]
