"""Property B4: ``get(add(x)) == x`` for arbitrary Unicode, 64-bit ints, finite floats and
nested metadata up to the limits; NUL and lone surrogates are rejected by design."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engramdb import Memory, Settings, ValidationError

_ns = itertools.count()
LIMITS = Settings()

# Any code point but NUL and surrogates (astral planes included).
chars = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
text = st.text(chars, min_size=1, max_size=200).filter(lambda t: t.strip() != "")
# Scope strings: no control characters (documented), anything else goes.
scope = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=40)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([2**63 - 1, -(2**63), 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(chars, max_size=30),
)
keys = st.text(chars, max_size=12)


def nested(depth: int) -> st.SearchStrategy[Any]:
    """JSON values no deeper than ``depth`` containers."""
    if depth <= 0:
        return leaves
    inner = nested(depth - 1)
    return st.one_of(
        leaves,
        st.lists(inner, max_size=3),
        st.dictionaries(keys, inner, max_size=3),
    )


metadata = st.dictionaries(keys, nested(LIMITS.max_metadata_depth - 1), max_size=5).filter(
    lambda m: len(json.dumps(m, ensure_ascii=False).encode()) <= LIMITS.max_metadata_bytes
)


def _deep(depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {"leaf": 2**63 - 1}
    for _ in range(depth - 1):
        out = {"d": out}
    return out


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    t=text,
    meta=metadata,
    user=scope,
    tags=st.lists(
        st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=20),
        max_size=4,
    ),
    importance=st.one_of(st.none(), st.floats(0, 1)),
)
def test_get_add_round_trip(
    mem: Memory,
    t: str,
    meta: dict[str, Any],
    user: str,
    tags: list[str],
    importance: float | None,
) -> None:
    view = mem.with_namespace(f"rt{next(_ns)}")
    res = view.add(t, metadata=meta, user_id=user, tags=tags, importance=importance, source=user)
    rec = view.get(res[0].id or "")
    assert rec.text == t
    assert rec.metadata == meta
    assert json.dumps(rec.metadata, sort_keys=True) == json.dumps(meta, sort_keys=True)
    assert rec.user_id == user and rec.source == user
    assert rec.tags == sorted(set(tags))
    assert rec.importance == importance
    assert rec == res[0].record
    listed = view.list()
    assert [r.text for r in listed] == [t]
    found = view.search(t, mode="vector", user_id=user)
    assert [h.record.id for h in found] == [rec.id]


def test_metadata_at_the_depth_limit_round_trips(mem: Memory) -> None:
    deep = _deep(LIMITS.max_metadata_depth)
    rid = mem.add("deep metadata", metadata=deep)[0].id or ""
    assert mem.get(rid).metadata == deep
    with pytest.raises(ValidationError):
        mem.add("too deep", metadata=_deep(LIMITS.max_metadata_depth + 1))


@pytest.mark.parametrize("bad", ["a\x00b", "\x00", "x\ud800", "\udfffy", "ok \ud83d"], ids=repr)
def test_nul_and_lone_surrogates_rejected(mem: Memory, bad: str) -> None:
    with pytest.raises(ValidationError):
        mem.add(bad)
    assert mem.count() == 0


def test_astral_text_round_trips_and_is_searchable(mem: Memory) -> None:
    t = "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🦉 owl emoji 𠜎 and 🇵🇹"
    rid = mem.add(t, metadata={"emoji": "🦉", "big": 2**63 - 1, "neg": -(2**63)})[0].id or ""
    rec = mem.get(rid)
    assert rec.text == t and rec.metadata == {"emoji": "🦉", "big": 2**63 - 1, "neg": -(2**63)}
    assert mem.count({"metadata.emoji": "🦉"}) == 1
    assert mem.count({"metadata.big": 2**63 - 1}) == 1
    assert mem.count({"metadata.neg": {"$lt": 0}}) == 1
    assert [h.record.id for h in mem.search("owl", mode="keyword")] == [rid]


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=60))
def test_dedup_normalisation_is_nfc_and_collapsed_whitespace(raw: str) -> None:
    """``normalize_text`` (the notion of "same text" for dedup) is exactly NFC, then every
    run of ``\\s`` collapsed to one space, then stripped: its faster ``split``-based form must
    never drift from that definition, or stored content hashes would stop matching."""
    import re
    import unicodedata

    from engramdb.engine.validation import normalize_text

    spaced = raw + "\u2003 \t\x1c\x85\u3000" + raw[::-1]  # Unicode spaces, separators
    for s in (raw, spaced):
        want = re.sub(r"\s+", " ", unicodedata.normalize("NFC", s)).strip()
        assert normalize_text(s) == want
