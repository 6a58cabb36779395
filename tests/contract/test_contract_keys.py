"""Service keys and the admin audit log on every backend (the KeyStore role).

Two handles on one store stand for two service processes: what one writes (a new key, a
revocation) the other must act on with its very next check.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engramdb import AuthenticationError, HashEmbedder, Memory, NotFoundError, Settings
from engramdb import ValidationError as EngramValidationError
from engramdb.ops.keys import ENV_ADMIN_ID, KeyService
from engramdb.stores import open_store
from engramdb.stores.base import KeyStore


@pytest.fixture
def keys(mem: Memory) -> KeyService:
    return KeyService.of(mem)


@pytest.fixture
def second(store_url: str, mem: Memory) -> Iterator[KeyService]:
    """Another handle on the same store (another process's view of it)."""
    store = open_store(store_url, Settings())
    yield KeyService(store)
    store.close()


def test_both_stores_fill_the_key_store_role(mem: Memory) -> None:
    assert isinstance(mem.engine.store, KeyStore)


def test_a_key_is_stored_hashed_and_checked_in_another_process(
    keys: KeyService, second: KeyService
) -> None:
    made = keys.create("team-a", read_only=True)
    assert made.key.startswith(f"ek_{made.row.id}_")
    listed = second.list_keys()
    assert [k.id for k in listed] == [made.row.id]
    assert listed[0].secret_hash == hashlib.sha256(made.key.encode()).hexdigest()
    assert made.key not in repr(listed)
    who = second.authenticate(made.key)
    assert (who.key_id, who.namespace, who.read_only, who.admin) == (
        made.row.id,
        "team-a",
        True,
        False,
    )


def test_wrong_forged_and_malformed_keys_are_refused(keys: KeyService) -> None:
    made = keys.create("team-a")
    forged = made.key[:-4] + ("AAAA" if not made.key.endswith("AAAA") else "BBBB")
    for bad in (forged, "ek_" + "0" * 16 + "_" + "x" * 43, "not-a-key", "", made.key + "\n"):
        with pytest.raises(AuthenticationError) as err:
            keys.authenticate(bad)
        assert made.key not in str(err.value)


def test_a_revocation_holds_at_once_in_every_process(keys: KeyService, second: KeyService) -> None:
    made = keys.create("team-a")
    assert second.authenticate(made.key).namespace == "team-a"
    revoked = keys.revoke(made.row.id)
    assert revoked.revoked_at is not None
    with pytest.raises(AuthenticationError, match="revoked"):
        second.authenticate(made.key)
    again = second.revoke(made.row.id)  # a second revocation keeps the first time
    assert again.revoked_at == revoked.revoked_at
    with pytest.raises(NotFoundError):
        keys.revoke("0123456789abcdef")
    with pytest.raises(NotFoundError):
        keys.revoke(ENV_ADMIN_ID)


def test_a_cached_check_never_outlives_a_revocation(
    keys: KeyService, second: KeyService, store_url: str
) -> None:
    """``cached`` answers only while nothing was committed since the key was read; a
    revocation by another handle, or another process, sends the next check to the store."""
    made = keys.create("team-a")
    assert second.cached(made.key) is None  # never checked by this handle: nothing to reuse
    assert second.authenticate(made.key).namespace == "team-a"
    hit = second.cached(made.key)
    if store_url.startswith("sqlite"):
        assert hit is not None and (hit.key_id, hit.namespace) == (made.row.id, "team-a")
    else:
        assert hit is None  # PostgreSQL has no change counter: every check reads
    keys.revoke(made.row.id)
    assert second.cached(made.key) is None
    with pytest.raises(AuthenticationError, match="revoked"):
        second.authenticate(made.key)
    assert second.cached(made.key) is None
    # The same through a revocation made by another OS process.
    other = keys.create("team-b")
    assert second.authenticate(other.key).namespace == "team-b"
    script = (
        "import sys; from engramdb import Settings; from engramdb.ops.keys import open_keys\n"
        "with open_keys(Settings(url=sys.argv[1])) as k: k.revoke(sys.argv[2])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, store_url, other.row.id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert second.cached(other.key) is None
    with pytest.raises(AuthenticationError, match="revoked"):
        second.authenticate(other.key)


def test_a_key_may_name_a_namespace_that_holds_nothing(keys: KeyService, mem: Memory) -> None:
    assert "empty-yet" not in mem.namespaces()
    made = keys.create("empty-yet")
    assert keys.authenticate(made.key).namespace == "empty-yet"
    for bad in ("bad namespace", "ns\n", "", "x" * 200):
        with pytest.raises(EngramValidationError):
            keys.create(bad)
    with pytest.raises(EngramValidationError):
        keys.create(None)
    with pytest.raises(EngramValidationError):
        keys.create("team-a", admin=True)


def test_one_admin_key_is_made_for_a_store_without_one(
    keys: KeyService, second: KeyService
) -> None:
    made = keys.ensure_admin_key()
    assert made is not None and made.row.admin
    assert second.ensure_admin_key() is None  # another process finds it
    assert keys.ensure_admin_key() is None
    assert second.authenticate(made.key).admin
    keys.revoke(made.row.id)
    replacement = second.ensure_admin_key()  # none in force: a new one
    assert replacement is not None and replacement.key != made.key


def test_an_admin_key_from_the_settings_makes_none_in_the_store(mem: Memory) -> None:
    secret = "settings-admin-key-0123456789"
    keys = KeyService(mem.engine.store, secret)
    assert keys.ensure_admin_key() is None
    assert keys.list_keys() == []
    assert keys.authenticate(secret).key_id == ENV_ADMIN_ID
    with pytest.raises(EngramValidationError, match="ENGRAM_ADMIN_KEY"):
        KeyService(mem.engine.store, "short")


def test_the_audit_log_pages_newest_first(keys: KeyService, second: KeyService) -> None:
    for i in range(5):
        keys.audit("k1", "forget", f"ns{i}", 200, {"i": i})
    second.audit("k2", "restore", None, 503)
    page = second.audit_log(limit=4)
    assert [(e.action, e.target, e.result) for e in page[:2]] == [
        ("restore", None, "failed"),
        ("forget", "ns4", "ok"),
    ]
    rest = keys.audit_log(limit=4, before=page[-1].seq)
    assert [e.target for e in rest] == ["ns1", "ns0"]
    assert rest[0].details == '{"i": 1}'
    with pytest.raises(EngramValidationError):
        keys.audit_log(limit=0)


def test_restore_keeps_the_keys_and_the_audit_log_in_force(
    keys: KeyService, mem: Memory, tmp_path: Path, store_url: str
) -> None:
    old = keys.create("team-a")
    mem.with_namespace("team-a").add("kept by the backup")
    backup = tmp_path / "backup.bin"
    mem.backup(backup)
    keys.revoke(old.row.id)  # after the backup: must stay revoked
    new = keys.create("team-b")  # after the backup: must stay valid
    keys.audit("k1", "forget", "team-a", 200)
    mem.with_namespace("team-a").add("dropped by the restore")
    mem.restore(backup)
    assert mem.with_namespace("team-a").count() == 1
    with pytest.raises(AuthenticationError, match="revoked"):
        keys.authenticate(old.key)
    assert keys.authenticate(new.key).namespace == "team-b"
    assert [e.action for e in keys.audit_log()] == ["forget"]
    # And through a fresh handle, as a restarted service would see it.
    other = Memory(store_url, embedder=HashEmbedder(384), settings=Settings())
    try:
        assert KeyService.of(other).authenticate(new.key).namespace == "team-b"
    finally:
        other.close()


def test_a_principal_says_what_it_may_do(keys: KeyService) -> None:
    """The one check every surface (REST, ZeroMQ, MCP) asks of a key."""
    from engramdb import PermissionDeniedError

    admin = keys.authenticate(keys.create(None, admin=True).key)
    own = keys.authenticate(keys.create("team-a").key)
    ro = keys.authenticate(keys.create("team-a", read_only=True).key)
    for ns, write in (("team-a", True), ("team-b", True), (None, False)):
        admin.require(ns, write)
    own.require("team-a", write=True)
    ro.require("team-a", write=False)
    for who, ns, write in (
        (own, "team-b", False),
        (own, "team-a\n", False),
        (own, None, False),
        (ro, "team-a", True),
        (ro, "team-b", False),
    ):
        with pytest.raises(PermissionDeniedError):
            who.require(ns, write)
