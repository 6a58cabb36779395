"""EngramStore's census: filters every record passes are dropped, exactly; list_namespaces
answers from a set kept per write generation. On both backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langgraph.store.base import SearchOp

from engramdb import HashEmbedder, Memory, Settings
from engramdb.integrations.langgraph import EngramStore

WORDS = ["ramen", "chess", "rain", "trains", "seats", "garden", "python", "music"]


@pytest.fixture
def store(mem: Memory) -> Iterator[EngramStore]:
    s = EngramStore(mem)
    yield s
    s.close()


def fill(store: EngramStore, users: int = 6, per_user: int = 5) -> None:
    for u in range(users):
        for i in range(per_user):
            text = f"{WORDS[(u + i) % len(WORDS)]} and {WORDS[(u * 3 + i) % len(WORDS)]} {u}-{i}"
            store.put(("users", f"u{u}"), f"k{i}", {"text": text})


def answer(store: EngramStore, prefix: tuple[str, ...], query: str | None, trust: bool) -> list:
    """The search's (namespace, key, score) list, on the planned path or the filtered one."""
    op = SearchOp(prefix, None, 10, 0, query)
    plan = store._plan(prefix, None, trust_census=trust)
    items, _ = store._run(op, plan)
    return [(i.namespace, i.key, i.score) for i in items]


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
def test_a_root_every_item_shares_needs_no_filter_and_ranks_the_same(
    mem: Memory, mode: str
) -> None:
    store = EngramStore(mem, search_mode=mode)  # type: ignore[arg-type]
    fill(store)
    plan = store._plan(("users",), None)
    assert "tags" not in plan.filters and not plan.typed and plan.generation is not None
    for query in ["ramen", "chess rain", "seats on trains", None]:
        planned = answer(store, ("users",), query, True)
        filtered = answer(store, ("users",), query, False)
        assert planned == filtered and len(planned) == 10
        assert [(h.namespace, h.key, h.score) for h in store.search(("users",), query=query)] == (
            planned
        )
    # The empty prefix: every record is an indexed item, so no type test either.
    assert not store._plan((), None).typed
    # A value filter stays: only labels and type are ever dropped.
    assert store._plan(("users",), {"text": "x"}).filters == {"metadata.value.text": "x"}


def test_two_roots_keep_the_label_filter(store: EngramStore) -> None:
    fill(store, users=3)
    store.put(("docs", "u0"), "d", {"text": "ramen recipe"})
    plan = store._plan(("users",), None)
    assert plan.filters["tags"] == {"$contains": ["0:users"]} and plan.typed
    assert plan.generation is None
    hits = store.search(("users",), query="ramen recipe", limit=20)
    assert hits and all(h.namespace[0] == "users" for h in hits)
    assert answer(store, ("users",), "ramen", True) == answer(store, ("users",), "ramen", False)
    # Everything under one root again: the filter goes again.
    store.delete(("docs", "u0"), "d")
    assert "tags" not in store._plan(("users",), None).filters


def test_an_unindexed_item_or_a_plain_record_keeps_the_filters(store: EngramStore) -> None:
    fill(store, users=2)
    store.put(("users", "u9"), "raw", {"text": "ramen unindexed"}, index=False)
    plan = store._plan(("users",), None)
    assert plan.typed and plan.generation is None  # the type test keeps it out
    assert "raw" not in {h.key for h in store.search(("users",), query="ramen unindexed")}
    store.delete(("users", "u9"), "raw")
    assert not store._plan(("users",), None).typed
    # A record of engramdb's own in the same namespace: no LangGraph filter is redundant.
    store.memory.add("ramen unindexed plain record", user_id='["users","u0"]')
    plan = store._plan(("users",), None)
    assert plan.typed and plan.filters["tags"] == {"$contains": ["0:users"]}
    assert all(h.value.get("text") for h in store.search(("users",), query="ramen plain"))


def test_another_writer_moves_the_census(store_url: str, store: EngramStore) -> None:
    fill(store, users=2)
    assert store._plan(("users",), None).generation is not None
    with Memory(store_url, embedder=HashEmbedder(384), settings=Settings()) as other:
        EngramStore(other).put(("docs",), "d", {"text": "ramen elsewhere"})
    plan = store._plan(("users",), None)
    assert plan.filters["tags"] == {"$contains": ["0:users"]} and plan.typed
    assert ("docs",) not in {h.namespace for h in store.search(("users",), query="ramen")}
    assert store.list_namespaces(max_depth=1) == [("docs",), ("users",)]


