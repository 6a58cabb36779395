"""Entities and relations from real sentences with the real spaCy model, on every backend."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from entities_helpers import by_name, graph_edges

from engramdb import HashEmbedder, Memory, NotFoundError, Settings, ValidationError
from engramdb.engine import entities as entity_engine
from engramdb.extract import alias_links


def test_john_works_for_microsoft_in_seattle(emem: Memory) -> None:
    emem.add("John works for Microsoft in Seattle", user_id="u1")
    found = by_name(emem.entities(user_id="u1"))
    assert {n: e.type for n, e in found.items()} == {
        "John": "PERSON",
        "Microsoft": "ORG",
        "Seattle": "GPE",
    }
    graph = emem.relations(found["John"].id)
    assert graph_edges(graph) == {("John", "works_for", "Microsoft")}
    (rel,) = graph.relations
    assert rel.evidence == ["John works for Microsoft in Seattle"]
    assert 0 < rel.confidence <= 1
    assert len(rel.record_ids) == 1


def test_every_relation_pattern(emem: Memory) -> None:
    emem.add(
        [
            "Bob Smith is employed by Google.",
            "Maria Garcia lives in Paris.",
            "Carol moved to Berlin.",
            "Seattle is located in Washington.",
            "The Core Team is part of Acme Corp.",
            "Maria Garcia knows Peter Brown.",
            "Anna is married to Peter.",
            "Dave likes Python.",
            "Tom owns a Tesla.",
            "Microsoft employs Sarah.",
        ],
        user_id="u1",
    )
    edges: set[tuple[str, str, str]] = set()
    for e in emem.entities(user_id="u1"):
        edges |= graph_edges(emem.relations(e.id))
    assert {
        ("Bob Smith", "works_for", "Google"),
        ("Maria Garcia", "lives_in", "Paris"),
        ("Carol", "lives_in", "Berlin"),
        ("Seattle", "located_in", "Washington"),
        ("The Core Team", "part_of", "Acme Corp."),
        ("Maria Garcia", "knows", "Peter Brown"),
        ("Anna", "related_to", "Peter Brown"),  # "Peter" is the only Peter: joined
        ("Dave", "likes", "Python"),
        ("Tom", "owns", "Tesla"),
        ("Sarah", "works_for", "Microsoft"),
    } <= edges


def test_a_negated_statement_states_no_relation(emem: Memory) -> None:
    emem.add("John does not work for Google.")
    john = by_name(emem.entities())["John"]
    assert emem.relations(john.id).relations == []


def test_one_person_in_many_memories_is_one_entity_with_every_mention(emem: Memory) -> None:
    texts = [f"John works for Microsoft, note {i}." for i in range(12)]
    emem.add(texts, user_id="u1")
    john = by_name(emem.entities(user_id="u1", type="PERSON"))["John"]
    assert john.mention_count == 12
    full = emem.entity(john.id)
    assert full.mentions is not None and len(full.mentions) == 12
    assert {m.sentence for m in full.mentions} == set(texts)
    assert all(emem.get(m.record_id).text[m.start : m.end] == "John" for m in full.mentions)
    assert {r.text for r in emem.records_about(john.id)} == set(texts)


def test_aliases_are_joined_in_the_transaction_that_writes_the_batch(
    emem: Memory, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's extractions and its alias join commit together. Another process's reader
    (here a second Memory on the same store, which extracts nothing) never lists "Bob",
    "Mr. Smith" and "Bob Smith" as three people: while the join runs, the batch is not
    committed, so that reader sees it still queued and no people at all (seen once through
    the service, when the join was a second transaction)."""
    joining, release = threading.Event(), threading.Event()

    def held_join(people: Any) -> Any:
        joining.set()  # inside the batch's transaction, before its commit
        assert release.wait(60)
        return alias_links(people)

    monkeypatch.setattr(entity_engine, "alias_links", held_join)
    other = Memory(store_url, embedder=HashEmbedder(384), settings=Settings(extract="off"))
    try:
        emem.add(
            ["Bob Smith is employed by Google.", "Mr. Smith lives in Paris.", "Bob likes sushi."],
            user_id="u1",
        )
        assert joining.wait(120), "the worker did not extract the batch"
        try:
            assert other.entities(user_id="u1", type="PERSON") == []
            assert other.stats()["entities"]["pending"] == 3
        finally:
            release.set()
        people = [e.name for e in emem.entities(user_id="u1", type="PERSON")]
        assert people == ["Bob Smith"]
        assert [e.name for e in other.entities(user_id="u1", type="PERSON")] == ["Bob Smith"]
    finally:
        other.close()


