"""The store-owned write generation that guards cache entries, on every backend.

Every write transaction of a namespace raises that namespace's generation (and only
that namespace's, except store-wide operations), a rolled-back write does not, and
``restore`` moves it past every earlier value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engramdb import HashEmbedder, Memory, Settings
from engramdb.errors import ConflictError


@pytest.fixture
def pair(store_url: str) -> tuple[Memory, Memory]:
    base = Memory(store_url, embedder=HashEmbedder(64), settings=Settings(embedder="hash"))
    return base, base.with_namespace("other")


def gen(m: Memory) -> int:
    return m._engine.store.generation(m.namespace)


def test_every_write_raises_its_namespace_generation(pair: tuple[Memory, Memory]) -> None:
    mem, other = pair
    try:
        mem.add("seed", id="r0")
        writes: list[tuple[str, Callable[[], object]]] = [
            ("add", lambda: mem.add("one", id="r1")),
            ("add dedup", lambda: mem.add("one")),
            ("update", lambda: mem.update("r1", metadata={"a": 1})),
            ("delete", lambda: mem.delete("r1")),
            ("delete_all", lambda: mem.delete_all(all=True)),
            ("log_event", lambda: mem.log_event("t", "note", {})),
            ("add_messages", lambda: mem.add_messages("t", [{"role": "user", "content": "hi"}])),
            ("set_slots", lambda: mem.set_slots("t", {"a": 1})),
            ("forget", lambda: mem.forget(thread_id="t")),
        ]
        for name, write in writes:
            before, other_before = gen(mem), gen(other)
            write()
            assert gen(mem) > before, name
            assert gen(other) == other_before, name
        before = gen(mem)
        mem.set_slots("t", {"a": 2})
        with pytest.raises(ConflictError):
            mem.set_slots("t", {"a": 3}, expected_version=99)
        assert gen(mem) == before + 1  # the rolled-back write left it alone
    finally:
        mem.close()


def test_store_wide_writes_raise_every_generation(
    pair: tuple[Memory, Memory], tmp_path: Path
) -> None:
    mem, other = pair
    try:
        mem.add("a note", id="r1")
        mem.export(tmp_path / "out.jsonl")
        before = (gen(mem), gen(other))
        mem.import_(tmp_path / "out.jsonl")
        assert gen(mem) > before[0] and gen(other) > before[1]
    finally:
        mem.close()


def test_restore_moves_generations_past_every_earlier_value(
    pair: tuple[Memory, Memory], tmp_path: Path
) -> None:
    mem, _ = pair
    try:
        mem.add("one", id="r1")
        mem.backup(tmp_path / "b.bak")
        for i in range(5):
            mem.update("r1", metadata={"i": i})
        high = gen(mem)
        store_id = mem._engine.store.store_id()
        mem.restore(tmp_path / "b.bak")
        assert gen(mem) > high
        assert mem._engine.store.store_id() == store_id  # same store, older content
    finally:
        mem.close()


def test_a_backup_opened_as_a_store_has_its_own_identity(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'e.db'}", embedder=HashEmbedder(64)) as mem:
        mem.add("one", id="r1")
        mem.backup(tmp_path / "b.db")
        store_id = mem._engine.store.store_id()
    with Memory(f"sqlite:///{tmp_path / 'b.db'}", embedder=HashEmbedder(64)) as copy:
        assert copy._engine.store.store_id() != store_id
        assert copy.get("r1").text == "one"


def test_a_file_at_revision_0001_upgrades_to_0002_keeping_its_data(tmp_path: Path) -> None:
    import sqlite3

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    import engramdb.migrations as migrations
    from engramdb.migrations import SCHEMA_HEAD

    path = tmp_path / "old.db"
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "0001")
    finally:
        engine.dispose()
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "namespace_generations" not in tables
    with Memory(f"sqlite:///{path}", embedder=HashEmbedder(64)) as mem:  # upgraded on open
        assert gen(mem) == 0
        mem.add("after the upgrade", id="r1")
        assert gen(mem) == 1
        assert mem._engine.store.next_expiry("default", 0) is None
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD
