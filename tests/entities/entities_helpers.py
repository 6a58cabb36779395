"""Small helpers shared by the entity tests."""

from __future__ import annotations

from engramdb import Entity, EntityGraph, HashEmbedder, Memory, Settings


def by_name(entities: list[Entity]) -> dict[str, Entity]:
    """Entities keyed by name (a test fails on two entities of one name)."""
    out = {e.name: e for e in entities}
    assert len(out) == len(entities), [e.name for e in entities]
    return out


def graph_edges(graph: EntityGraph) -> set[tuple[str, str, str]]:
    """A subgraph's relations as (source name, type, target name)."""
    names = {e.id: e.name for e in graph.entities}
    return {(names[r.source_id], r.type, names[r.target_id]) for r in graph.relations}


def open_memory(url: str, extract: str = "background") -> Memory:
    """A Memory over ``url`` with extraction in the given mode."""
    return Memory(url, embedder=HashEmbedder(384), settings=Settings(extract=extract))
