"""Administration: export, import, backup, restore, reembed, doctor, namespaces, stats,
health, and the schema commands ``db current`` / ``db upgrade``."""

from __future__ import annotations

from pathlib import Path

import click

from engramdb.cli.commands_migrate import migrate_cmd
from engramdb.cli.context import (
    global_options,
    global_options_but_embedder,
    parse_object,
    state,
)
from engramdb.cli.output import emit, progress_bar, show_mapping
from engramdb.embedders.base import EMBEDDER_CHOICES
from engramdb.migrations import SCHEMA_HEAD
from engramdb.ops.schema import sqlite_file, sqlite_revision, upgrade_sqlite_file

PATH = click.Path(dir_okay=False, path_type=Path)
EMBEDDERS = click.Choice(EMBEDDER_CHOICES)


@click.command("export")
@click.argument("path", type=PATH)
@click.option("--filter", "filter_", help="Only records matching this JSON filter.")
@click.option("--all-namespaces", is_flag=True, help="Export every namespace, not just one.")
@click.option("--no-vectors", is_flag=True, help="Leave vectors out (re-embedded on import).")
@global_options
def export_cmd(path: Path, filter_: str | None, all_namespaces: bool, no_vectors: bool) -> None:
    """Export records (with history), events and slots to a versioned JSONL file."""
    filters = parse_object(filter_, "--filter")
    with state().open() as mem:
        if all_namespaces:
            total = sum(mem.namespaces().values()) if filters is None else None
        else:
            total = mem.count(filters, include_expired=True)
        with progress_bar(total, "export") as progress:
            n = mem.export(
                path,
                filters,
                all_namespaces=all_namespaces,
                vectors=not no_vectors,
                progress=progress,
            )
    emit(
        {"records": n, "path": str(path)},
        lambda d: click.echo(f"exported {d['records']} record(s) to {d['path']}"),
    )


def _records_in(path: Path) -> int | None:
    try:
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.startswith('{"kind": "record"'))
    except OSError:
        return None


@click.command("import")
@click.argument("path", type=PATH)
@click.option("--keep-namespaces", is_flag=True, help="Import into each line's own namespace.")
@global_options
def import_cmd(path: Path, keep_namespaces: bool) -> None:
    """Import an export file into this namespace (idempotent: same ids, same history)."""
    with state().open() as mem, progress_bar(_records_in(path), "import") as progress:
        counts = mem.import_(path, keep_namespaces=keep_namespaces, progress=progress)
    emit(counts)


@click.command("backup")
@click.argument("path", type=PATH)
@global_options
def backup_cmd(path: Path) -> None:
    """Write a consistent online copy of the whole store to PATH."""
    with state().open() as mem:
        mem.backup(path)
    emit({"backup": str(path)}, lambda d: click.echo(f"backed up to {d['backup']}"))


@click.command("restore")
@click.argument("path", type=PATH)
@global_options
def restore_cmd(path: Path) -> None:
    """Replace the store's content with a backup (stop other writers first)."""
    with state().open() as mem:
        mem.restore(path)
    emit({"restored": str(path)}, lambda d: click.echo(f"restored from {d['restored']}"))


@click.command("reembed")
@click.argument("target", type=EMBEDDERS, required=False)
@click.option("--embedder", "target_option", type=EMBEDDERS, help="The embedder to switch to.")
@click.option("--batch", type=int, default=256, show_default=True, help="Chunks per batch.")
@global_options_but_embedder
def reembed_cmd(target: str | None, target_option: str | None, batch: int) -> None:
    """Re-embed every chunk with another embedder (resumable), then switch the store to it.

    The store is opened with the embedder it was built with (or the group's --embedder);
    the target is TARGET or --embedder.
    """
    chosen = target or target_option
    if chosen is None or (target and target_option and target != target_option):
        raise click.UsageError("name one target embedder: TARGET or --embedder")
    with state().open() as mem:
        total = int(mem.stats()["store"]["chunks"])
        with progress_bar(total, "reembed") as progress:
            n = mem.reembed(chosen, batch=batch, progress=progress)
    emit(
        {"reembedded": n, "embedder": chosen},
        lambda d: click.echo(f"re-embedded {d['reembedded']} chunk(s) with {d['embedder']}"),
    )


@click.command("doctor")
@click.option("--repair", is_flag=True, help="Rebuild derived indexes that disagree.")
@global_options
def doctor_cmd(repair: bool) -> None:
    """Check integrity and derived indexes; exit 1 when a problem remains."""
    with state().open() as mem:
        report = mem.doctor(repair=repair)
    emit(report)
    if not report.get("ok"):
        raise SystemExit(1)


@click.command("namespaces")
@global_options
def namespaces_cmd() -> None:
    """List every namespace with its record count."""
    with state().open() as mem:
        found = mem.namespaces()

    def human(data: dict[str, int]) -> None:
        for name, count in data.items():
            click.echo(f"{name}\t{count}")

    emit(found, human)


@click.command("stats")
@global_options
def stats_cmd() -> None:
    """Show counts and sizes for this namespace and the whole store."""
    with state().open() as mem:
        emit(mem.stats())


@click.command("health")
@global_options
def health_cmd() -> None:
    """Check each component (store, embedder); exit 1 unless all are ok."""
    with state().open() as mem:
        report = mem.health()
    emit(report, show_mapping)
    if report.get("status") != "ok":
        raise SystemExit(1)


@click.group("db")
def db_group() -> None:
    """Schema migrations of the store file (Alembic)."""


def _db_file() -> Path:
    return sqlite_file(state().settings().url)


@db_group.command("current")
@global_options
def db_current_cmd() -> None:
    """Show the store's schema revision and the one this engramdb needs."""
    path = _db_file()
    rev = sqlite_revision(path) if path.is_file() else None
    emit(
        {"path": str(path), "revision": rev, "head": SCHEMA_HEAD, "up_to_date": rev == SCHEMA_HEAD}
    )


@db_group.command("upgrade")
@global_options
def db_upgrade_cmd() -> None:
    """Upgrade the store's schema to the head revision (safe to run twice)."""
    path = _db_file()
    before = sqlite_revision(path) if path.is_file() else None
    upgrade_sqlite_file(path)
    emit({"path": str(path), "from": before, "to": sqlite_revision(path)})


COMMANDS = [
    export_cmd,
    import_cmd,
    backup_cmd,
    restore_cmd,
    reembed_cmd,
    migrate_cmd,
    doctor_cmd,
    namespaces_cmd,
    stats_cmd,
    health_cmd,
    db_group,
]
