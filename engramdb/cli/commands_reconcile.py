"""The side-by-side commands. ``engramdb reconcile``: records missing or different between two
stores, repaired on request, once or on a schedule (``--every 24h``) with a dated report per
run. Either side may be a team's legacy store (``chroma://``, ``sql:``, ``redis://``) read
through :class:`~engramdb.ops.legacy_memory.LegacyMemory`: it is compared in one namespace
(``--namespace``, default the collection's name, the namespace ``migrate`` gives it), with
the engramdb side's embedder as its own unless ``--legacy-embedder`` names it. Repair writes
the legacy side too (it is a store the team's code writes, like the engramdb side), unless
``--legacy-read-only``: then only the engramdb side is written, and what the legacy side
lacks is reported as left.

``engramdb read-from-new``: the share of reads a running application sends to the new
store, through its routing control file."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from engramdb.cli.context import CliState, global_options, state
from engramdb.cli.output import emit
from engramdb.embedders import resolve_embedder
from engramdb.errors import ValidationError
from engramdb.memory import Memory
from engramdb.ops.legacy_memory import LegacyMemory
from engramdb.ops.mapping import load_mapping
from engramdb.ops.sources import is_legacy
from engramdb.sidebyside.control import RoutingControl
from engramdb.sidebyside.reconcile import parse_interval, reconcile, run_every


def _open(url: str) -> Memory:
    """A Memory on ``url`` with the store's own embedder (or the global --embedder)."""
    settings = CliState(url=url, embedder=state().embedder).settings()
    return Memory(settings=settings)


def _open_pair(
    url_a: str,
    url_b: str,
    mapping_file: str | None,
    collection: str | None,
    legacy_embedder: str | None,
    legacy_read_only: bool,
) -> tuple[Any, Any, LegacyMemory | None]:
    """Both sides, and the legacy one if there is one.

    Raises:
        ValidationError: two legacy stores, or legacy options with none.
    """
    legacy = [u for u in (url_a, url_b) if is_legacy(u)]
    if not legacy:
        if mapping_file or collection or legacy_embedder or legacy_read_only:
            raise ValidationError(
                "--mapping, --collection, --legacy-embedder and --legacy-read-only apply to "
                "a legacy side",
                field="mapping",
            )
        return _open(url_a), _open(url_b), None
    if len(legacy) == 2:
        raise ValidationError(
            "one side must be an engramdb store (reconcile compares a legacy store with one)",
            field="b",
        )
    engram_url = url_b if is_legacy(url_a) else url_a
    engram = _open(engram_url)
    try:
        emb = resolve_embedder(legacy_embedder, engram.settings)
        old = LegacyMemory(
            legacy[0],
            embedder=emb,
            mapping=load_mapping(mapping_file) if mapping_file else None,
            collection=collection,
            namespace=state().namespace,
        )
    except BaseException:
        engram.close()
        raise
    pair = (old, engram) if is_legacy(url_a) else (engram, old)
    return pair[0], pair[1], old


def _dated(output: Path | None, when: datetime) -> Path:
    stamp = when.strftime("%Y%m%dT%H%M%S%fZ")
    base = output if output is not None else Path("reconcile.json")
    path = base.with_name(f"{base.stem}-{stamp}{base.suffix or '.json'}")
    n = 1
    while path.exists():  # two runs within a microsecond: never overwrite a report
        n += 1
        path = base.with_name(f"{base.stem}-{stamp}-{n}{base.suffix or '.json'}")
    return path


def _show(report: dict[str, Any]) -> None:
    for ns, d in report["namespaces"].items():
        click.echo(
            f"{ns}: a={d['a']} b={d['b']} missing in a={d['missing_in_a']} "
            f"missing in b={d['missing_in_b']} different={d['different']} "
            f"repaired={d['repaired']}"
        )
    click.echo(f"differences: {report['differences']}, repaired: {report['repaired']}")


