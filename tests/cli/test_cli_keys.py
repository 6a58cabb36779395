"""``engramdb keys``: create, list, revoke and audit on the store file directly."""

from __future__ import annotations

from engramdb import HashEmbedder, Memory, Settings
from engramdb.ops.keys import KeyService

from .conftest import Run, err_json, out_json


def test_keys_create_list_revoke_and_audit(run: Run, db_url: str) -> None:
    made = out_json(run("keys", "create", "--namespace", "team-a", "--read-only", "--json"))
    assert made["namespace"] == "team-a" and made["read_only"] is True and not made["admin"]
    assert made["key"].startswith(f"ek_{made['id']}_")
    admin = out_json(run("keys", "create", "--admin", "--json"))
    assert admin["admin"] is True and admin["namespace"] is None
    listed = out_json(run("keys", "list", "--json"))
    assert [k["id"] for k in listed] == [made["id"], admin["id"]]
    assert all("key" not in k for k in listed)
    human = run("keys", "list")
    assert human.exit_code == 0 and made["id"] in human.stdout and made["key"] not in human.stdout
    # The key works for a service over the same file, until the CLI revokes it.
    mem = Memory(db_url, embedder=HashEmbedder(384), settings=Settings())
    try:
        keys = KeyService.of(mem)
        assert keys.authenticate(made["key"]).namespace == "team-a"
        revoked = out_json(run("keys", "revoke", made["id"], "--json"))
        assert revoked["revoked_at"] is not None
        assert keys.list_keys()[0].revoked_at is not None
    finally:
        mem.close()
    missing = run("--json", "keys", "revoke", "0123456789abcdef")
    assert missing.exit_code == 3 and err_json(missing)["error"] == "not_found"
    audit = out_json(run("keys", "audit", "--json"))
    assert [(e["key_id"], e["action"], e["result"]) for e in audit] == [
        ("cli", "revoke_key", "failed"),
        ("cli", "revoke_key", "ok"),
        ("cli", "create_key", "ok"),
        ("cli", "create_key", "ok"),
    ]


def test_keys_create_refuses_bad_arguments(run: Run) -> None:
    for args in (
        ["keys", "create"],
        ["keys", "create", "--namespace", "bad namespace"],
        ["keys", "create", "--admin", "--namespace", "x"],
        ["keys", "create", "--admin", "--read-only"],
    ):
        result = run("--json", *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert err_json(result)["error"] == "validation_error"
    assert out_json(run("keys", "list", "--json")) == []
