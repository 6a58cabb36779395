"""Record commands: add, add-messages, search, get, get-many, list, count, update, delete,
delete-all, forget, history."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from engramdb.cli.context import (
    filter_kwargs,
    filter_options,
    global_options,
    parse_json,
    parse_object,
    state,
)
from engramdb.cli.output import (
    emit,
    show_history,
    show_hits,
    show_record,
    show_records,
)
from engramdb.errors import ValidationError
from engramdb.models import AddResult


def _read_jsonl(lines: list[str], source: str) -> list[Any]:
    items: list[Any] = []
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            items.append(parse_json(line, f"{source} line {lineno}"))
    return items


def _show_results(results: list[AddResult]) -> None:
    for r in results:
        click.echo(f"{r.outcome:<12} {r.id or '-'}" + (f"  {r.error}" if r.error else ""))


@click.command("add")
@click.argument("texts", nargs=-1)
@click.option("--stdin", "from_stdin", is_flag=True, help="Read texts from stdin, one a line.")
@click.option(
    "--file",
    "file_",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL file: one text (JSON string) or item object per line.",
)
@click.option("--id", "id_", help="Record id (makes a single add idempotent).")
@click.option("--user-id", help="User the memory belongs to.")
@click.option("--agent-id", help="Agent the memory belongs to.")
@click.option("--thread-id", help="Thread the memory belongs to.")
@click.option("--type", "type_", help="Record type (semantic, fact, preference, ...).")
@click.option("--tag", "tags", multiple=True, help="Tag (repeat for several).")
@click.option("--metadata", help="Metadata as a JSON object.")
@click.option("--source", help="Where the memory came from.")
@click.option("--importance", type=float, help="Importance score.")
@click.option("--occurred-at", help="When it happened (ISO 8601).")
@click.option("--expires-at", help="When it expires (ISO 8601).")
@click.option("--valid-from", help="Start of validity (ISO 8601).")
@click.option("--valid-to", help="End of validity (ISO 8601).")
@click.option("--skip-errors", is_flag=True, help="Store the good items, report the bad ones.")
@global_options
def add_cmd(
    texts: tuple[str, ...],
    from_stdin: bool,
    file_: Path | None,
    id_: str | None,
    user_id: str | None,
    agent_id: str | None,
    thread_id: str | None,
    type_: str | None,
    tags: tuple[str, ...],
    metadata: str | None,
    source: str | None,
    importance: float | None,
    occurred_at: str | None,
    expires_at: str | None,
    valid_from: str | None,
    valid_to: str | None,
    skip_errors: bool,
) -> None:
    """Remember texts (arguments, --stdin lines or a --file of JSONL items)."""
    items: list[Any] = list(texts)
    if from_stdin:
        items.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
    if file_ is not None:
        items.extend(_read_jsonl(file_.read_text(encoding="utf-8").splitlines(), str(file_)))
    if not items:
        raise click.UsageError("give texts as arguments, --stdin or --file")
    if id_ is not None and len(items) != 1:
        raise click.UsageError("--id applies to a single text")
    kwargs: dict[str, Any] = {
        "user_id": user_id,
        "agent_id": agent_id,
        "thread_id": thread_id,
        "type": type_,
        "metadata": parse_object(metadata, "--metadata"),
        "tags": list(tags) or None,
        "source": source,
        "importance": importance,
        "occurred_at": occurred_at,
        "expires_at": expires_at,
        "valid_from": valid_from,
        "valid_to": valid_to,
        "on_error": "skip" if skip_errors else "abort",
    }
    results: list[AddResult] = []
    with state().open() as mem:
        if id_ is not None:
            results = mem.add(items[0], id=id_, **kwargs)
        else:
            step = mem.settings.max_batch
            for start in range(0, len(items), step):
                for r in mem.add(items[start : start + step], **kwargs):
                    r.index += start
                    results.append(r)
    emit(results, _show_results)
    if any(r.outcome == "rejected" for r in results) and not state().json:
        click.echo(f"{sum(r.outcome == 'rejected' for r in results)} item(s) rejected", err=True)


def _message(arg: str) -> Any:
    if arg.lstrip().startswith("{"):
        return parse_json(arg, "message")
    role, sep, content = arg.partition(":")
    if not sep:
        raise ValidationError(f"message {arg!r} is neither JSON nor 'role: content'")
    return {"role": role.strip(), "content": content.strip()}


@click.command("add-messages")
@click.argument("thread_id")
@click.argument("messages", nargs=-1)
@click.option("--stdin", "from_stdin", is_flag=True, help="Read JSONL messages from stdin.")
@click.option(
    "--file",
    "file_",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSONL file of {"role", "content"} messages.',
)
@click.option("--user-id", help="User of the conversation.")
@click.option("--agent-id", help="Agent of the conversation.")
@click.option("--no-remember", is_flag=True, help="Log the turns as events only, not records.")
@global_options
def add_messages_cmd(
    thread_id: str,
    messages: tuple[str, ...],
    from_stdin: bool,
    file_: Path | None,
    user_id: str | None,
    agent_id: str | None,
    no_remember: bool,
) -> None:
    """Append conversation turns ('role: content' or JSON objects) to a thread."""
    items: list[Any] = [_message(m) for m in messages]
    if from_stdin:
        items.extend(_read_jsonl(sys.stdin.read().splitlines(), "stdin"))
    if file_ is not None:
        items.extend(_read_jsonl(file_.read_text(encoding="utf-8").splitlines(), str(file_)))
    if not items:
        raise click.UsageError("give messages as arguments, --stdin or --file")
    with state().open() as mem:
        results = mem.add_messages(
            thread_id, items, user_id=user_id, agent_id=agent_id, remember=not no_remember
        )
    emit(results, _show_results)


@click.command("search")
@click.argument("query")
@click.option("--top-k", "-k", type=int, default=10, show_default=True, help="Hits to return.")
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "vector", "keyword"]),
    default="hybrid",
    show_default=True,
    help="Retrieval mode.",
)
@click.option("--threshold", type=float, help="Drop hits with vector similarity below this.")
@click.option("--offset", type=int, default=0, help="Skip this many hits.")
@click.option("--cursor", help="Cursor of the next page (from a previous --json result).")
@click.option("--valid-at", help="Only records valid at this time (ISO 8601).")
@click.option("--include-expired", is_flag=True, help="Include expired records.")
@filter_options
@global_options
def search_cmd(
    query: str,
    top_k: int,
    mode: str,
    threshold: float | None,
    offset: int,
    cursor: str | None,
    valid_at: str | None,
    include_expired: bool,
    **filters: Any,
) -> None:
    """Find the records most relevant to QUERY (hybrid vector + keyword)."""
    with state().open() as mem:
        page = mem.search(
            query,
            top_k=top_k,
            mode=mode,  # type: ignore[arg-type]
            threshold=threshold,
            offset=offset,
            cursor=cursor,
            valid_at=valid_at,
            include_expired=include_expired,
            **filter_kwargs(**filters),
        )
    emit(page, lambda p: show_hits(p.hits))


@click.command("get")
@click.argument("record_id")
@global_options
def get_cmd(record_id: str) -> None:
    """Show the record with this id."""
    with state().open() as mem:
        rec = mem.get(record_id)
    emit(rec, show_record)


@click.command("get-many")
@click.argument("record_ids", nargs=-1, required=True)
@global_options
def get_many_cmd(record_ids: tuple[str, ...]) -> None:
    """Show the records among these ids that exist, in the order given."""
    with state().open() as mem:
        records = mem.get_many(list(record_ids))
    emit(records, show_records)


@click.command("list")
@click.option("--limit", type=int, default=100, show_default=True, help="Records per page.")
@click.option("--cursor", help="Cursor of the next page.")
@click.option("--desc", "descending", is_flag=True, help="Newest first.")
@click.option("--valid-at", help="Only records valid at this time (ISO 8601).")
@click.option("--include-expired", is_flag=True, help="Include expired records.")
@filter_options
@global_options
def list_cmd(
    limit: int,
    cursor: str | None,
    descending: bool,
    valid_at: str | None,
    include_expired: bool,
    **filters: Any,
) -> None:
    """List records matching the filter, in creation order."""
    with state().open() as mem:
        page = mem.list(
            limit=limit,
            cursor=cursor,
            descending=descending,
            valid_at=valid_at,
            include_expired=include_expired,
            **filter_kwargs(**filters),
        )

    def human(p: Any) -> None:
        show_records(p.records)
        if p.next_cursor:
            click.echo(f"next page: --cursor {p.next_cursor}", err=True)

    emit(page, human)


@click.command("count")
@click.option("--valid-at", help="Only records valid at this time (ISO 8601).")
@click.option("--include-expired", is_flag=True, help="Include expired records.")
@filter_options
@global_options
def count_cmd(valid_at: str | None, include_expired: bool, **filters: Any) -> None:
    """Count records matching the filter."""
    with state().open() as mem:
        n = mem.count(
            valid_at=valid_at, include_expired=include_expired, **filter_kwargs(**filters)
        )
    emit({"count": n}, lambda d: click.echo(d["count"]))


@click.command("update")
@click.argument("record_id")
@click.option("--text", help="New text (re-embedded).")
@click.option("--metadata", help="New metadata (JSON object; replaces the old).")
@click.option("--add-tag", "add_tags", multiple=True, help="Tag to add (repeat).")
@click.option("--remove-tag", "remove_tags", multiple=True, help="Tag to remove (repeat).")
@click.option("--importance", type=float, help="New importance.")
@click.option("--type", "type_", help="New type.")
@click.option("--valid-from", help="Start of validity (ISO 8601).")
@click.option("--valid-to", help="End of validity (ISO 8601).")
@click.option("--expires-at", help="Expiry (ISO 8601).")
@click.option("--clear", multiple=True, help="Optional field to unset (repeat).")
@click.option("--expected-version", type=int, help="Fail with a conflict unless at this version.")
@global_options
def update_cmd(
    record_id: str,
    text: str | None,
    metadata: str | None,
    add_tags: tuple[str, ...],
    remove_tags: tuple[str, ...],
    importance: float | None,
    type_: str | None,
    valid_from: str | None,
    valid_to: str | None,
    expires_at: str | None,
    clear: tuple[str, ...],
    expected_version: int | None,
) -> None:
    """Change a record (bumps its version and leaves a history row)."""
    with state().open() as mem:
        rec = mem.update(
            record_id,
            text=text,
            metadata=parse_object(metadata, "--metadata"),
            add_tags=list(add_tags) or None,
            remove_tags=list(remove_tags) or None,
            importance=importance,
            type=type_,
            valid_from=valid_from,
            valid_to=valid_to,
            expires_at=expires_at,
            clear=list(clear) or None,
            expected_version=expected_version,
        )
    emit(rec, show_record)


@click.command("delete")
@click.argument("record_id")
@global_options
def delete_cmd(record_id: str) -> None:
    """Delete a record (its before-image stays in history)."""
    with state().open() as mem:
        mem.delete(record_id)
    emit({"deleted": record_id}, lambda d: click.echo(f"deleted {d['deleted']}"))


@click.command("delete-all")
@click.option("--all", "all_", is_flag=True, help="Required to delete with no filter at all.")
@filter_options
@global_options
def delete_all_cmd(all_: bool, **filters: Any) -> None:
    """Delete every record matching the filter (the whole namespace needs --all)."""
    with state().open() as mem:
        n = mem.delete_all(all=all_, **filter_kwargs(**filters))
    emit({"deleted": n}, lambda d: click.echo(f"deleted {d['deleted']} record(s)"))


@click.command("forget")
@click.option("--user-id", help="Erase everything of this user.")
@click.option("--thread-id", help="Erase everything of this thread.")
@click.option("--whole-namespace", is_flag=True, help="Erase the whole namespace.")
@click.option(
    "--compact",
    is_flag=True,
    help="Then rewrite the storage without the freed space (PostgreSQL: VACUUM FULL, "
    "which locks the tables meanwhile; SQLite: VACUUM).",
)
@global_options
def forget_cmd(
    user_id: str | None, thread_id: str | None, whole_namespace: bool, compact: bool
) -> None:
    """Erase a user's, thread's or namespace's data for good (no history kept)."""
    with state().open() as mem:
        counts = mem.forget(
            user_id=user_id, thread_id=thread_id, namespace=whole_namespace, compact=compact
        )
    emit(counts)


@click.command("history")
@click.argument("record_id")
@global_options
def history_cmd(record_id: str) -> None:
    """Show every change of a record, oldest first."""
    with state().open() as mem:
        entries = mem.history(record_id)
    emit(entries, show_history)


COMMANDS = [
    add_cmd,
    add_messages_cmd,
    search_cmd,
    get_cmd,
    get_many_cmd,
    list_cmd,
    count_cmd,
    update_cmd,
    delete_cmd,
    delete_all_cmd,
    forget_cmd,
    history_cmd,
]