@click.command("reconcile")
@click.option("--a", "url_a", metavar="URL", required=True, help="The reference store (primary).")
@click.option("--b", "url_b", metavar="URL", required=True, help="The store compared with it.")
@click.option(
    "--repair",
    is_flag=True,
    help="Copy records missing on either side (same id); rewrite b's differing ones from a.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON report here (with --every: a dated file per run beside it).",
)
@click.option("--every", metavar="INTERVAL", help="Run on a schedule, e.g. 24h, 30m, 90s.")
@click.option("--mapping", "mapping_file", metavar="FILE", help="A legacy side's mapping (JSON).")
@click.option("--collection", help="A legacy side's collection (Chroma), if it has several.")
@click.option(
    "--legacy-embedder",
    metavar="NAME",
    help="A legacy side's embedder (its vectors' model); default: the engramdb side's.",
)
@click.option(
    "--legacy-read-only",
    is_flag=True,
    help="With --repair, write only the engramdb side; what the legacy side lacks is left.",
)
@click.option("--max-runs", type=click.IntRange(min=1), hidden=True, help="Stop after N runs.")
@global_options
def reconcile_cmd(
    url_a: str,
    url_b: str,
    repair: bool,
    output: Path | None,
    every: str | None,
    max_runs: int | None,
    mapping_file: str | None,
    collection: str | None,
    legacy_embedder: str | None,
    legacy_read_only: bool,
) -> None:
    """Find records missing or different on either of two stores (by id and content hash).

    Either URL may be a legacy store (chroma://DIR?collection=NAME, sql:URL with --mapping,
    redis://HOST/DB?pattern=P), compared in --namespace (default: its collection's name).

    Exits 0 when the stores agree (or every difference was repaired), 1 when differences
    remain. With --every the check repeats until interrupted, each run writing a dated
    report (reconcile-YYYYMMDDTHHMMSS….json, or beside --output).
    """
    interval = None
    if every is not None:
        try:
            interval = parse_interval(every)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--every") from None
    left = 0
    a_side, b_side, old = _open_pair(
        url_a, url_b, mapping_file, collection, legacy_embedder, legacy_read_only
    )
    # A legacy store holds one namespace, and the fields its mapping has columns for.
    names = [old.namespace] if old is not None else None
    ignore = old.unheld_fields if old is not None else frozenset()
    read_only = (
        [n for n, u in (("a", url_a), ("b", url_b)) if is_legacy(u)] if legacy_read_only else []
    )
    with a_side as a, b_side as b:

        def job(run: int) -> None:
            nonlocal left
            report = reconcile(
                a, b, repair=repair, namespaces=names, read_only=read_only, ignore=ignore
            )
            left = report["differences"] - report["repaired"]
            if interval is not None or output is not None:
                path = _dated(output, datetime.now(UTC)) if interval is not None else output
                assert path is not None
                path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
                report["report"] = str(path)
            emit(report, _show)

        if interval is None:
            job(1)
        else:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the schedule
                run_every(interval, job, threading.Event(), max_runs=max_runs)
    if left:
        raise SystemExit(1)


@click.command("read-from-new")
@click.argument("percent", type=click.IntRange(0, 100), required=False)
@click.option(
    "--control",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The routing control file the application's ShadowReadMemory was given.",
)
@global_options
def read_from_new_cmd(percent: int | None, control: Path) -> None:
    """Set (PERCENT) or show the share of reads a running application sends to the new store.

    The application notices the change on its next read. Without PERCENT, prints the file:
    the current share and, after an automatic rollback, its reason and figures.
    """
    ctl = RoutingControl(control)
    if percent is not None:
        ctl.write(percent, rolled_back=False, set_by="engramdb read-from-new")
    data = ctl.read()
    if data is None:
        raise click.UsageError(f"{control} does not exist yet: give a PERCENT to create it")
    emit(data)


COMMANDS = [reconcile_cmd, read_from_new_cmd]
