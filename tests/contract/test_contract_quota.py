"""Contract: a namespace quota (``namespace_max_records``) is all-or-nothing per write."""

from __future__ import annotations

import pytest

from engramdb import HashEmbedder, Memory, QuotaExceededError, Settings
from engramdb.errors import ConflictError, status_for


def _open(url: str, quota: int) -> Memory:
    return Memory(url, embedder=HashEmbedder(64), settings=Settings(namespace_max_records=quota))


def test_quota_stops_the_write_that_would_pass_it(store_url: str) -> None:
    mem = _open(store_url, 5)
    try:
        mem.add(["one", "two", "three"])
        mem.add(["four", "five"])
        with pytest.raises(QuotaExceededError) as info:
            mem.add("six")
        err = info.value
        assert isinstance(err, ConflictError) and status_for(err) == 409
        assert err.details == {"namespace": "default", "limit": 5, "records": 5, "adding": 1}
        assert "namespace_max_records=5" in err.message
        # A batch that would pass the quota writes nothing, not the part that fits.
        mem.delete(mem.add("one")[0].id or "")  # "one" deduplicated: nothing added
        with pytest.raises(QuotaExceededError):
            mem.add(["seven", "eight"])
        assert mem.count() == 4
        assert sorted(r.text for r in mem.list().records) == ["five", "four", "three", "two"]
        # Duplicates add nothing, so they pass at the quota; a deleted record frees its place.
        mem.add("nine")
        assert mem.add("two")[0].outcome == "deduplicated"
        with pytest.raises(QuotaExceededError):
            mem.add_messages("t", [{"role": "user", "content": "a message is a record too"}])
        assert mem.events("t") == []  # its event rolled back with it
    finally:
        mem.close()


def test_quota_is_per_namespace_and_off_by_default(store_url: str) -> None:
    mem = _open(store_url, 2)
    other = Memory(
        store_url,
        namespace="other",
        embedder=HashEmbedder(64),
        settings=Settings(namespace_max_records=2),
    )
    free = Memory(store_url, namespace="free", embedder=HashEmbedder(64))
    try:
        mem.add(["a", "b"])
        other.add(["a", "b"])  # the same texts in another namespace have their own quota
        free.add([f"t{i}" for i in range(5)])
        assert (mem.count(), other.count(), free.count()) == (2, 2, 5)
    finally:
        mem.close()
        other.close()
        free.close()
