"""Property: list / count / vector search under random filters equal a plain-Python evaluation.

The evaluator below is written from the documented semantics in ``engramdb.query.filters``
(not from its SQL): missing keys match ``$ne``/``$nin`` and ``None`` equality, booleans are
not numbers, ranges need numbers, tags are a set.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engramdb import Memory, MemoryRecord

MISSING = object()
DAYS = [datetime(2024, 1, d, tzinfo=UTC) for d in (1, 5, 10, 20)]
NOW = datetime.now(UTC)
EXPIRIES = [None, NOW - timedelta(days=1), NOW + timedelta(days=30)]
_ns = itertools.count()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, 1.0, -2.5]),
    st.sampled_from(["x", "y", "1", "true"]),
)

records = st.fixed_dictionaries(
    {
        "user_id": st.sampled_from([None, "alice", "bob", "carol"]),
        "type": st.sampled_from(["fact", "preference", "semantic"]),
        "tags": st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3),
        "importance": st.sampled_from([None, 0.0, 0.25, 0.5, 1.0]),
        "occurred_at": st.sampled_from(DAYS),
        "expires_at": st.sampled_from(EXPIRIES),
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "n": scalars,
                "s": st.sampled_from(["x", "y", "z"]),
                "nested": st.one_of(
                    st.fixed_dictionaries({}, optional={"x": scalars}), st.integers(0, 2)
                ),
                "list": st.lists(scalars, max_size=3),
            },
        ),
    }
)

STR_FIELDS = ["user_id", "type"]
META_PATHS = ["n", "s", "nested.x", "list", "missing"]


def _str_leaf() -> st.SearchStrategy[dict[str, Any]]:
    values = st.sampled_from([None, "alice", "bob", "fact", "semantic", "zed"])
    field = st.sampled_from(STR_FIELDS)
    op = st.one_of(
        values,
        st.builds(lambda v: {"$eq": v}, values),
        st.builds(lambda v: {"$ne": v}, values),
        st.builds(lambda vs: {"$in": vs}, st.lists(values, max_size=3)),
        st.builds(lambda vs: {"$nin": vs}, st.lists(values, max_size=3)),
        st.builds(lambda b: {"$exists": b}, st.booleans()),
    )
    return st.builds(lambda f, o: {f: o}, field, op)


def _num_leaf() -> st.SearchStrategy[dict[str, Any]]:
    nums = st.sampled_from([0.0, 0.25, 0.5, 1, 0.75])
    cmp = st.sampled_from(["$gt", "$gte", "$lt", "$lte"])
    op = st.one_of(
        st.builds(lambda c, v: {c: v}, cmp, nums),
        st.builds(lambda v: {"$eq": v}, st.one_of(st.none(), nums)),
        st.builds(lambda v: {"$ne": v}, st.one_of(st.none(), nums)),
        st.builds(lambda vs: {"$in": vs}, st.lists(st.one_of(st.none(), nums), max_size=3)),
        st.builds(lambda b: {"$exists": b}, st.booleans()),
    )
    return st.builds(lambda o: {"importance": o}, op)


def _time_leaf() -> st.SearchStrategy[dict[str, Any]]:
    cmp = st.sampled_from(["$gt", "$gte", "$lt", "$lte", "$eq", "$ne"])
    when = st.sampled_from(DAYS + [DAYS[1] + timedelta(hours=1)])
    as_text = st.booleans()
    return st.builds(
        lambda c, w, t: {"occurred_at": {c: w.isoformat() if t else w}}, cmp, when, as_text
    )


def _tags_leaf() -> st.SearchStrategy[dict[str, Any]]:
    tag = st.sampled_from(["a", "b", "c", "d"])
    op = st.one_of(
        tag,
        st.builds(lambda t: {"$contains": t}, tag),
        st.builds(lambda ts: {"$contains": ts}, st.lists(tag, min_size=1, max_size=3)),
        st.builds(lambda ts: {"$in": ts}, st.lists(tag, max_size=3)),
        st.builds(lambda ts: {"$nin": ts}, st.lists(tag, max_size=3)),
        st.builds(lambda b: {"$exists": b}, st.booleans()),
    )
    return st.builds(lambda o: {"tags": o}, op)


def _meta_leaf() -> st.SearchStrategy[dict[str, Any]]:
    path = st.sampled_from(META_PATHS).map(lambda p: "metadata." + p)
    nums = st.sampled_from([-1, 0, 0.5, 1, 2.5])
    cmp = st.sampled_from(["$gt", "$gte", "$lt", "$lte"])
    op = st.one_of(
        scalars,
        st.builds(lambda v: {"$eq": v}, scalars),
        st.builds(lambda v: {"$ne": v}, scalars),
        st.builds(lambda vs: {"$in": vs}, st.lists(scalars, max_size=3)),
        st.builds(lambda vs: {"$nin": vs}, st.lists(scalars, max_size=3)),
        st.builds(lambda c, v: {c: v}, cmp, nums),
        st.builds(lambda b: {"$exists": b}, st.booleans()),
        st.builds(lambda v: {"$contains": v}, scalars),
    )
    return st.builds(lambda p, o: {p: o}, path, op)


leaf = st.one_of(_str_leaf(), _num_leaf(), _time_leaf(), _tags_leaf(), _meta_leaf())


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in parts:
        for k, v in p.items():
            if k in out:  # same key twice: nest under $and instead of overwriting
                out.setdefault("$and", []).append({k: v})
            else:
                out[k] = v
    return out


filters = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"$not": x}, inner),
        st.builds(_merge, st.lists(inner, min_size=2, max_size=3)),
    ),
    max_leaves=6,
)


# ------------------------------------------------------------------ the reference evaluator


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _json_eq(actual: Any, want: Any) -> bool:
    """Exact JSON equality: type-aware, booleans are not numbers."""
    if want is None:
        return actual is None
    if isinstance(want, bool):
        return isinstance(actual, bool) and actual == want
    if isinstance(want, str):
        return isinstance(actual, str) and actual == want
    return _is_num(actual) and actual == want


def _lookup(meta: dict[str, Any], path: str) -> Any:
    cur: Any = meta
    for seg in path.split("."):
        if not isinstance(cur, dict) or seg not in cur:
            return MISSING
        cur = cur[seg]
    return cur


def _as_dt(v: Any) -> Any:
    return datetime.fromisoformat(v) if isinstance(v, str) else v


def _cmp(op: str, a: Any, b: Any) -> bool:
    return {
        "$gt": a > b,
        "$gte": a >= b,
        "$lt": a < b,
        "$lte": a <= b,
    }[op]


def _field_value(rec: MemoryRecord, key: str) -> Any:
    return getattr(rec, key)


def _eval_op(rec: MemoryRecord, key: str, op: str, val: Any) -> bool:
    if op == "$ne":
        return not _eval_op(rec, key, "$eq", val)
    if op == "$nin":
        return not _eval_op(rec, key, "$in", val)
    if key == "tags":
        tags = set(rec.tags)
        if op == "$eq":
            return val in tags
        if op == "$contains":
            return all(t in tags for t in (val if isinstance(val, list) else [val]))
        if op == "$in":
            return any(t in tags for t in val)
        if op == "$exists":
            return bool(tags) == val
        raise AssertionError(op)
    if op == "$in":
        return any(_eval_op(rec, key, "$eq", x) for x in val)
    if key.startswith("metadata."):
        actual = _lookup(rec.metadata, key[len("metadata.") :])
        if op == "$exists":
            return (actual is not MISSING) == val
        if op == "$eq":
            if val is None:
                return actual is MISSING or actual is None
            return actual is not MISSING and _json_eq(actual, val)
        if op == "$contains":
            return isinstance(actual, list) and any(_json_eq(x, val) for x in actual)
        return _is_num(actual) and _cmp(op, actual, val)
    actual = _field_value(rec, key)
    if op == "$exists":
        return (actual is not None) == val
    if key == "occurred_at":
        val = _as_dt(val)
    if op == "$eq":
        return actual is None if val is None else (actual is not None and actual == val)
    return actual is not None and _cmp(op, actual, val)


def evaluate(rec: MemoryRecord, flt: dict[str, Any]) -> bool:
    """The documented meaning of a filter, in plain Python."""
    for key, value in flt.items():
        if key == "$and":
            ok = all(evaluate(rec, f) for f in value)
        elif key == "$or":
            ok = any(evaluate(rec, f) for f in value)
        elif key == "$not":
            ok = not evaluate(rec, value)
        elif isinstance(value, dict) and any(k.startswith("$") for k in value):
            ok = all(_eval_op(rec, key, op, operand) for op, operand in value.items())
        elif key == "tags" and not isinstance(value, list):
            ok = _eval_op(rec, key, "$contains", value)
        else:
            ok = _eval_op(rec, key, "$eq", value)
        if not ok:
            return False
    return True


def _live(rec: MemoryRecord, now: datetime) -> bool:
    return rec.expires_at is None or rec.expires_at > now


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(records, min_size=1, max_size=14),
    flts=st.lists(filters, min_size=1, max_size=3),
    include_expired=st.booleans(),
)
def test_filters_match_reference(
    mem: Memory, rows: list[dict[str, Any]], flts: list[dict[str, Any]], include_expired: bool
) -> None:
    view = mem.with_namespace(f"p{next(_ns)}")
    items = [{**r, "text": f"record number {i} of the set"} for i, r in enumerate(rows)]
    stored = [view.get(r.id or "") for r in view.add(items)]
    assert len({r.id for r in stored}) == len(rows)
    now = datetime.now(UTC)
    for flt, gated in itertools.product(flts, (True, False)):
        want = {r.id for r in stored if evaluate(r, flt) and (include_expired or _live(r, now))}
        # SQLite starts reads of a rare tag or metadata value from its index; also check the
        # other path.
        with _value_index_gates(gated):
            listed = [r.id for r in view.list(flt, limit=1000, include_expired=include_expired)]
            assert set(listed) == want, flt
            assert listed == sorted(listed)
            assert view.count(flt, include_expired=include_expired) == len(want), flt
            for mode in ("vector", "keyword"):
                hits = view.search(
                    "record set",
                    mode=mode,
                    filters=flt,
                    top_k=1000,
                    include_expired=include_expired,
                )
                assert {h.record.id for h in hits} == want, (mode, flt)
                assert len(hits) == len(want)


@contextmanager
def _value_index_gates(on: bool) -> Iterator[None]:
    """With ``on`` False no tag or metadata value is rare enough for SQLite to read from
    its index."""
    from engramdb.stores.sqlite import gates

    saved = gates.TAG_GATE, gates.LIST_TAG_GATE
    if not on:
        gates.TAG_GATE = gates.LIST_TAG_GATE = -1
    try:
        yield
    finally:
        gates.TAG_GATE, gates.LIST_TAG_GATE = saved


def test_required_equalities_are_only_the_conditions_every_match_meets() -> None:
    from engramdb.query.filters import parse, required_equalities

    scopes = frozenset({"user_id", "thread_id"})
    both = parse({"$and": [{"user_id": "a"}, {"$and": [{"thread_id": "t"}, {"type": "x"}]}]})
    assert required_equalities(both, scopes) == {("user_id", "a"), ("thread_id", "t")}
    either = parse({"$or": [{"user_id": "a"}, {"user_id": "b"}]})
    assert required_equalities(either, scopes) == set()
    assert required_equalities(parse({"$not": {"user_id": "a"}}), scopes) == set()
    assert required_equalities(parse({"user_id": {"$ne": "a"}}), scopes) == set()
    assert required_equalities(parse({"user_id": None}), scopes) == set()
    assert required_equalities(None, scopes) == set()


def test_required_tags_are_only_the_tags_every_match_carries() -> None:
    from engramdb.query.filters import parse, required_tags

    assert required_tags(parse({"tags": "b"})) == ["b"]
    assert required_tags(parse({"$and": [{"tags": {"$contains": ["c", "a"]}}, {"tags": "b"}]})) == [
        "a",
        "b",
        "c",
    ]
    assert required_tags(parse({"$or": [{"tags": "a"}, {"tags": "b"}]})) == []
    assert required_tags(parse({"$not": {"tags": "a"}})) == []
    assert required_tags(parse({"tags": {"$in": ["a"]}})) == []
    assert required_tags(parse({"tags": {"$nin": ["a"]}})) == []
    assert required_tags(None) == []
