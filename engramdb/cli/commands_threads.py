"""Episodic and working memory: log-event, events, snapshot, slots get|set."""

from __future__ import annotations

import json
from typing import Any

import click

from engramdb.cli.context import global_options, parse_object, state
from engramdb.cli.output import emit, show_events
from engramdb.errors import ValidationError
from engramdb.models import Slots


@click.command("log-event")
@click.argument("thread_id")
@click.argument("action")
@click.option("--payload", help="Event payload as a JSON object.")
@click.option("--user-id", help="User the event belongs to.")
@click.option("--actor", help="Who did it (user, agent, tool name...).")
@global_options
def log_event_cmd(
    thread_id: str, action: str, payload: str | None, user_id: str | None, actor: str | None
) -> None:
    """Append an event (ACTION with a JSON payload) to a thread's log."""
    with state().open() as mem:
        ev = mem.log_event(
            thread_id, action, parse_object(payload, "--payload"), user_id=user_id, actor=actor
        )
    emit(ev, lambda e: show_events([e]))


@click.command("events")
@click.argument("thread_id")
@click.option("--since", help="Only events at or after this time (ISO 8601).")
@click.option("--limit", type=int, default=1000, show_default=True, help="Most events.")
@global_options
def events_cmd(thread_id: str, since: str | None, limit: int) -> None:
    """Show a thread's events in the order they were appended."""
    with state().open() as mem:
        events = mem.events(thread_id, since=since, limit=limit)
    emit(events, show_events)


@click.command("snapshot")
@click.argument("thread_id")
@global_options
def snapshot_cmd(thread_id: str) -> None:
    """Show a readable account of a thread: its events and slots."""
    with state().open() as mem:
        snap = mem.snapshot(thread_id)
    emit(snap, lambda s: click.echo(s.text))


def _show_slots(slots: Slots) -> None:
    click.echo(f"version: {slots.version}")
    for key, value in slots.values.items():
        click.echo(f"{key} = {json.dumps(value, ensure_ascii=False)}")


@click.group("slots")
def slots_group() -> None:
    """Working memory of a thread: named values with a version (get_slots / set_slots)."""


@slots_group.command("get")
@click.argument("thread_id")
@global_options
def slots_get_cmd(thread_id: str) -> None:
    """Show a thread's slots and their version."""
    with state().open() as mem:
        slots = mem.get_slots(thread_id)
    emit(slots, _show_slots)


def _assignment(arg: str) -> tuple[str, Any]:
    key, sep, raw = arg.partition("=")
    if not sep or not key:
        raise ValidationError(f"slot assignment {arg!r} must be KEY=VALUE", field="values")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare word is a string: `mood=happy`
    return key, value


@slots_group.command("set")
@click.argument("thread_id")
@click.argument("assignments", nargs=-1)
@click.option("--values", "values_json", help="Slots as a JSON object (null removes a slot).")
@click.option("--unset", multiple=True, help="Slot to remove (repeat).")
@click.option("--expected-version", type=int, help="Fail with a conflict unless at this version.")
@click.option("--user-id", help="User of the thread.")
@global_options
def slots_set_cmd(
    thread_id: str,
    assignments: tuple[str, ...],
    values_json: str | None,
    unset: tuple[str, ...],
    expected_version: int | None,
    user_id: str | None,
) -> None:
    """Write slots (KEY=VALUE, VALUE parsed as JSON when it is JSON); compare-and-set."""
    values: dict[str, Any] = parse_object(values_json, "--values") or {}
    values.update(_assignment(a) for a in assignments)
    values.update({key: None for key in unset})
    if not values:
        raise click.UsageError("give KEY=VALUE assignments, --values or --unset")
    with state().open() as mem:
        slots = mem.set_slots(thread_id, values, expected_version=expected_version, user_id=user_id)
    emit(slots, _show_slots)


COMMANDS = [log_event_cmd, events_cmd, snapshot_cmd, slots_group]
