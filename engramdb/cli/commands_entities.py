"""Entities and relations: entities, entity, relations, records-about, entity-history,
unlink-entity (the library verbs of the same names)."""

from __future__ import annotations

import click

from engramdb.cli.context import global_options, state
from engramdb.cli.output import emit, show_records
from engramdb.models import Entity, EntityGraph


def _entity_line(e: Entity) -> str:
    aliases = f"  (also: {', '.join(e.aliases)})" if e.aliases else ""
    return f"{e.id:>6}  {e.type:<10} {e.name}  [{e.mention_count} mentions]{aliases}"


def _show_entities(entities: list[Entity]) -> None:
    for e in entities:
        click.echo(_entity_line(e))


def _show_entity(e: Entity) -> None:
    click.echo(_entity_line(e))
    for m in e.mentions or []:
        click.echo(f"        {m.record_id}  {m.sentence}")


def _show_graph(graph: EntityGraph) -> None:
    names = {e.id: e.name for e in graph.entities}
    _show_entities(graph.entities)
    for r in graph.relations:
        click.echo(
            f"  {names.get(r.source_id, r.source_id)} -{r.type}-> "
            f"{names.get(r.target_id, r.target_id)}  ({r.confidence:.2f}, "
            f"{len(r.record_ids)} records)"
        )


@click.command("entities")
@click.argument("query", required=False)
@click.option("--type", "type_", help="Only entities of this type (PERSON, ORG, GPE, ...).")
@click.option("--user-id", help="Only this user's entities.")
@click.option("--limit", type=int, default=100, show_default=True, help="Most entities.")
@global_options
def entities_cmd(query: str | None, type_: str | None, user_id: str | None, limit: int) -> None:
    """List entities, most mentioned first (QUERY matches names and aliases)."""
    with state().open() as mem:
        found = mem.entities(query, type=type_, user_id=user_id, limit=limit)
    emit(found, _show_entities)


@click.command("entity")
@click.argument("entity_id", type=int)
@global_options
def entity_cmd(entity_id: int) -> None:
    """Show one entity with its mentions."""
    with state().open() as mem:
        found = mem.entity(entity_id)
    emit(found, _show_entity)


@click.command("relations")
@click.argument("entity_id", type=int)
@click.option("--depth", type=int, default=1, show_default=True, help="Hops to follow (1-3).")
@click.option("--type", "types", multiple=True, help="Only this relation type (repeatable).")
@global_options
def relations_cmd(entity_id: int, depth: int, types: tuple[str, ...]) -> None:
    """Show the entities and relations around an entity."""
    with state().open() as mem:
        graph = mem.relations(entity_id, depth=depth, types=list(types) or None)
    emit(graph, _show_graph)


@click.command("records-about")
@click.argument("entity_id", type=int)
@click.option("--limit", type=int, default=100, show_default=True, help="Most records.")
@global_options
def records_about_cmd(entity_id: int, limit: int) -> None:
    """Show the records that mention an entity, newest first."""
    with state().open() as mem:
        found = mem.records_about(entity_id, limit=limit)
    emit(found, show_records)


@click.command("entity-history")
@click.argument("entity_id", type=int)
@global_options
def entity_history_cmd(entity_id: int) -> None:
    """Show an entity's alias log: each join and separation."""
    with state().open() as mem:
        log = mem.entity_history(entity_id)

    def human(entries: list[dict[str, object]]) -> None:
        for x in entries:
            click.echo(f"{x['seq']:>5}  {x['op']:<7} {x['name']} -> {x['target_name']}")

    emit(log, human)


@click.command("unlink-entity")
@click.argument("entity_id", type=int)
@global_options
def unlink_entity_cmd(entity_id: int) -> None:
    """Undo an alias join: the entity stands on its own again."""
    with state().open() as mem:
        found = mem.unlink_entity(entity_id)
    emit(found, _show_entity)


COMMANDS = [
    entities_cmd,
    entity_cmd,
    relations_cmd,
    records_about_cmd,
    entity_history_cmd,
    unlink_entity_cmd,
]
