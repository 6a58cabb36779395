"""Each legacy source adapter against data made by the real tool, with a bad item in each.

Every source goes into a real SQLite store (hash embedder); the bad item is skipped, logged
with its source id and reason, and counted; the rest land with their provenance.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from chroma_helpers import CHROMA_MAPPING, build_chroma
from redis_server import RedisServer

from engramdb import HashEmbedder, Memory, MemoryRecord, Settings, ValidationError
from engramdb.ops.legacy import derived_id, migrate_legacy
from engramdb.ops.sources import open_source

EMB = HashEmbedder(384)


def run(
    source: str, tmp_path: Path, mapping: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    """Migrate into a SQLite store in ``tmp_path``, logging skips to ``tmp_path/skips.log``."""
    return migrate_legacy(
        source,
        f"sqlite:///{tmp_path / 'target.db'}",
        mapping=mapping,
        embedder=EMB,
        settings=Settings(),
        log_file=str(tmp_path / "skips.log"),
        **kw,
    )


def records(tmp_path: Path, namespace: str) -> dict[str, MemoryRecord]:
    """The target's records of ``namespace``, by their provenance."""
    with Memory(f"sqlite:///{tmp_path / 'target.db'}", embedder=EMB, namespace=namespace) as mem:
        return {r.metadata["migrated_from"]: r for r in mem.list(limit=1000)}


def log_lines(tmp_path: Path) -> list[list[str]]:
    """The skip log, split into fields."""
    return [line.split("\t") for line in (tmp_path / "skips.log").read_text().splitlines()]


def test_chroma_collections_land_in_namespaces_of_their_names(tmp_path: Path) -> None:
    import chromadb

    docs = build_chroma(tmp_path / "chroma", 12)
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    # The bad item: an id with a vector and metadata but no document.
    client.get_collection("notes", embedding_function=None).add(
        ids=["notes-empty"],
        embeddings=[EMB.embed(["x"])[0].tolist()],
        metadatas=[{"user_id": "ana"}],
    )
    report = run(f"chroma://{tmp_path}/chroma", tmp_path, CHROMA_MAPPING, sample_size=24)
    assert report["written"] == 24 and report["read"] == 25
    assert report["skipped"]["count"] == 1
    assert log_lines(tmp_path)[0][2:] == [
        "chroma:notes/notes-empty",
        "no text (field '$document' is missing or empty)",
    ]
    assert report["embeddings_used"] == {"reused": 24, "recomputed": 0}
    assert report["validation"]["ok"] and report["validation"]["sample"]["first_by_own_text"] == 24
    notes = records(tmp_path, "notes")
    rec = notes["chroma:notes/notes-3"]
    assert rec.id == derived_id("chroma:notes/notes-3")
    assert rec.text == docs["notes"][3] and rec.user_id == "dara"
    assert rec.metadata["topic"] == "t0" and "migrated_at" in rec.metadata
    assert int(rec.occurred_at.timestamp()) == 1_700_000_003
    assert set(records(tmp_path, "prefs")) == {f"chroma:prefs/prefs-{i}" for i in range(12)}


def test_chroma_one_collection_into_a_chosen_namespace(tmp_path: Path) -> None:
    build_chroma(tmp_path / "chroma", 5)
    report = run(
        f"chroma://{tmp_path}/chroma?collection=prefs", tmp_path, CHROMA_MAPPING, namespace="mine"
    )
    assert report["written"] == 5 and list(report["validation"]["namespaces"]) == ["mine"]
    assert len(records(tmp_path, "mine")) == 5
    with pytest.raises(ValidationError, match="not found"):
        run(f"chroma://{tmp_path}/chroma?collection=nope", tmp_path, CHROMA_MAPPING)


def test_chroma_without_a_stated_model_recomputes_vectors(tmp_path: Path) -> None:
    build_chroma(tmp_path / "chroma", 4, ("solo",))
    report = run(f"chroma://{tmp_path}/chroma", tmp_path)  # built-in mapping, no model stated
    assert report["embeddings"]["policy"] == "recompute"
    assert "does not say" in report["embeddings"]["why"]
    assert report["embeddings_used"] == {"reused": 0, "recomputed": 4}


