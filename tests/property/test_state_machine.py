"""K1: a hypothesis state machine against an in-memory model, replayed across restarts.

Rules: add, batch add, update, delete, search (exact top-k vs brute force on the embedder's
own vectors), namespaces and RESTART (close and reopen on the same file).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
)

from engramdb import ConflictError, HashEmbedder, Memory, NotFoundError, Settings

WORDS = ["red", "green", "blue", "cat", "dog", "sun", "moon", "tea", "rain", "snow"]
NAMESPACES = ["ns1", "ns2"]
USERS = ["u1", "u2"]
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)


@dataclass
class Rec:
    namespace: str
    user: str
    text: str
    version: int = 1


class MemoryMachine(RuleBasedStateMachine):
    """The model: a dict of live records keyed by (namespace, id), plus deleted ids."""

    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="engram-k1-"))
        self.url = f"sqlite:///{self.dir / 'k1.db'}"
        self.embedder = HashEmbedder(64)
        self.mem = self._open()
        self.model: dict[tuple[str, str], Rec] = {}
        self.deleted: set[tuple[str, str]] = set()

    def _open(self) -> Memory:
        return Memory(self.url, embedder=self.embedder, settings=Settings())

    def view(self, ns: str) -> Memory:
        return self.mem.with_namespace(ns)

    def _dup(self, ns: str, user: str, text: str) -> str | None:
        for (n, rid), r in self.model.items():
            if n == ns and r.user == user and r.text == text:
                return rid
        return None

    def _expect_add(self, ns: str, user: str, text: str, rid: str | None, outcome: str) -> None:
        existing = self._dup(ns, user, text)
        if existing is not None:
            assert outcome == "deduplicated" and rid == existing
        else:
            assert outcome == "written" and rid is not None
            assert (ns, rid) not in self.model
            self.model[(ns, rid)] = Rec(ns, user, text)

    @rule(target=ids, ns=st.sampled_from(NAMESPACES), user=st.sampled_from(USERS), text=texts)
    def add(self, ns: str, user: str, text: str) -> tuple[str, str]:
        res = self.view(ns).add(text, user_id=user)[0]
        self._expect_add(ns, user, text, res.id, res.outcome)
        return (ns, res.id or "")

    @rule(
        target=ids,
        ns=st.sampled_from(NAMESPACES),
        batch=st.lists(st.tuples(st.sampled_from(USERS), texts), min_size=1, max_size=6),
    )
    def add_batch(self, ns: str, batch: list[tuple[str, str]]) -> object:
        res = self.view(ns).add([{"text": t, "user_id": u} for u, t in batch])
        assert [r.index for r in res] == list(range(len(batch)))
        for (user, text), r in zip(batch, res, strict=True):
            self._expect_add(ns, user, text, r.id, r.outcome)
        return multiple(*[(ns, r.id or "") for r in res])

    @rule(key=ids, text=texts)
    def update(self, key: tuple[str, str], text: str) -> None:
        ns, rid = key
        rec = self.model.get(key)
        if rec is None:
            with pytest.raises(NotFoundError):
                self.view(ns).update(rid, text=text)
            return
        dup = self._dup(ns, rec.user, text)
        if dup is not None and dup != rid:
            with pytest.raises(ConflictError):
                self.view(ns).update(rid, text=text)
            return
        out = self.view(ns).update(rid, text=text, expected_version=rec.version)
        rec.text, rec.version = text, rec.version + 1
        assert out.text == text and out.version == rec.version

    @rule(key=consumes(ids))
    def delete(self, key: tuple[str, str]) -> None:
        ns, rid = key
        if key in self.model:
            self.view(ns).delete(rid)
            del self.model[key]
            self.deleted.add(key)
        else:
            with pytest.raises(NotFoundError):
                self.view(ns).delete(rid)

    @rule(ns=st.sampled_from(NAMESPACES), query=texts, k=st.integers(1, 8), scoped=st.booleans())
    def search(self, ns: str, query: str, k: int, scoped: bool) -> None:
        user = "u1" if scoped else None
        live = [
            (rid, r)
            for (n, rid), r in self.model.items()
            if n == ns and (user is None or r.user == user)
        ]
        hits = self.view(ns).search(query, mode="vector", top_k=k, user_id=user).hits
        assert len(hits) == min(k, len(live))
        if not live:
            return
        q = self.embedder.embed([query], query=True)[0].astype(np.float64)
        vecs = self.embedder.embed([r.text for _, r in live]).astype(np.float64)
        truth = {rid: float(v @ q) for (rid, _), v in zip(live, vecs, strict=True)}
        ranked = sorted(truth.values(), reverse=True)
        got = [h.score for h in hits]
        assert np.allclose(got, ranked[: len(hits)], atol=1e-5)
        for h in hits:
            assert h.record.namespace == ns
            assert h.score == pytest.approx(truth[h.record.id], abs=1e-5)
            assert h.record.text == self.model[(ns, h.record.id)].text

    @rule()
    def namespaces(self) -> None:
        want: dict[str, int] = {}
        for ns, _ in self.model:
            want[ns] = want.get(ns, 0) + 1
        got = {ns: n for ns, n in self.mem.namespaces().items() if n}
        assert got == want

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def restart(self) -> None:
        self.mem.close()
        self.mem = self._open()

    @invariant()
    def agrees_with_model(self) -> None:
        for ns in NAMESPACES:
            view = self.view(ns)
            recs = view.list(limit=1000).records
            ids = [r.id for r in recs]
            assert len(ids) == len(set(ids))
            want = {rid: r for (n, rid), r in self.model.items() if n == ns}
            assert set(ids) == set(want)
            assert view.count() == len(want)
            for r in recs:
                m = want[r.id]
                assert (r.text, r.user_id, r.version) == (m.text, m.user, m.version)

    def teardown(self) -> None:
        try:
            for ns, rid in self.deleted:
                if (ns, rid) not in self.model:
                    with pytest.raises(NotFoundError):
                        self.view(ns).get(rid)
            assert self.mem.doctor()["ok"]
        finally:
            self.mem.close()
            shutil.rmtree(self.dir, ignore_errors=True)


MemoryMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMemoryMachine = MemoryMachine.TestCase
