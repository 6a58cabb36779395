"""Consolidation: consolidate, unmerge, restore-archived, archived, summarize-text (the
library verbs of the same names)."""

from __future__ import annotations

import click

from engramdb.cli.context import global_options, state
from engramdb.cli.output import emit, record_line, show_records
from engramdb.models import ArchivedRecord, ConsolidationReport


def _show_report(r: ConsolidationReport) -> None:
    verb = "would" if r.dry_run else "did"
    click.echo(
        f"{r.namespace}: scanned {r.scanned} records in {r.seconds:.2f}s; {verb} merge "
        f"{sum(len(m.merged_ids) for m in r.merges)} into {len(r.merges)}, expire "
        f"{len(r.expired)}, archive {len(r.archived)}, summarize {len(r.summaries)} threads"
    )
    for m in r.merges:
        click.echo(f"  merge {', '.join(m.merged_ids)} -> {m.survivor_id} ({m.similarity:.3f})")
    for a in r.expired:
        click.echo(f"  expire {a.record_id}")
    for a in r.archived:
        click.echo(f"  archive {a.record_id} (retention {a.score:.4f})")
    for s in r.summaries:
        click.echo(f"  summary {s.status} for thread {s.thread_id} ({s.turns} turns)")
    if r.skipped:
        click.echo(f"  skipped (changed meanwhile): {', '.join(r.skipped)}")


def _show_archived(found: list[ArchivedRecord]) -> None:
    for a in found:
        into = f" into {a.merged_into}" if a.merged_into else ""
        click.echo(f"{a.reason}{into}  {record_line(a.record)}")


@click.command("consolidate")
@click.option("--user-id", help="Only this user's records.")
@click.option("--thread-id", help="Only this thread's records.")
@click.option("--dry-run", is_flag=True, help="Report what would be done; change nothing.")
@global_options
def consolidate_cmd(user_id: str | None, thread_id: str | None, dry_run: bool) -> None:
    """Merge near-duplicates, expire, archive by retention, summarize long threads."""
    with state().open() as mem:
        report = mem.consolidate(user_id=user_id, thread_id=thread_id, dry_run=dry_run)
    emit(report, _show_report)


@click.command("unmerge")
@click.argument("record_id")
@global_options
def unmerge_cmd(record_id: str) -> None:
    """Undo the merge RECORD_ID took part in (as survivor: its latest merge)."""
    with state().open() as mem:
        found = mem.unmerge(record_id)
    emit(found, show_records)


@click.command("restore-archived")
@click.argument("record_id")
@global_options
def restore_archived_cmd(record_id: str) -> None:
    """Bring an archived record back to search, list and count."""
    with state().open() as mem:
        found = mem.restore_archived(record_id)
    emit(found, lambda r: click.echo(record_line(r)))


@click.command("archived")
@click.option("--user-id", help="Only this user's archived records.")
@click.option("--limit", type=int, default=100, show_default=True, help="Most records.")
@global_options
def archived_cmd(user_id: str | None, limit: int) -> None:
    """List records consolidation archived or merged away, newest first."""
    with state().open() as mem:
        found = mem.archived(user_id=user_id, limit=limit)
    emit(found, _show_archived)


@click.command("summarize-text")
@click.argument("text")
@click.option("--max-sentences", type=int, help="Sentences in the summary.")
@global_options
def summarize_text_cmd(text: str, max_sentences: int | None) -> None:
    """Summarize TEXT with the store's summarizer (extractive unless configured)."""
    with state().open() as mem:
        out = mem.summarize_text(text, max_sentences=max_sentences)
    emit(out, click.echo)


COMMANDS = [consolidate_cmd, unmerge_cmd, restore_archived_cmd, archived_cmd, summarize_text_cmd]