def test_jsonl_with_a_mapping_and_bad_lines(tmp_path: Path) -> None:
    src = tmp_path / "history.jsonl"
    lines = [
        json.dumps(
            {
                "id": f"m{i}",
                "content": f"turn {i} about the garden",
                "session_id": "s1",
                "user_id": "ana",
                "created_at": f"2024-01-0{i + 1} 10:00:00",
                "role": "user",
            }
        )
        for i in range(5)
    ]
    lines.insert(2, "{not json")
    lines.append(json.dumps({"id": "m9", "content": "dated badly", "created_at": "someday"}))
    src.write_text("\n".join(lines) + "\n")
    mapping = {
        "text": "content",
        "id": "id",
        "user_id": "user_id",
        "thread_id": "session_id",
        "occurred_at": "created_at",
        "metadata": ["role"],
        "timezone": "Europe/Berlin",
    }
    report = run(f"jsonl://{src}", tmp_path, mapping)
    assert report["written"] == 5 and report["skipped"]["count"] == 2
    reasons = {row[2]: row[3] for row in log_lines(tmp_path)}
    assert reasons["jsonl:history/line 3"].startswith("not JSON")
    assert reasons["jsonl:history/m9"].startswith("bad date in 'created_at'")
    rec = records(tmp_path, "history")["jsonl:history/m0"]
    assert rec.thread_id == "s1" and rec.metadata["role"] == "user"
    assert rec.occurred_at.isoformat() == "2024-01-01T09:00:00+00:00"  # Berlin is UTC+1


def test_a_mapping_naming_a_missing_field_fails_the_dry_run(tmp_path: Path) -> None:
    src = tmp_path / "a.jsonl"
    src.write_text(json.dumps({"content": "x", "user": "u"}) + "\n")
    with pytest.raises(ValidationError, match=r"\['session'\]") as err:
        run(f"jsonl://{src}", tmp_path, {"text": "content", "thread_id": "session"}, dry_run=True)
    assert err.value.details["field"] == "session"
    ok = run(f"jsonl://{src}", tmp_path, {"text": "content", "user_id": "user"}, dry_run=True)
    assert ok["to_write"] == 1 and not (tmp_path / "target.db").exists()


def test_json_object_holding_an_array(tmp_path: Path) -> None:
    src = tmp_path / "export.json"
    items = [{"key": f"k{i}", "body": f"fact number {i}", "owner": "bo"} for i in range(3)]
    items.append({"key": "k3", "owner": "bo"})  # no text
    src.write_text(json.dumps({"version": 2, "memories": items}))
    report = run(f"json://{src}", tmp_path, {"text": "body", "id": "key", "user_id": "owner"})
    assert report["written"] == 3 and report["skipped"]["count"] == 1
    assert log_lines(tmp_path)[0][2] == "json:export/k3"


def test_mem0_get_all_output_with_its_builtin_mapping(tmp_path: Path) -> None:
    src = tmp_path / "mem0.json"
    results = [
        {
            "id": str(uuid.UUID(int=i)),
            "memory": f"Likes {food}",
            "hash": "h",
            "metadata": {"category": "food", "score": i},
            "user_id": "alice",
            "agent_id": None,
            "run_id": "r1" if i else None,
            "created_at": "2024-05-01T10:00:00.123456-07:00",
            "updated_at": None,
        }
        for i, food in enumerate(["pizza", "sushi", "ramen"])
    ]
    results.append({"id": "broken", "memory": None, "user_id": "alice", "created_at": None})
    src.write_text(json.dumps({"results": results}))
    report = run(f"mem0://{src}", tmp_path)
    assert report["written"] == 3 and report["skipped"]["count"] == 1
    recs = records(tmp_path, "mem0")
    rec = recs[f"mem0:mem0/{uuid.UUID(int=1)}"]
    assert rec.text == "Likes sushi" and rec.user_id == "alice" and rec.thread_id == "r1"
    assert rec.metadata["category"] == "food" and rec.metadata["score"] == 1
    assert rec.occurred_at.isoformat() == "2024-05-01T17:00:00.123456+00:00"


