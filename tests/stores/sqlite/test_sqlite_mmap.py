"""Reading connections map the file (``sqlite_mmap_mb``); writes never go through a map.

A search locates its candidates' records page by page across the records table; mapped,
each page is read in place instead of copied in by a system call. What must not change:
the writer does not map (durability), the setting turns it off, and a file that shrinks
under mapped readers (``forget --compact`` from another store object) still reads right.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engramdb import HashEmbedder, Memory, Settings
from engramdb.stores.sqlite import SQLiteStore


def _mapped(mem: Memory) -> tuple[int, int]:
    """(a reader's mmap_size, the writer's) in bytes."""
    store = mem.engine.store
    assert isinstance(store, SQLiteStore)
    with store._db.read("test") as c:
        reader = int(c.execute("PRAGMA mmap_size").fetchone()[0])
    writer = int(store._db.writer().execute("PRAGMA mmap_size").fetchone()[0])
    return reader, writer


@pytest.mark.parametrize("mb", [64, 0])
def test_readers_map_the_file_the_writer_never_and_zero_turns_it_off(
    tmp_path: Path, mb: int
) -> None:
    mem = Memory(
        f"sqlite:///{tmp_path / 'a.db'}",
        embedder=HashEmbedder(16),
        settings=Settings(extract="off", sqlite_mmap_mb=mb),
    )
    try:
        mem.add("the heron fishes at dawn", user_id="u")
        assert _mapped(mem) == (mb * 1024 * 1024, 0)
        assert [h.record.text for h in mem.search("heron", user_id="u").hits] == [
            "the heron fishes at dawn"
        ]
    finally:
        mem.close()


def test_mapped_readers_survive_the_file_shrinking_under_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    settings = Settings(extract="off")
    reader = Memory(url, embedder=HashEmbedder(16), settings=settings)
    other = Memory(url, embedder=HashEmbedder(16), settings=settings)
    try:
        filler = " ".join(["padding"] * 400)
        for user in range(12):
            reader.add(
                [{"text": f"note {i} of user {user}: {filler}"} for i in range(40)],
                user_id=f"u{user}",
            )
        kept = reader.add("the heron fishes at dawn", user_id="keep")[0].id
        # Map and read pages all over the file before it shrinks.
        for user in range(12):
            assert len(reader.list(user_id=f"u{user}", limit=100).records) == 40
        assert reader.search("heron", user_id="keep").hits[0].record.id == kept
        size = (tmp_path / "a.db").stat().st_size
        for user in range(12):
            other.forget(user_id=f"u{user}", compact=True)
        assert (tmp_path / "a.db").stat().st_size < size // 2
        # The same connections read the smaller file: what is left, and nothing else.
        assert reader.get(kept).text == "the heron fishes at dawn"
        assert [h.record.id for h in reader.search("heron", user_id="keep").hits] == [kept]
        assert reader.count() == 1
        assert reader.list(user_id="u3", limit=100).records == []
    finally:
        other.close()
        reader.close()
