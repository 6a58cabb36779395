"""Idempotency keys on every backend (the IdempotencyStore role, migration 0017).

Two handles on one store stand for two service processes: a key one claims, the other must
find claimed (and then answered); a claim whose lease ran out, or a released one, is free.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engramdb import Memory, Settings
from engramdb.ops.idempotency import IdempotencyService
from engramdb.stores import open_store
from engramdb.stores.base import IdempotencyStore


@pytest.fixture
def first(mem: Memory) -> IdempotencyService:
    service = IdempotencyService.of(mem, ttl_s=3600, lease_s=600)
    assert service is not None
    return service


@pytest.fixture
def second(store_url: str, mem: Memory) -> Iterator[IdempotencyService]:
    """Another handle on the same store (another worker process's view of it)."""
    store = open_store(store_url, Settings())
    assert isinstance(store, IdempotencyStore)
    yield IdempotencyService(store, ttl_s=3600, lease_s=600)
    store.close()


def test_both_stores_fill_the_idempotency_role(mem: Memory) -> None:
    assert isinstance(mem.engine.store, IdempotencyStore)


def test_one_claim_wins_and_the_other_process_gets_the_answer(
    first: IdempotencyService, second: IdempotencyService
) -> None:
    assert first.claim("k1") is None  # first claim: run the request
    running = second.claim("k1")
    assert running is not None and not running.done
    first.finish("k1", 201, [("content-type", "application/json")], b'{"id": "r1"}')
    answered = second.claim("k1")
    assert answered is not None and answered.done
    assert (answered.status, answered.body) == (201, b'{"id": "r1"}')
    assert second.state("k1") == answered
    assert first.claim("k2") is None  # another key is its own


def test_a_released_or_expired_claim_is_free_again(
    first: IdempotencyService, second: IdempotencyService
) -> None:
    assert first.claim("gone") is None
    first.release("gone")
    assert second.state("gone") is None
    assert second.claim("gone") is None  # the retry of a failed request runs
    lapsed = IdempotencyService(first.store, ttl_s=0, lease_s=0)
    assert lapsed.claim("dead") is None  # a lease of 0: its process counts as dead at once
    assert second.claim("dead") is None
    lapsed.finish("old", 200, [], b"x")  # nothing claimed "old": no row is written
    assert second.state("old") is None
    assert lapsed.claim("short") is None
    lapsed.finish("short", 200, [], b"x")  # kept 0 s: expired at once
    assert second.state("short") is None
    assert first.store.purge_idempotency(2**62) >= 1
