"""Rendering results for people (short lines) or machines (``--json``), and errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from engramdb.cli.context import state
from engramdb.errors import EngramError, exit_code_for
from engramdb.models import Event, HistoryEntry, MemoryRecord, SearchHit


def to_jsonable(value: Any) -> Any:
    """Turn models (anything with ``to_dict``), lists and dicts into JSON-ready values."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def emit(value: Any, human: Callable[[Any], None] | None = None) -> None:
    """Print ``value``: JSON with ``--json``, else through ``human`` (or as key/value lines)."""
    if state().json:
        click.echo(json.dumps(to_jsonable(value), ensure_ascii=False, default=str))
    elif human is not None:
        human(value)
    else:
        show_mapping(to_jsonable(value))


def show_mapping(data: Any, indent: int = 0) -> None:
    """Print a nested dict as indented ``key: value`` lines."""
    pad = "  " * indent
    if not isinstance(data, dict):
        click.echo(f"{pad}{data}")
        return
    for key, value in data.items():
        if isinstance(value, dict) and value:
            click.echo(f"{pad}{key}:")
            show_mapping(value, indent + 1)
        elif isinstance(value, list):
            click.echo(f"{pad}{key}: {', '.join(str(v) for v in value) if value else '-'}")
        else:
            click.echo(f"{pad}{key}: {value}")


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def record_line(rec: MemoryRecord) -> str:
    """One line for a record: id, type, scope, tags and the start of the text."""
    scope = " ".join(
        f"{k}={v}"
        for k, v in (("user", rec.user_id), ("agent", rec.agent_id), ("thread", rec.thread_id))
        if v
    )
    parts = [rec.id, f"[{rec.type}]", f"v{rec.version}"]
    if scope:
        parts.append(scope)
    if rec.tags:
        parts.append(" ".join(f"#{t}" for t in rec.tags))
    return " ".join(parts) + "  " + _short(rec.text)


def show_record(rec: MemoryRecord) -> None:
    """Print a whole record as ``field: value`` lines."""
    data = rec.to_dict()
    for key in ("id", "namespace", "type", "text"):
        click.echo(f"{key}: {data.pop(key)}")
    for key, value in data.items():
        if value not in (None, [], {}, ""):
            click.echo(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")


def show_records(records: list[MemoryRecord]) -> None:
    """Print one line per record."""
    for rec in records:
        click.echo(record_line(rec))


def show_hits(hits: list[SearchHit]) -> None:
    """Print one line per search hit, best first, with its score."""
    if not hits:
        click.echo("no results", err=True)
    for hit in hits:
        click.echo(f"{hit.score:.4f}  {record_line(hit.record)}")


def show_events(events: list[Event]) -> None:
    """Print one line per event."""
    for ev in events:
        payload = json.dumps(ev.payload, ensure_ascii=False)
        click.echo(f"{ev.timestamp.isoformat()}  {ev.actor or '-'}  {ev.action}  {payload}")


def show_history(entries: list[HistoryEntry]) -> None:
    """Print one line per change of a record."""
    for h in entries:
        text = (h.after or h.before or {}).get("text", "")
        click.echo(f"{h.seq}  {h.at.isoformat()}  {h.op:<7} v{h.version}  {_short(str(text), 60)}")


def report_error(exc: EngramError) -> int:
    """Print an engramdb error (JSON body with ``--json``) to stderr; return its exit code."""
    if state().json:
        click.echo(json.dumps(exc.to_dict(), ensure_ascii=False, default=str), err=True)
    else:
        click.echo(f"Error: {exc.message}", err=True)
    return exit_code_for(exc)


def report_os_error(exc: OSError) -> int:
    """Print a file-system error (unwritable export path...) without a traceback; return 1."""
    body = {
        "error": "os_error",
        "message": f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc),
        "details": {"path": exc.filename, "errno": exc.errno},
    }
    if state().json:
        click.echo(json.dumps(body, ensure_ascii=False, default=str), err=True)
    else:
        click.echo(f"Error: {body['message']}", err=True)
    return 1


@contextmanager
def progress_bar(total: int | None, desc: str) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar on stderr fed by a ``progress(n)`` callback; None with --json or no TTY."""
    if state().json or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="rec", file=sys.stderr, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


@contextmanager
def rich_progress(total: int | None, desc: str) -> Iterator[Callable[[int], None] | None]:
    """A rich bar on stderr (records, records/s, ETA) fed by a ``progress(n)`` callback;
    None with --json or when stderr is not a terminal (nothing to draw on)."""
    if state().json or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Records per second over the last seconds."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- rec/s" if speed is None else f"{speed:,.0f} rec/s")

    with Progress(
        TextColumn(desc),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(desc, total=total)
        yield lambda n: bar.advance(task, n)