def _conversation_rows() -> list[tuple[Any, ...]]:
    return [
        (
            i,
            f"sess-{i % 2}",
            f"user{i % 3}",
            "user" if i % 2 else "assistant",
            f"message {i} about the trip",
            f"2024-02-0{i + 1} 08:30:00",
        )
        for i in range(6)
    ] + [
        (6, "sess-0", "user0", "user", None, "2024-02-09 08:30:00"),
        (7, "sess-1", "user1", "user", "late message", "not a date"),
    ]


SQL_MAPPING = {
    "table": "conversation_history",
    "text": "content",
    "id": "id",
    "user_id": "user_id",
    "thread_id": "session_id",
    "occurred_at": "created_at",
    "type": {"value": "message"},
    "metadata": ["role"],
}


def test_sql_sqlite_legacy_table(tmp_path: Path) -> None:
    db = tmp_path / "legacy.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE conversation_history (id INTEGER PRIMARY KEY, session_id TEXT, "
            "user_id TEXT, role TEXT, content TEXT, created_at TEXT)"
        )
        conn.executemany(
            "INSERT INTO conversation_history VALUES (?,?,?,?,?,?)", _conversation_rows()
        )
    report = run(f"sql:sqlite:///{db}", tmp_path, SQL_MAPPING)
    assert report["written"] == 6 and report["skipped"]["count"] == 2
    assert {row[2] for row in log_lines(tmp_path)} == {
        "sql:conversation_history/6",
        "sql:conversation_history/7",
    }
    rec = records(tmp_path, "conversation_history")["sql:conversation_history/3"]
    assert (rec.type, rec.thread_id, rec.user_id, rec.metadata["role"]) == (
        "message",
        "sess-1",
        "user0",
        "user",
    )
    query = {
        **SQL_MAPPING,
        "table": None,
        "query": "SELECT * FROM conversation_history WHERE id < 3 ORDER BY id",
        "collection": "recent",
    }
    del query["table"]
    again = migrate_legacy(
        f"sql:sqlite:///{db}",
        f"sqlite:///{tmp_path / 'q.db'}",
        mapping=query,
        embedder=EMB,
        log_file=None,
    )
    assert again["written"] == 3 and list(again["namespaces"]) == ["recent"]
    with pytest.raises(ValidationError, match="no table 'nope'"):
        run(f"sql:sqlite:///{db}", tmp_path, {**SQL_MAPPING, "table": "nope"})
    with pytest.raises(ValidationError, match="'table' or a 'query'"):
        run(f"sql:sqlite:///{db}", tmp_path, {"text": "content"})


