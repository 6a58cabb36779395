"""Contract: bad input (TESTPLAN B2, R2) raises a clear error and leaves the store unchanged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from contract_helpers import all_records, state

from engramdb import (
    LimitExceededError,
    Memory,
    NotFoundError,
    Settings,
    ValidationError,
)

INJECTIONS = [
    "'",
    "--",
    "$.a') OR 1=1 --",
    "author' = 'alice' OR '1'='1' --",
    "%",
    "_",
    "*",
    ".",
    '"',
    "\\",
    "a'; DROP TABLE records; --",
    "שלום\u202eevil",  # RTL override
    "x" * 128,
]
FTS_QUERIES = [
    "NEAR(a b)",
    '"',
    '"unbalanced',
    "*",
    "col:",
    "body:cat",
    "a AND",
    "OR",
    "NOT x",
    "^",
    "(",
    "a*b",
    "-cat",
]


@pytest.fixture
def seeded(mem: Memory) -> Memory:
    mem.add(
        [
            {
                "text": "alice owns a cat",
                "user_id": "alice",
                "tags": ["pets"],
                "metadata": {"a": 1},
            },
            {"text": "bob owns a dog", "user_id": "bob", "tags": ["pets"], "metadata": {"a": 2}},
        ]
    )
    mem.with_namespace("other").add("another tenant's cat", user_id="alice")
    return mem


def rejected(
    mem: Memory,
    call: Callable[[], Any],
    *mentions: str,
    exc: type[Exception] = ValidationError,
) -> ValidationError:
    """``call`` raises ``exc`` whose message names each of ``mentions``; nothing changes."""
    before = state(mem)
    with pytest.raises(exc) as err:
        call()
    message = str(err.value)
    for word in mentions:
        assert word in message, f"{word!r} not named in {message!r}"
    assert state(mem) == before
    assert isinstance(err.value, ValidationError)
    return err.value


def test_empty_and_blank_text(seeded: Memory) -> None:
    for text in ("", "   ", "\n\t \u3000"):
        rejected(seeded, lambda t=text: seeded.add(t), "text", "empty")


def test_text_over_limit_names_the_limit(seeded: Memory) -> None:
    limit = Settings().max_text_bytes
    err = rejected(
        seeded, lambda: seeded.add("é" * (limit // 2 + 1)), "max_text_bytes", exc=LimitExceededError
    )
    assert err.details["limit"] == "max_text_bytes"
    seeded.add("x" * limit)  # exactly at the limit is fine
    rejected(
        seeded,
        lambda: seeded.search("q" * (limit + 1)),
        "max_text_bytes",
        exc=LimitExceededError,
    )


def test_invalid_unicode_and_nul(seeded: Memory) -> None:
    rejected(seeded, lambda: seeded.add(b"\xff\xfe bad bytes"), "UTF-8")  # type: ignore[arg-type]
    rejected(seeded, lambda: seeded.add("lone \ud800 surrogate"), "surrogate")
    rejected(seeded, lambda: seeded.add("nul \x00 inside"), "NUL")
    rejected(seeded, lambda: seeded.add("ok", metadata={"k": "bad \udfff"}), "metadata")
    rejected(seeded, lambda: seeded.add("ok", metadata={"k\x00": 1}), "NUL")
    rejected(seeded, lambda: seeded.add("ok", user_id="a\x00b"), "user_id")
    rejected(seeded, lambda: seeded.add("ok", tags=["a\nb"]), "tag")


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), -float("inf"), True, False, -0.1, 1.5, "0.5", [0.5]]
)
def test_bad_importance(seeded: Memory, value: Any) -> None:
    rejected(seeded, lambda: seeded.add("ok text", importance=value), "importance")
    rid = seeded.list()[0].id
    rejected(seeded, lambda: seeded.update(rid, importance=value), "importance")


@pytest.mark.parametrize(
    ("kwargs", "mention"),
    [
        ({"occurred_at": datetime(2024, 1, 1)}, "naive"),
        ({"occurred_at": "2024-01-01T00:00:00"}, "naive"),
        ({"occurred_at": "not a date"}, "occurred_at"),
        ({"expires_at": 12345}, "expires_at"),
        ({"type": "Bad Type"}, "type"),
        ({"type": "fact'; --"}, "type"),
        ({"tags": "single-string"}, "tags"),
        ({"tags": [1, 2]}, "tag"),
        ({"tags": [f"t{i}" for i in range(65)]}, "max_tags"),
        ({"metadata": ["not", "a", "dict"]}, "metadata"),
        ({"metadata": {"x": float("nan")}}, "finite"),
        ({"metadata": {"x": {1, 2}}}, "set"),
        ({"metadata": {"x": 2**63}}, "64 bits"),
        ({"metadata": {1: "int key"}}, "keys"),
        ({"metadata": {"s": "x" * 20_000}}, "max_metadata_bytes"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": 5}, "user_id"),
        ({"source": "x" * 300}, "source"),
        ({"id": "' OR 1=1 --"}, "id"),
        ({"id": ""}, "id"),
        ({"on_error": "ignore"}, "on_error"),
    ],
    ids=str,
)
def test_bad_fields(seeded: Memory, kwargs: dict[str, Any], mention: str) -> None:
    rejected(seeded, lambda: seeded.add("fine text", **kwargs), mention)


def test_metadata_10k_levels_deep_no_recursion_error(seeded: Memory) -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(10_000):
        deep = {"d": deep}
    rejected(seeded, lambda: seeded.add("deep", metadata=deep), "max_metadata_depth")
    deep_list: Any = 1
    for _ in range(10_000):
        deep_list = [deep_list]
    rejected(seeded, lambda: seeded.add("deep", metadata={"l": deep_list}), "max_metadata_depth")
    rejected(seeded, lambda: seeded.set_slots("t", {"d": deep}), "max_metadata_depth")
    rejected(seeded, lambda: seeded.log_event("t", "x", deep), "max_metadata_depth")


def test_metadata_100k_keys(seeded: Memory) -> None:
    wide = {f"k{i}": i for i in range(100_000)}
    rejected(seeded, lambda: seeded.add("wide", metadata=wide), "max_metadata_bytes")


def test_limits_on_top_k_limit_offset(seeded: Memory) -> None:
    for top_k in (0, -1):
        rejected(seeded, lambda k=top_k: seeded.search("cat", top_k=k), "top_k")
    rejected(seeded, lambda: seeded.search("cat", top_k=10**9), "max_top_k", exc=LimitExceededError)
    rejected(seeded, lambda: seeded.search("cat", top_k=True), "top_k")  # type: ignore[arg-type]
    rejected(seeded, lambda: seeded.search("cat", offset=10**9), "offset", exc=LimitExceededError)
    rejected(seeded, lambda: seeded.search("cat", offset=-1), "offset")
    rejected(seeded, lambda: seeded.list(limit=0), "limit")
    rejected(seeded, lambda: seeded.list(limit=10**9), "max_top_k", exc=LimitExceededError)
    rejected(seeded, lambda: seeded.events("t", limit=-1), "limit")
    rejected(seeded, lambda: seeded.search("cat", mode="fuzzy"), "mode")  # type: ignore[arg-type]
    rejected(seeded, lambda: seeded.search("cat", threshold=2.0), "threshold")
    rejected(seeded, lambda: seeded.search("cat", cursor="garbage!!"), "cursor")
    rejected(seeded, lambda: seeded.list(cursor="garbage!!"), "cursor")


def test_oversize_batch(seeded: Memory) -> None:
    n = Settings().max_batch + 1
    rejected(seeded, lambda: seeded.add([f"item {i}" for i in range(n)]), "max_batch")
    rejected(seeded, lambda: seeded.add([]), "empty")
    msgs = [{"role": "user", "content": f"m{i}"} for i in range(n)]
    rejected(seeded, lambda: seeded.add_messages("t", msgs), "max_batch")


def test_unknown_operator_and_wrong_typed_values(seeded: Memory) -> None:
    rejected(seeded, lambda: seeded.list({"user_id": {"$like": "a%"}}), "$like")
    rejected(seeded, lambda: seeded.count({"$where": "1=1"}), "$where")
    rejected(
        seeded, lambda: seeded.search("cat", filters={"importance": {"$gt": "x"}}), "importance"
    )
    rejected(seeded, lambda: seeded.delete_all({"tags": {"$contains": 5}}), "tags")
    rejected(seeded, lambda: seeded.count({"metadata.a": {"$gte": True}}), "boolean")
    wide = {"$or": [{"user_id": f"u{i}"} for i in range(10_000)]}
    rejected(seeded, lambda: seeded.list(wide), "max_filter_clauses", exc=LimitExceededError)


@pytest.mark.parametrize("evil", INJECTIONS, ids=repr)
def test_injection_strings_as_filter_keys(seeded: Memory, evil: str) -> None:
    # Either rejected (ValidationError) or a literal metadata key that matches nothing here.
    before = state(seeded)
    for key in (evil, f"metadata.{evil}", f"metadata.a.{evil}", f"$.{evil}"):
        for call in (
            lambda k=key: seeded.list({k: 1}).records,
            lambda k=key: seeded.count({k: 1}),
            lambda k=key: seeded.search("cat", filters={k: "x"}).hits,
            lambda k=key: seeded.delete_all({k: "x"}),
        ):
            try:
                outcome = call()
            except ValidationError:
                continue
            assert key.startswith("metadata.")
            assert outcome in ([], 0)
        assert state(seeded) == before


@pytest.mark.parametrize("evil", INJECTIONS, ids=repr)
def test_injection_strings_as_values_match_literally(seeded: Memory, evil: str) -> None:
    before = state(seeded)
    for filters in (
        {"user_id": evil},
        {"user_id": {"$in": [evil, "nobody"]}},
        {"tags": evil},
        {"metadata.a": evil},
        {"source": evil},
        {"thread_id": {"$ne": evil}, "user_id": evil},
    ):
        assert seeded.list(filters).records == []
        assert seeded.count(filters) == 0
        assert seeded.search("cat", filters=filters).hits == []
        assert seeded.delete_all(filters) == 0
    assert seeded.count({"user_id": {"$ne": evil}}) == 2
    assert state(seeded) == before


@pytest.mark.parametrize("evil", INJECTIONS, ids=repr)
def test_injection_strings_in_every_field_round_trip(seeded: Memory, evil: str) -> None:
    text = f"note with {evil} inside"
    res = seeded.add(
        text,
        user_id=evil,
        agent_id=evil,
        thread_id=evil,
        source=evil,
        tags=[evil],
        metadata={evil: evil, "v": evil},
    )[0]
    rec = seeded.get(res.id or "")
    assert (rec.text, rec.user_id, rec.agent_id, rec.thread_id, rec.source) == (
        text,
        evil,
        evil,
        evil,
        evil,
    )
    assert rec.tags == [evil] and rec.metadata == {evil: evil, "v": evil}
    for filters in ({"user_id": evil}, {"tags": evil}, {"metadata.v": evil}, {"source": evil}):
        assert [r.id for r in seeded.list(filters)] == [rec.id]
        assert [h.record.id for h in seeded.search("note", filters=filters)] == [rec.id]
    assert [h.record.id for h in seeded.search("note inside", user_id=evil)] == [rec.id]
    seeded.log_event(evil, evil, {evil: evil}, user_id=evil, actor=evil)
    assert seeded.events(evil)[0].payload == {evil: evil}
    seeded.set_slots(evil, {evil: evil})
    assert seeded.get_slots(evil).values == {evil: evil}
    assert seeded.count() == 3
    assert seeded.with_namespace("other").count() == 1
    assert seeded.delete_all({"user_id": evil}) == 1
    assert seeded.count() == 2


@pytest.mark.parametrize("query", INJECTIONS + FTS_QUERIES, ids=repr)
def test_injection_and_fts_syntax_as_search_queries(seeded: Memory, query: str) -> None:
    before = state(seeded)
    for mode in ("hybrid", "vector", "keyword"):
        page = seeded.search(query, mode=mode)
        assert all(h.record.namespace == seeded.namespace for h in page)
    # FTS operators are literals: "NEAR(a b)" finds nothing in a store without those words.
    assert seeded.search("NEAR(cat dog)", mode="keyword").hits == [] or all(
        {"cat", "dog"} & set(h.record.text.split())
        for h in seeded.search("NEAR(cat dog)", mode="keyword")
    )
    assert state(seeded) == before


def test_fts_operators_are_quoted(seeded: Memory) -> None:
    seeded.add("NEAR the river OR the lake AND more")
    kw = [h.record.text for h in seeded.search("NEAR", mode="keyword")]
    assert kw == ["NEAR the river OR the lake AND more"]
    assert [h.record.text for h in seeded.search("cat*", mode="keyword")] == ["alice owns a cat"]
    assert seeded.search("body:cat", mode="keyword").hits  # not a column filter, just words


@pytest.mark.parametrize("evil", ["' OR 1=1 --", "%", "_", "*", "a b", "../../etc/passwd"])
def test_injection_ids(seeded: Memory, evil: str) -> None:
    before = state(seeded)
    for call in (
        lambda: seeded.get(evil),
        lambda: seeded.delete(evil),
        lambda: seeded.history(evil),
        lambda: seeded.update(evil, importance=0.5),
    ):
        with pytest.raises((ValidationError, NotFoundError)):
            call()
    with pytest.raises(ValidationError):
        seeded.get_many([evil])
    assert state(seeded) == before


def test_list_and_ids_are_validated(seeded: Memory) -> None:
    rejected(seeded, lambda: seeded.get_many("notalist"), "ids")  # type: ignore[arg-type]
    rejected(seeded, lambda: seeded.update(seeded.list()[0].id), "nothing to update")
    rejected(seeded, lambda: seeded.update(seeded.list()[0].id, clear=["text"]), "clear")
    rejected(
        seeded,
        lambda: seeded.update(seeded.list()[0].id, text="x", expected_version="1"),  # type: ignore[arg-type]
        "expected_version",
    )
    assert all(r.version == 1 for r in all_records(seeded))
