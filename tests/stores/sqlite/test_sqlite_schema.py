"""Schema versioning: Alembic is the one migration mechanism; refusals are clear."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from engramdb import HashEmbedder, Memory, SchemaError, SchemaTooNewError, Settings
from engramdb.migrations import SCHEMA_HEAD, SCHEMA_REVISIONS


def test_revision_list_matches_alembic_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path("engramdb/migrations").resolve()))
    script = ScriptDirectory.from_config(cfg)
    ordered = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert ordered == SCHEMA_REVISIONS
    assert script.get_current_head() == SCHEMA_HEAD


def test_fresh_file_is_migrated_to_head(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD


def test_new_files_get_8k_pages_and_old_files_keep_theirs(tmp_path: Path) -> None:
    from engramdb.stores.sqlite.connection import PAGE_SIZE

    new, old = tmp_path / "new.db", tmp_path / "old.db"
    with sqlite3.connect(old) as conn:  # a file made with SQLite's default 4 KB pages
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("VACUUM")
    for path in (new, old):
        with Memory(f"sqlite:///{path}", embedder=HashEmbedder(16)) as m:
            m.add([f"fact {i}" for i in range(50)], user_id="u")
            assert m.search("fact 7", user_id="u", top_k=1)[0].record.text == "fact 7"
        with sqlite3.connect(path) as conn:
            size = conn.execute("PRAGMA page_size").fetchone()[0]
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert size == (PAGE_SIZE if path == new else 4096)
    assert PAGE_SIZE == 8192


def test_file_from_newer_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaTooNewError, match="9999"):
        Memory(f"sqlite:///{db}", embedder=HashEmbedder(16))


def test_auto_migrate_off_refuses_an_out_of_date_file(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    settings = Settings(auto_migrate=False)
    with pytest.raises(SchemaError, match="db upgrade"):
        Memory(f"sqlite:///{db}", embedder=HashEmbedder(16), settings=settings)


def _open_and_add(path: str, n: int) -> None:
    with Memory(f"sqlite:///{path}", embedder=HashEmbedder(16)) as mem:
        mem.add(f"record from opener {n}")


def test_concurrent_first_opens_apply_the_schema_once(tmp_path: Path) -> None:
    """M5: several processes opening a fresh file at once all succeed, no 'already exists'."""
    db = str(tmp_path / "race.db")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_open_and_add, args=(db, i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        assert mem.count() == 4