def test_aliases_join_within_a_user_and_can_be_undone(emem: Memory) -> None:
    emem.add(
        ["Bob Smith is employed by Google.", "Mr. Smith lives in Paris.", "Bob likes sushi."],
        user_id="u1",
    )
    people = by_name(emem.entities(user_id="u1", type="PERSON"))
    assert set(people) == {"Bob Smith"}
    bob = people["Bob Smith"]
    assert sorted(bob.aliases) == ["Bob", "Mr. Smith"]
    assert bob.mention_count == 3
    # The subgraph of the canonical entity holds what each of its names states.
    assert graph_edges(emem.relations(bob.id)) == {
        ("Bob Smith", "works_for", "Google"),
        ("Bob Smith", "lives_in", "Paris"),
        ("Bob Smith", "likes", "sushi"),
    }
    log = emem.entity_history(bob.id)
    assert {(x["name"], x["op"], x["target_name"]) for x in log} == {
        ("Mr. Smith", "link", "Bob Smith"),
        ("Bob", "link", "Bob Smith"),
    }
    mr = next(x["entity_id"] for x in log if x["name"] == "Mr. Smith")
    separated = emem.unlink_entity(mr)
    assert separated.name == "Mr. Smith" and separated.aliases == []
    assert by_name(emem.entities(user_id="u1"))["Bob Smith"].aliases == ["Bob"]
    # A later extraction does not join it again: the separation is kept.
    emem.add("Mr. Smith works for Google.", user_id="u1")
    assert "Mr. Smith" in by_name(emem.entities(user_id="u1", type="PERSON"))
    assert [x["op"] for x in emem.entity_history(mr)] == ["link", "unlink"]
    with pytest.raises(ValidationError):
        emem.unlink_entity(mr)


def test_an_ambiguous_short_name_is_not_joined(emem: Memory) -> None:
    emem.add(["Bob Smith lives in Paris.", "Bob Jones lives in Rome.", "Bob likes tea."])
    people = by_name(emem.entities(type="PERSON"))
    assert set(people) == {"Bob Smith", "Bob Jones", "Bob"}
    assert all(p.aliases == [] for p in people.values())


def test_users_and_namespaces_are_never_joined(emem: Memory) -> None:
    emem.add("Bob Smith lives in Paris.", user_id="u1")
    emem.add("Bob likes tea.", user_id="u2")
    other = emem.with_namespace("other")
    other.add("Bob Smith lives in Paris.", user_id="u1")
    u1 = by_name(emem.entities(user_id="u1"))
    u2 = by_name(emem.entities(user_id="u2"))
    assert u1["Bob Smith"].aliases == [] and "Bob" in u2
    theirs = by_name(other.entities(user_id="u1"))["Bob Smith"]
    assert theirs.id != u1["Bob Smith"].id
    assert theirs.mention_count == 1 and u1["Bob Smith"].mention_count == 1
    # Another namespace's entity id is not found here.
    with pytest.raises(NotFoundError):
        emem.entity(theirs.id)
    with pytest.raises(NotFoundError):
        emem.relations(theirs.id)
    assert [e.name for e in emem.entities(query="smith")] == ["Bob Smith"]


