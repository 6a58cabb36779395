"""Contract: namespaces isolate tenants (invariant 2), including prefix and LIKE traps."""

from __future__ import annotations

from pathlib import Path

import pytest
from contract_helpers import all_records, state

from engramdb import Memory, NotFoundError, ValidationError

SECRET = "the launch code is swordfish"


def _seed(a: Memory) -> str:
    rid = a.add(SECRET, user_id="u", thread_id="t", tags=["secret"], metadata={"k": "v"})[0].id
    a.update(rid or "", importance=0.9)
    a.add_messages("t", [{"role": "user", "content": "swordfish is the password"}], user_id="u")
    a.set_slots("t", {"code": "swordfish"})
    return rid or ""


def assert_blind(b: Memory, rid: str) -> None:
    """Nothing of the other namespace is reachable from ``b``."""
    with pytest.raises(NotFoundError):
        b.get(rid)
    assert b.get_many([rid]) == []
    with pytest.raises(NotFoundError):
        b.history(rid)
    with pytest.raises(NotFoundError):
        b.delete(rid)
    with pytest.raises(NotFoundError):
        b.update(rid, importance=0.1)
    assert all_records(b) == []
    assert b.count(include_expired=True) == 0
    for filters in (
        {"id": rid},
        {"user_id": "u"},
        {"tags": "secret"},
        {"metadata.k": "v"},
        {"$or": [{"id": rid}, {"id": {"$ne": rid}}]},
        {"$not": {"id": "nothing"}},
    ):
        assert b.count(filters, include_expired=True) == 0
        assert b.list(filters).records == []
        for mode in ("hybrid", "vector", "keyword"):
            assert b.search("swordfish launch code", mode=mode, filters=filters).hits == []
    for mode in ("hybrid", "vector", "keyword"):
        assert b.search("swordfish launch code", mode=mode).hits == []
        assert b.search("swordfish", mode=mode, user_id="u", thread_id="t").hits == []
    assert b.events("t") == []
    assert b.get_slots("t").values == {} and b.get_slots("t").version == 0
    assert "swordfish" not in b.snapshot("t").text
    assert b.delete_all({"id": rid}) == 0
    assert b.delete_all(all=True) == 0
    assert b.delete_all(user_id="u") == 0


@pytest.mark.parametrize(
    ("ns_a", "ns_b"),
    [("tenant-a", "tenant-b"), ("foo", "foobar"), ("foobar", "foo"), ("foo", "foo.bar")],
)
def test_namespace_isolation(mem: Memory, ns_a: str, ns_b: str) -> None:
    a, b = mem.with_namespace(ns_a), mem.with_namespace(ns_b)
    rid = _seed(a)
    before = state(a)
    assert_blind(b, rid)
    b.forget(namespace=True)
    b.forget(user_id="u")
    b.forget(thread_id="t")
    assert state(a) == before
    assert a.get(rid).text == SECRET
    assert len(a.events("t")) == 1 and a.get_slots("t").values == {"code": "swordfish"}


@pytest.mark.parametrize("ns", ["a%", "%", "_", "a*", "a'", "a;--", "", " a", "a/b", "a\x00"])
def test_wildcard_namespaces_are_rejected_or_literal(mem: Memory, ns: str) -> None:
    # Namespaces are a strict pattern: LIKE wildcards and quotes never reach a query.
    mem.with_namespace("ab").add("in ab")
    with pytest.raises(ValidationError):
        mem.with_namespace(ns)


def test_underscore_and_dot_namespaces_are_literal(mem: Memory) -> None:
    names = ["a_", "a_b", "axb", "a.b", "a-b", "A_B"]
    for n in names:
        mem.with_namespace(n).add(f"record of {n}", user_id="u")
    for n in names:
        view = mem.with_namespace(n)
        assert [r.text for r in all_records(view)] == [f"record of {n}"]
        assert [h.record.text for h in view.search("record of", top_k=50)] == [f"record of {n}"]
        assert view.count() == 1
    counts = mem.namespaces()
    assert all(counts[n] == 1 for n in names)


def test_ids_are_per_namespace(mem: Memory) -> None:
    a, b = mem.with_namespace("a"), mem.with_namespace("b")
    a.add("text in a", id="shared-id")
    res = b.add("text in b", id="shared-id")[0]
    assert res.outcome == "written"
    assert a.get("shared-id").text == "text in a" and b.get("shared-id").text == "text in b"
    b.delete("shared-id")
    assert a.get("shared-id").text == "text in a"
    assert [h.op for h in a.history("shared-id")] == ["add"]


def test_dedup_is_per_namespace(mem: Memory) -> None:
    a, b = mem.with_namespace("a"), mem.with_namespace("b")
    ra = a.add("same text", user_id="u")[0]
    rb = b.add("same text", user_id="u")[0]
    assert ra.outcome == rb.outcome == "written" and ra.id != rb.id


def test_export_of_one_namespace_holds_nothing_else(mem: Memory, tmp_path: Path) -> None:
    a, b = mem.with_namespace("a"), mem.with_namespace("b")
    _seed(a)
    b.add("b only record")
    path = tmp_path / "b.jsonl"
    assert b.export(path) == 1
    assert "swordfish" not in path.read_text()


def test_search_cursor_cannot_reach_other_namespace(mem: Memory) -> None:
    a, b = mem.with_namespace("a"), mem.with_namespace("b")
    a.add([f"swordfish note {i}" for i in range(30)])
    b.add("one swordfish note in b")
    page = a.search("swordfish", top_k=5)
    assert page.next_cursor is not None
    other = b.search("swordfish", top_k=5, cursor=page.next_cursor)
    assert other.hits == []  # b has one hit; the offset cursor skips past it, never into a
    page_a = a.list(limit=5)
    assert page_a.next_cursor is not None
    assert b.list(limit=5, cursor=page_a.next_cursor).records == [] or all(
        r.namespace == "b" for r in b.list(limit=5, cursor=page_a.next_cursor)
    )