def test_list_namespaces_past_a_page_and_after_writes(store: EngramStore) -> None:
    from langgraph.store.base import PutOp

    spaces = [("org", f"team{t:02}", f"p{p:02}") for t in range(30) for p in range(40)]
    for start in range(0, len(spaces), 500):
        store.batch([PutOp(ns, "k", {"text": f"v {ns[1]}"}) for ns in spaces[start : start + 500]])
    assert len(spaces) > 1000  # more namespaces than a page of engramdb's list
    assert store.list_namespaces(limit=2000) == sorted(spaces)
    assert store.list_namespaces(prefix=("org", "team07"), limit=100) == [
        ns for ns in sorted(spaces) if ns[1] == "team07"
    ]
    assert store.list_namespaces(max_depth=2, limit=100) == sorted({ns[:2] for ns in spaces})
    assert store.list_namespaces(suffix=("p39",), limit=5, offset=3) == [
        ("org", f"team{t:02}", "p39") for t in range(3, 8)
    ]
    store.put(("org", "new"), "k", {"text": "fresh"})
    assert ("org", "new") in store.list_namespaces(prefix=("org",), max_depth=2, limit=100)
    store.delete(("org", "new"), "k")
    assert ("org", "new") not in store.list_namespaces(prefix=("org",), max_depth=2, limit=100)


def test_list_namespaces_of_shallow_items_comes_from_the_user_scopes(store: EngramStore) -> None:
    from langgraph.store.base import PutOp

    users = [("users", f"u{u:04}") for u in range(1200)]
    store.batch([PutOp(ns, "k", {"text": f"hello {ns[1]}"}) for ns in users])
    store.put(("users",), "top", {"text": "one label"})
    store.put(("users", "u0001"), "raw", {"text": "unindexed"}, index=False)
    assert store.list_namespaces(limit=5000) == sorted([*users, ("users",)])
    # The deep-item marker is on none of them: the answer came from the distinct scopes.
    assert store.memory.count(tags=["lg:deep"]) == 0
    assert store.list_namespaces(prefix=("users", "u0007")) == [("users", "u0007")]
    assert store.list_namespaces(max_depth=1) == [("users",)]


def test_a_scope_holding_only_deeper_items_names_no_namespace(store: EngramStore) -> None:
    store.put(("a", "b", "c"), "k", {"text": "deep"})
    store.put(("a", "x", "y", "z"), "k", {"text": "deeper"}, index=False)
    assert store.list_namespaces() == [("a", "b", "c"), ("a", "x", "y", "z")]
    store.put(("a", "b"), "k", {"text": "the scope itself"})
    assert store.list_namespaces() == [("a", "b"), ("a", "b", "c"), ("a", "x", "y", "z")]
    store.delete(("a", "b", "c"), "k")
    assert store.list_namespaces() == [("a", "b"), ("a", "x", "y", "z")]


def test_list_namespaces_skips_expired_items(mem: Memory) -> None:
    from datetime import UTC, datetime, timedelta

    store = EngramStore(mem)
    store.put(("t", "live"), "k", {"text": "kept"})
    store.put(("t", "gone"), "k", {"text": "expiring"}, ttl=5)
    store.put(("t", "gone", "deep"), "k", {"text": "expiring too"}, ttl=5)
    assert store.list_namespaces() == [("t", "gone"), ("t", "gone", "deep"), ("t", "live")]
    for r in mem.list(filters={"metadata.ttl": 5}).records:
        mem.update(r.id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert store.list_namespaces() == [("t", "live")]


def test_user_ids_are_the_distinct_live_scopes(mem: Memory) -> None:
    from datetime import UTC, datetime, timedelta

    for i in range(30):
        mem.add(f"note {i}", user_id=f"user-{i % 4}")
    mem.add("no user at all")
    mem.add("gone", user_id="expired-user", expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert sorted(mem._user_ids()) == ["expired-user", "user-0", "user-1", "user-2", "user-3"]
    rec = mem.list(user_id="expired-user").records[0]
    mem.update(rec.id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert sorted(mem._user_ids()) == ["user-0", "user-1", "user-2", "user-3"]
    assert mem.with_namespace("elsewhere")._user_ids() == []
