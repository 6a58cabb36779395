"""EngramStore: LangGraph's BaseStore contract on engramdb, on both backends.

What LangGraph's own stores got wrong is asserted here: a namespace prefix matches whole
labels, a filter key never reaches SQL text, a failed batch stores nothing of itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from langgraph.store.base import GetOp, PutOp, SearchOp

from engramdb import HashEmbedder, Memory
from engramdb.errors import LimitExceededError, ValidationError
from engramdb.integrations.langgraph import EngramStore


@pytest.fixture
def store(mem: Memory) -> Iterator[EngramStore]:
    s = EngramStore(mem)
    yield s
    s.close()


def keys(items: list) -> list[tuple[tuple[str, ...], str]]:
    return sorted((i.namespace, i.key) for i in items)


def test_put_get_returns_the_value_as_given(store: EngramStore) -> None:
    value = {"text": "likes ramen", "n": 3, "nested": {"a": [1, 2.5, None, True]}, "ü": "ß"}
    store.put(("users", "alice"), "food", value)
    item = store.get(("users", "alice"), "food")
    assert item is not None
    assert item.value == value and item.key == "food" and item.namespace == ("users", "alice")
    assert store.get(("users", "alice"), "other") is None
    assert store.get(("users", "alic"), "food") is None


def test_prefix_search_matches_whole_labels_only(store: EngramStore) -> None:
    store.put(("users", "al"), "k", {"text": "pizza"})
    store.put(("users", "alice"), "k", {"text": "pizza"})
    store.put(("users", "alice", "work"), "k", {"text": "pizza"})
    store.put(("usersx", "al"), "k", {"text": "pizza"})
    assert keys(store.search(("users", "al"))) == [(("users", "al"), "k")]
    assert keys(store.search(("users", "al"), query="pizza")) == [(("users", "al"), "k")]
    assert keys(store.search(("users", "alice"), query="pizza")) == [
        (("users", "alice"), "k"),
        (("users", "alice", "work"), "k"),
    ]
    assert len(store.search(("users",), query="pizza")) == 3
    assert len(store.search((), query="pizza")) == 4


def test_keys_are_unique_per_namespace_and_put_replaces(store: EngramStore) -> None:
    store.put(("a",), "k", {"text": "same text"})
    store.put(("b",), "k", {"text": "same text"})
    store.put(("a",), "k2", {"text": "same text"})  # equal values under two keys stay two
    assert len(store.search(())) == 3
    store.put(("a",), "k", {"text": "new text", "v": 2})
    assert store.get(("a",), "k").value == {"text": "new text", "v": 2}
    assert len(store.search(())) == 3
    # Every replace leaves engramdb history behind.
    rid = store.memory.list(filters={"metadata.key": "k", "tags": "0:a"}).records[0].id
    assert [h.op for h in store.memory.history(rid)] == ["add", "update"]
    store.delete(("a",), "k")
    assert store.get(("a",), "k") is None and store.get(("b",), "k") is not None


def test_search_with_a_query_ranks_by_relevance_with_scores(store: EngramStore) -> None:
    store.put(("docs",), "1", {"text": "python tutorial for beginners"})
    store.put(("docs",), "2", {"text": "gardening tips for tomatoes"})
    store.put(("docs",), "3", {"text": "advanced python decorators"})
    hits = store.search(("docs",), query="python", limit=2)
    assert {h.key for h in hits} == {"1", "3"}
    assert all(isinstance(h.score, float) for h in hits)
    assert hits[0].score >= hits[1].score
    assert store.search(("docs",), query="python", limit=1, offset=1)[0].key == hits[1].key


def test_filters_use_langgraph_operators(store: EngramStore) -> None:
    for i in range(6):
        store.put(("f",), str(i), {"text": f"item {i}", "n": i, "kind": "odd" if i % 2 else "even"})
    assert {i.key for i in store.search(("f",), filter={"kind": "odd"})} == {"1", "3", "5"}
    assert {i.key for i in store.search(("f",), filter={"n": {"$gt": 3}})} == {"4", "5"}
    assert {i.key for i in store.search(("f",), filter={"n": {"$gte": 4}})} == {"4", "5"}
    assert {i.key for i in store.search(("f",), filter={"n": {"$lt": 1}})} == {"0"}
    assert {i.key for i in store.search(("f",), filter={"n": {"$lte": 1}})} == {"0", "1"}
    assert {i.key for i in store.search(("f",), filter={"n": {"$ne": 0}, "kind": "even"})} == {
        "2",
        "4",
    }
    assert {i.key for i in store.search(("f",), filter={"n": {"$eq": 2}}, query="item")} == {"2"}
    with pytest.raises(ValidationError, match=r"\$regex"):
        store.search(("f",), filter={"n": {"$regex": ".*"}})


def test_a_filter_key_is_never_spliced_into_sql(store: EngramStore) -> None:
    store.put(("f",), "k", {"text": "x"})
    for evil in ["n') OR 1=1 --", "a b", "x'y"]:
        with pytest.raises(ValidationError):
            store.search(("f",), filter={evil: 1})
    assert store.get(("f",), "k") is not None


def test_index_fields_and_index_false(mem: Memory) -> None:
    store = EngramStore(mem, index={"fields": ["title"]})
    store.put(("d",), "a", {"title": "quantum physics", "body": "cooking recipes"})
    store.put(("d",), "b", {"title": "cooking recipes", "body": "quantum physics"})
    store.put(("d",), "c", {"title": "quantum physics notes"}, index=False)
    assert [h.key for h in store.search(("d",), query="quantum physics")][0] == "a"
    assert "c" not in {h.key for h in store.search(("d",), query="quantum physics")}
    assert {h.key for h in store.search(("d",))} == {"a", "b", "c"}  # listed, not indexed
    store.put(("d",), "c", {"title": "quantum physics notes"})  # indexed on replace
    assert "c" in {h.key for h in store.search(("d",), query="quantum physics")}
    unindexed = EngramStore(mem, index=False)
    unindexed.put(("e",), "a", {"title": "quantum"})
    assert [h.score for h in unindexed.search(("e",), query="quantum")] == [None]


def test_ttl_maps_to_expires_at_and_refresh_on_read(mem: Memory) -> None:
    store = EngramStore(mem, ttl={"default_ttl": 30, "refresh_on_read": True})
    store.put(("t",), "k", {"text": "short lived"})
    rec = mem.list(filters={"metadata.key": "k"}).records[0]
    assert rec.expires_at is not None
    left = rec.expires_at - datetime.now(UTC)
    assert timedelta(minutes=29) < left <= timedelta(minutes=30)
    mem.update(rec.id, expires_at=datetime.now(UTC) + timedelta(minutes=1))
    assert store.get(("t",), "k") is not None  # read: pushed back to 30 minutes
    assert mem.get(rec.id).expires_at - datetime.now(UTC) > timedelta(minutes=29)
    mem.update(rec.id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert store.get(("t",), "k") is None
    assert store.search(("t",)) == []
    store.put(("t",), "forever", {"text": "kept"}, ttl=None)
    assert mem.list(filters={"metadata.key": "forever"}).records[0].expires_at is None


def test_list_namespaces_with_prefix_suffix_and_depth(store: EngramStore) -> None:
    for ns in [("a", "b", "c"), ("a", "b", "d"), ("a", "x"), ("b", "x")]:
        store.put(ns, "k", {"text": "v"})
    assert store.list_namespaces() == [("a", "b", "c"), ("a", "b", "d"), ("a", "x"), ("b", "x")]
    assert store.list_namespaces(prefix=("a", "b")) == [("a", "b", "c"), ("a", "b", "d")]
    assert store.list_namespaces(suffix=("x",)) == [("a", "x"), ("b", "x")]
    assert store.list_namespaces(prefix=("a", "*", "d")) == [("a", "b", "d")]
    assert store.list_namespaces(max_depth=1) == [("a",), ("b",)]
    assert store.list_namespaces(limit=1, offset=1) == [("a", "b", "d")]


def test_a_failed_batch_stores_nothing_of_itself(store: EngramStore) -> None:
    big = "x" * (store.memory.settings.max_metadata_bytes + 1)
    with pytest.raises(LimitExceededError):
        store.batch(
            [
                PutOp(("b",), "ok", {"text": "fine"}),
                PutOp(("b",), "bad", {"text": big}),
            ]
        )
    assert store.search(("b",)) == []


def test_batch_mixes_ops_and_puts_take_effect_first(store: EngramStore) -> None:
    out = store.batch(
        [
            PutOp(("m",), "k", {"text": "first"}),
            GetOp(("m",), "k"),
            PutOp(("m",), "k", {"text": "second"}),
            SearchOp(("m",), None, 10, 0, None),
        ]
    )
    assert out[0] is None and out[2] is None
    assert out[1].value == {"text": "second"}
    assert [i.value for i in out[3]] == [{"text": "second"}]


def test_bad_input_is_refused_with_named_errors(store: EngramStore) -> None:
    with pytest.raises(ValidationError, match="JSON object"):
        store.batch([PutOp(("a",), "k", ["not", "a", "dict"])])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="label"):
        store.batch([PutOp(("a", "x" * 500), "k", {"v": 1})])
    with pytest.raises(ValidationError, match="ttl"):
        store.batch([PutOp(("a",), "k", {"v": 1}, ttl=-1)])


async def test_async_methods_share_the_implementation(store: EngramStore) -> None:
    await store.aput(("as", "u1"), "k", {"text": "async pizza"})
    item = await store.aget(("as", "u1"), "k")
    assert item is not None and item.value == {"text": "async pizza"}
    hits, spaces = await asyncio.gather(
        store.asearch(("as",), query="pizza"), store.alist_namespaces()
    )
    assert [h.key for h in hits] == ["k"] and spaces == [("as", "u1")]
    await store.adelete(("as", "u1"), "k")
    assert await store.aget(("as", "u1"), "k") is None


def test_the_engramdb_namespace_holds_the_whole_store(mem: Memory) -> None:
    a = EngramStore(mem, namespace="tenant-a")
    b = EngramStore(mem, namespace="tenant-b")
    a.put(("users", "u"), "k", {"text": "secret"})
    assert b.get(("users", "u"), "k") is None
    assert b.search((), query="secret") == []
    assert mem.with_namespace("tenant-a").count() == 1


def test_langmem_tools_run_against_engram_store(store: EngramStore) -> None:
    from langmem import create_manage_memory_tool, create_search_memory_tool

    manage = create_manage_memory_tool(namespace=("memories", "{langgraph_user_id}"), store=store)
    search = create_search_memory_tool(namespace=("memories", "{langgraph_user_id}"), store=store)
    alice = {"configurable": {"langgraph_user_id": "alice"}}
    bob = {"configurable": {"langgraph_user_id": "bob"}}
    out = manage.invoke({"content": "Alice prefers window seats on trains"}, alice)
    assert out.startswith("created memory ")
    memory_id = out.split()[-1]
    manage.invoke({"content": "Bob is allergic to peanuts"}, bob)
    found = json.loads(search.invoke({"query": "seat preference on trains"}, alice))
    assert [m["value"]["content"] for m in found] == ["Alice prefers window seats on trains"]
    assert found[0]["namespace"] == ["memories", "alice"] and found[0]["score"] is not None
    manage.invoke(
        {"content": "Alice prefers aisle seats now", "action": "update", "id": memory_id}, alice
    )
    found = json.loads(search.invoke({"query": "seats"}, alice))
    assert [m["value"]["content"] for m in found] == ["Alice prefers aisle seats now"]
    manage.invoke({"action": "delete", "id": memory_id}, alice)
    assert json.loads(search.invoke({"query": "seats"}, alice)) == []
    assert [m["value"]["content"] for m in json.loads(search.invoke({"query": "x"}, bob))] == [
        "Bob is allergic to peanuts"
    ]


def test_store_opened_from_a_url_closes_its_memory(tmp_path) -> None:
    with EngramStore(f"sqlite:///{tmp_path}/own.db", embedder=HashEmbedder(384)) as s:
        s.put(("a",), "k", {"v": 1})
    with EngramStore(f"sqlite:///{tmp_path}/own.db", embedder=HashEmbedder(384)) as s:
        assert s.get(("a",), "k").value == {"v": 1}


def test_index_config_embed_becomes_the_embedder(tmp_path) -> None:
    def embed(texts):  # a deterministic toy model: one axis per topic word
        topics = ["ramen", "chess", "rain"]
        return [[1.0 if w in t else 0.01 for w in topics] for t in texts]

    url = f"sqlite:///{tmp_path}/own.db"
    with EngramStore(url, index={"dims": 3, "embed": embed, "fields": ["text"]}) as s:
        s.put(("u",), "a", {"text": "ramen night"})
        s.put(("u",), "b", {"text": "chess club"})
        assert s.memory.embedder.name == "langgraph:embed" and s.memory.embedder.dim == 3
        hits = EngramStore(s.memory, search_mode="vector").search(("u",), query="chess")
        assert [h.key for h in hits][0] == "b"
    with pytest.raises(ValidationError, match="dims"):
        EngramStore(url, index={"embed": embed})
