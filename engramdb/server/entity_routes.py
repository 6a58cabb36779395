"""REST routes of entities and relations (the library's ``entities``/``relations`` verbs).

::

    GET  /v1/namespaces/{ns}/entities                          entities (query, type, user_id)
    GET  /v1/namespaces/{ns}/entities/{id}                     entity (with its mentions)
    GET  /v1/namespaces/{ns}/entities/{id}/relationships       relations (depth, types)
    GET  /v1/namespaces/{ns}/entities/{id}/records             records_about
    GET  /v1/namespaces/{ns}/entities/{id}/history             entity_history (alias log)
    POST /v1/namespaces/{ns}/entities/{id}/unlink              unlink_entity

The path says ``relationships`` (the name teams use); the library says ``relations``.
Entity ids are integers of one namespace: another namespace's id answers 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from engramdb.errors import ValidationError
from engramdb.server import entity_schemas as es
from engramdb.server import schemas as s
from engramdb.server.routes import ERROR_RESPONSES, ROUTES_BY_VERB, Mem

ENTITY_ROUTES_BY_VERB: dict[str, tuple[str, str]] = {
    "entities": ("GET", "/v1/namespaces/{ns}/entities"),
    "entity": ("GET", "/v1/namespaces/{ns}/entities/{entity_id}"),
    "relations": ("GET", "/v1/namespaces/{ns}/entities/{entity_id}/relationships"),
    "records_about": ("GET", "/v1/namespaces/{ns}/entities/{entity_id}/records"),
    "entity_history": ("GET", "/v1/namespaces/{ns}/entities/{entity_id}/history"),
    "unlink_entity": ("POST", "/v1/namespaces/{ns}/entities/{entity_id}/unlink"),
}
# One vocabulary: the table of every verb's route (checked against Memory) includes these.
ROUTES_BY_VERB.update(ENTITY_ROUTES_BY_VERB)

entities = APIRouter(prefix="/v1/namespaces/{ns}", tags=["entities"], responses=ERROR_RESPONSES)
EntityId = Annotated[int, Path(ge=1, le=2**63 - 1, description="An entity id of this namespace")]


@entities.get("/entities", response_model=es.EntitiesOut)
async def list_entities(
    mem: Mem,
    query: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[str | None, Query(max_length=32)] = None,  # noqa: A002 - the wire name
    user_id: str | None = None,
    limit: int = 100,
) -> es.EntitiesOut:
    """Canonical entities, most mentioned first; ``query`` matches names and aliases."""
    found = await mem.entities(query, type=type, user_id=user_id, limit=limit)
    return es.EntitiesOut(entities=[es.EntityOut.model_validate(e) for e in found])


@entities.get("/entities/{entity_id}", response_model=es.EntityOut)
async def entity(entity_id: EntityId, mem: Mem) -> es.EntityOut:
    """One entity with its mentions (an alias's id gives its canonical entity)."""
    return es.EntityOut.model_validate(await mem.entity(entity_id))


@entities.get("/entities/{entity_id}/relationships", response_model=es.EntityGraphOut)
async def relationships(
    entity_id: EntityId,
    mem: Mem,
    depth: int = 1,
    types: Annotated[
        str | None, Query(max_length=500, description="Comma-separated relation types")
    ] = None,
) -> es.EntityGraphOut:
    """The entities and relations within ``depth`` (1-3) hops of an entity."""
    wanted = None
    if types is not None:
        wanted = [t.strip() for t in types.split(",") if t.strip()]
        if not wanted:
            raise ValidationError("types: name at least one relation type", field="types")
    graph = await mem.relations(entity_id, depth=depth, types=wanted)
    return es.EntityGraphOut.model_validate(graph)


@entities.get("/entities/{entity_id}/records", response_model=s.RecordsOut)
async def records_about(entity_id: EntityId, mem: Mem, limit: int = 100) -> s.RecordsOut:
    """The records that mention an entity (or one of its aliases), newest first."""
    found = await mem.records_about(entity_id, limit=limit)
    return s.RecordsOut(records=[s.RecordOut.of(r) for r in found])


@entities.get("/entities/{entity_id}/history", response_model=es.EntityHistoryOut)
async def entity_history(entity_id: EntityId, mem: Mem) -> es.EntityHistoryOut:
    """The alias log of an entity: each join and separation, oldest first."""
    return es.EntityHistoryOut.of(await mem.entity_history(entity_id))


@entities.post("/entities/{entity_id}/unlink", response_model=es.EntityOut)
async def unlink_entity(entity_id: EntityId, mem: Mem) -> es.EntityOut:
    """Undo an alias join: the entity stands on its own again (and stays so)."""
    return es.EntityOut.model_validate(await mem.unlink_entity(entity_id))
