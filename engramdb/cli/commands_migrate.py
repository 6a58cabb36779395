"""``engramdb migrate``: from an engramdb store or a legacy one, into SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
from typing import Any

import click

from engramdb.cli.context import CliState, global_options, state
from engramdb.cli.output import emit, rich_progress
from engramdb.errors import ValidationError

SKIPPED_EXIT = 10  # the run finished but left items out (each is in the log file)


@click.command("migrate")
@click.option(
    "--from",
    "source",
    metavar="SOURCE",
    help="Source: an engramdb store (sqlite:///…, postgresql://…; default --url / "
    "ENGRAM_URL) or a legacy one: chroma:///dir[?collection=NAME], jsonl:///file, "
    "json:///file, mem0:///file, sql:<SQLAlchemy URL>, redis://host:port/db?pattern=P, "
    "firestore-export:///file.json.",
)
@click.option("--to", "target", metavar="URL", required=True, help="Target engramdb store URL.")
@click.option("--mapping", "mapping_file", metavar="FILE", help="Mapping file (JSON).")
@click.option(
    "--batch-size", type=int, default=1000, show_default=True, help="Records per transaction."
)
@click.option("--dry-run", is_flag=True, help="Read and check everything; write nothing.")
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue after the checkpoint of an interrupted run.",
)
@click.option("--no-validate", is_flag=True, help="Skip counts, checksums and sampling.")
@click.option(
    "--sample-size",
    type=int,
    default=10,
    show_default=True,
    help="Records looked up by id and searched by their own text.",
)
@click.option("--output", metavar="FILE", help="Write the JSON report here too.")
@click.option(
    "--log-file",
    default="memory_migration.log",
    show_default=True,
    help="Where skipped items are logged (legacy sources).",
)
@click.option("--re-embed", is_flag=True, help="Compute every vector with the target's embedder.")
@global_options
def migrate_cmd(
    source: str | None,
    target: str,
    mapping_file: str | None,
    batch_size: int,
    dry_run: bool,
    resume: bool,
    no_validate: bool,
    sample_size: int,
    output: str | None,
    log_file: str,
    re_embed: bool,
) -> None:
    """Move memories into an engramdb store: batched, resumable, validated.

    From an engramdb store every namespace is copied with its ids, versions, times,
    vectors, history, events and slots (the target takes the source's embedder). From a
    legacy store each item is mapped (built-in mapping, or --mapping), given an id derived
    from its source id and its provenance in metadata, and skipped with a logged reason
    when it cannot be migrated. A killed run continues where it stopped; a re-run writes
    nothing new. -n/--namespace puts everything into one namespace (default: each
    collection into its own). Exits 4 when the target holds other data under the same
    ids, 8 when validation finds a difference, 10 when items were skipped.
    """
    from engramdb.ops.sources import is_legacy

    cli_state = state()
    settings = cli_state.settings()
    src = source or settings.url
    namespace = cli_state.namespace
    if is_legacy(src):
        report = _legacy(
            src,
            target,
            namespace=namespace,
            mapping_file=mapping_file,
            batch_size=batch_size,
            dry_run=dry_run,
            resume=resume,
            validate=not no_validate,
            sample_size=sample_size,
            output=output,
            log_file=log_file,
            re_embed=re_embed,
        )
    else:
        report = _stores(
            src,
            target,
            namespace=namespace,
            mapping_file=mapping_file,
            batch_size=batch_size,
            dry_run=dry_run,
            resume=resume,
            validate=not no_validate,
            sample_size=sample_size,
            output=output,
            re_embed=re_embed,
        )
    emit(report, _human)
    if not dry_run and report.get("skipped", {}).get("count"):
        raise SystemExit(SKIPPED_EXIT)


def _legacy(src: str, target: str, *, mapping_file: str | None, **kw: Any) -> dict[str, Any]:
    from engramdb.ops.legacy import migrate_legacy
    from engramdb.ops.mapping import load_mapping
    from engramdb.ops.sources import open_source

    mapping = load_mapping(mapping_file) if mapping_file else None
    # The target's embedder: --embedder/--no-model or ENGRAM_EMBEDDER, else the one the
    # target store was built with, else the default.
    cli_state = state()
    target_settings = CliState(url=target, embedder=cli_state.embedder).settings()
    total = None
    if not kw["dry_run"]:
        with contextlib.suppress(Exception):  # the bar's total only; errors come below
            probe = open_source(src, mapping)
            try:
                total = probe.count()
            finally:
                probe.close()
    with rich_progress(total, "migrate") as progress:
        return migrate_legacy(
            src, target, mapping=mapping, progress=progress, settings=target_settings, **kw
        )


def _stores(
    src: str,
    target: str,
    *,
    mapping_file: str | None,
    output: str | None,
    re_embed: bool,
    **kw: Any,
) -> dict[str, Any]:
    from engramdb.ops.migrate import migrate_store, source_record_count
    from engramdb.ops.report import write_report

    if mapping_file:
        raise ValidationError(
            "--mapping applies to legacy sources; an engramdb store keeps its own fields",
            field="mapping",
        )
    if re_embed:
        raise ValidationError(
            "--re-embed applies to legacy sources; an engramdb store is copied with its "
            "vectors (run `engramdb reembed` on the target afterwards)",
            field="re_embed",
        )
    settings = state().settings()
    if kw["dry_run"]:
        report = migrate_store(
            src,
            target,
            batch_size=kw["batch_size"],
            dry_run=True,
            settings=settings,
            namespace=kw["namespace"],
        )
    else:
        total = None
        with contextlib.suppress(Exception):
            total = source_record_count(src, settings)
        with rich_progress(total, "migrate") as progress:
            report = migrate_store(src, target, progress=progress, settings=settings, **kw)
    write_report(report, output)
    return report


def _human(d: dict[str, Any]) -> None:
    if "kind" in d:  # a legacy source
        skipped = d["skipped"]["count"]
        if d["dry_run"]:
            click.echo(
                f"would write {d['to_write']} of {d['read']} item(s) into "
                f"{len(d['namespaces'])} namespace(s); {skipped} would be skipped; mapping ok"
            )
        else:
            emb = d["embeddings_used"]
            click.echo(
                f"migrated {d['written']} record(s) ({d['unchanged']} already there) from "
                f"{d['read']} item(s) in {d['seconds']} s; vectors reused {emb['reused']}, "
                f"computed {emb['recomputed']}; {skipped} skipped"
                + (f" (see {d['skipped']['log_file']})" if skipped else "")
                + ("; validated" if d.get("validation", {}).get("ok") else "")
            )
        return
    if d["dry_run"]:
        w = d["would_copy"]
        click.echo(
            f"would copy {w['records']} record(s), {w['history']} history row(s), "
            f"{w['events']} event(s), {w['threads_with_slots']} slot thread(s) "
            f"in {len(d['namespaces'])} namespace(s)"
        )
        return
    click.echo(
        f"migrated {d['written']} record(s) ({d['unchanged']} already there) in "
        f"{len(d['namespaces'])} namespace(s), {d['events_written']} event(s); "
        + ("verified counts and checksums" if d["verified"] else "not verified")
        + f" in {d['seconds']} s"
    )


__all__ = ["SKIPPED_EXIT", "migrate_cmd"]