@pytest.mark.postgres
def test_sql_postgresql_legacy_table(tmp_path: Path, postgres_db_url: str) -> None:
    table = f"conversation_history_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_db_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, session_id TEXT, user_id TEXT, "
            "role TEXT, content TEXT, created_at TIMESTAMP)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} VALUES (%s,%s,%s,%s,%s,%s)",
                [r if i < 7 else (*r[:5], None) for i, r in enumerate(_conversation_rows())],
            )
    try:
        report = run(f"sql:{postgres_db_url}", tmp_path, {**SQL_MAPPING, "table": table})
        assert report["written"] == 7 and report["skipped"]["count"] == 1
        assert log_lines(tmp_path)[0][2] == f"sql:{table}/6"
        rec = records(tmp_path, table)[f"sql:{table}/2"]
        assert rec.occurred_at.isoformat() == "2024-02-03T08:30:00+00:00"  # naive = UTC
        assert report["validation"]["ok"]
    finally:
        with psycopg.connect(postgres_db_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")


@pytest.mark.redis
def test_redis_lists_and_hashes_of_turns(tmp_path: Path, redis_server: RedisServer) -> None:
    with redis_server.client() as r:
        for thread in ("t1", "t2"):
            r.rpush(
                f"chat:{thread}",
                *[
                    json.dumps(
                        {
                            "role": "user",
                            "content": f"{thread} turn {i}",
                            "timestamp": 1_700_000_000 + i,
                        }
                    )
                    for i in range(3)
                ],
            )
        r.rpush("chat:t2", "not json")
        r.hset(
            "chat:t3",
            mapping={
                "0": json.dumps({"role": "assistant", "content": "hash turn 0"}),
                "1": json.dumps({"role": "user", "content": "hash turn 1"}),
            },
        )
        r.set("chat:odd", "a string key")
        r.rpush("other:x", json.dumps({"content": "not matched"}))
    report = run(f"{redis_server.url}?pattern=chat:*", tmp_path)
    assert report["written"] == 8 and report["skipped"]["count"] == 2
    assert {row[2] for row in log_lines(tmp_path)} == {"redis:chat/odd", "redis:chat/t2/3"}
    recs = records(tmp_path, "chat")
    assert recs["redis:chat/t1/2"].thread_id == "t1" and recs["redis:chat/t1/2"].type == "message"
    assert recs["redis:chat/t3/1"].text == "hash turn 1"
    assert recs["redis:chat/t3/1"].metadata["role"] == "user"
    assert int(recs["redis:chat/t2/1"].occurred_at.timestamp()) == 1_700_000_001


def test_firestore_export_with_parent_ids_and_timestamps(tmp_path: Path) -> None:
    def ts(seconds: int) -> dict[str, Any]:
        return {"__datatype__": "timestamp", "value": {"_seconds": seconds, "_nanoseconds": 5000}}

    export = {
        "__collections__": {
            "users": {
                uid: {
                    "name": uid.title(),
                    "__collections__": {
                        "memories": {
                            f"{uid}-m{i}": {
                                "text": f"{uid} memory {i}",
                                "createdAt": ts(1_700_000_000 + i),
                                "kind": "fact",
                                "__collections__": {},
                            }
                            for i in range(2)
                        },
                        "drafts": {"d1": {"text": "not this collection"}},
                    },
                }
                for uid in ("u1", "u2")
            },
            "teams": {"x": {"__collections__": {"memories": {"t": {"text": "other path"}}}}},
        }
    }
    export["__collections__"]["users"]["u2"]["__collections__"]["memories"]["bad"] = {
        "text": "bad time",
        "createdAt": {"__datatype__": "timestamp", "value": "never"},
    }
    src = tmp_path / "firestore.json"
    src.write_text(json.dumps(export))
    mapping = {
        "collection": "users/*/memories",
        "text": "text",
        "user_id": "$parent",
        "occurred_at": "createdAt",
        "metadata": ["kind"],
    }
    report = run(f"firestore-export://{src}", tmp_path, mapping)
    assert report["written"] == 4 and report["skipped"]["count"] == 1
    assert log_lines(tmp_path)[0][2] == "firestore-export:memories/users/u2/memories/bad"
    rec = records(tmp_path, "memories")["firestore-export:memories/users/u2/memories/u2-m1"]
    assert rec.user_id == "u2" and rec.metadata["kind"] == "fact"
    assert rec.occurred_at.isoformat() == "2023-11-14T22:13:21.000005+00:00"
    with pytest.raises(ValidationError, match="collection"):
        run(f"firestore-export://{src}", tmp_path, {"text": "text"})


def test_unknown_sources_and_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        open_source(f"jsonl://{tmp_path}/none.jsonl")
    with pytest.raises(ValidationError, match="does not exist"):
        open_source(f"chroma://{tmp_path}/none")
    (tmp_path / "x.jsonl").write_text("{}\n")
    with pytest.raises(ValidationError, match="needs a mapping"):
        run(f"jsonl://{tmp_path / 'x.jsonl'}", tmp_path)
    with pytest.raises(ValidationError, match="unsupported source"):
        open_source("mongodb://localhost/db")