def test_delete_removes_mentions_and_entities_left_without_evidence(emem: Memory) -> None:
    a = emem.add("John works for Microsoft.")[0].record
    b = emem.add("John lives in Seattle.")[0].record
    assert a is not None and b is not None
    john = by_name(emem.entities())["John"]
    assert john.mention_count == 2
    emem.delete(a.id)
    now = by_name(emem.entities())
    assert set(now) == {"John", "Seattle"}
    assert now["John"].id == john.id and now["John"].mention_count == 1
    assert graph_edges(emem.relations(john.id)) == {("John", "lives_in", "Seattle")}
    emem.forget(namespace=True)
    assert emem.entities() == []
    assert emem.stats()["entities"]["mentions"] == 0
    with pytest.raises(NotFoundError):
        emem.entity(john.id)


def test_an_update_of_the_text_replaces_the_extraction(emem: Memory) -> None:
    rec = emem.add("Maria Garcia lives in Rome.")[0].record
    assert rec is not None
    maria = by_name(emem.entities())["Maria Garcia"]
    emem.update(rec.id, text="Maria Garcia lives in Oslo.")
    now = by_name(emem.entities())
    assert set(now) == {"Maria Garcia", "Oslo"}
    assert now["Maria Garcia"].id == maria.id  # found again: the same entity
    assert graph_edges(emem.relations(maria.id)) == {("Maria Garcia", "lives_in", "Oslo")}
    emem.update(rec.id, add_tags=["x"])  # no new text: the extraction stays
    assert set(by_name(emem.entities())) == {"Maria Garcia", "Oslo"}


def test_search_includes_each_hits_entities(emem: Memory) -> None:
    emem.add(["John works for Microsoft in Seattle", "The weather was nice."], user_id="u1")
    page = emem.search("Microsoft", user_id="u1", include_entities=True, top_k=5)
    hit = next(h for h in page if "Microsoft" in h.record.text)
    assert hit.entities is not None
    assert {e.name for e in hit.entities.entities} == {"John", "Microsoft", "Seattle"}
    assert [r.type for r in hit.entities.relations] == ["works_for"]
    assert "entities" in hit.to_dict()
    other = next(h for h in page if "weather" in h.record.text)
    assert other.entities is not None and other.entities.entities == []
    plain = emem.search("Microsoft", user_id="u1", top_k=5)
    assert all(h.entities is None for h in plain)


def test_depth_follows_relations_hop_by_hop(emem: Memory) -> None:
    emem.add(
        [
            "Alice Walker knows Carol Jones.",
            "Carol Jones works for Acme Corp.",
            "Acme Corp. is located in Boston.",
        ]
    )
    alice = by_name(emem.entities())["Alice Walker"]
    names = lambda d: {e.name for e in emem.relations(alice.id, depth=d).entities}  # noqa: E731
    assert names(1) == {"Alice Walker", "Carol Jones"}
    assert names(2) == {"Alice Walker", "Carol Jones", "Acme Corp."}
    assert names(3) == {"Alice Walker", "Carol Jones", "Acme Corp.", "Boston"}
    only = emem.relations(alice.id, depth=3, types=["knows"])
    assert graph_edges(only) == {("Alice Walker", "knows", "Carol Jones")}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda m: m.relations(1, depth=4), "depth"),
        (lambda m: m.relations(1, depth=0), "depth"),
        (lambda m: m.relations(1, types=["hates"]), "types"),
        (lambda m: m.entity(0), "entity id"),
        (lambda m: m.entity("1"), "entity id"),
        (lambda m: m.entities(limit=0), "limit"),
        (lambda m: m.entities(type="person"), "type"),
        (lambda m: m.search("x", include_entities="yes"), "include_entities"),
    ],
)
def test_bad_arguments_name_what_was_wrong(emem: Memory, call: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        call(emem)  # type: ignore[operator]
    assert field in str(err.value)
