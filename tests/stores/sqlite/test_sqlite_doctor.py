"""``doctor`` finds a derived key or index that disagrees with the records, and repairs it
(or says why it cannot)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from engramdb import HashEmbedder, Memory


def test_doctor_finds_and_repairs_a_stale_dedup_key(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        rid = mem.add("a fact", user_id="u")[0].id
        with sqlite3.connect(db) as conn:  # e.g. a row written by another tool
            conn.execute("UPDATE records SET dedup = x'00' WHERE id = ?", (rid,))
        report = mem.doctor()
        assert not report["ok"] and any("dedup key" in p for p in report["problems"])
        assert mem.doctor(repair=True)["ok"] and mem.doctor()["ok"]
        assert mem.add("a fact", user_id="u")[0].outcome == "deduplicated"
        # A stale key lets a duplicate in; the repair then cannot succeed and says why.
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE records SET dedup = x'00' WHERE id = ?", (rid,))
        assert mem.add("a fact", user_id="u")[0].outcome == "written"
        failed = mem.doctor(repair=True)
        assert not failed["ok"]
        assert any("same text" in p for p in failed["problems"]), failed["problems"]
        assert mem.count() == 2


def test_doctor_finds_and_repairs_a_stale_keyword_scope(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        rid = mem.add("carol plants roses", user_id="carol")[0].id
        with sqlite3.connect(db) as conn:  # e.g. a row written by another tool
            conn.execute("UPDATE chunks_fts SET scope = 'qq'")
        assert mem.search("roses", mode="keyword", user_id="carol").hits == []
        report = mem.doctor()
        assert not report["ok"] and any("user scope" in p for p in report["problems"])
        assert mem.doctor(repair=True)["ok"] and mem.doctor()["ok"]
        hits = mem.search("roses", mode="keyword", user_id="carol").hits
        assert [h.record.id for h in hits] == [rid]


def test_doctor_finds_and_repairs_a_stale_tag_index(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        rid = mem.add("dave keeps bees", tags=["hobby"])[0].record.id
        with sqlite3.connect(db) as conn:  # e.g. rows written by a tool without the triggers
            conn.execute("DELETE FROM record_tags")
            conn.execute("INSERT INTO record_tags VALUES ('default', 'ghost', 99)")
        assert mem.list(tags=["hobby"]).records == []
        report = mem.doctor()
        assert not report["ok"]
        assert any("tag index has 2 rows" in p for p in report["problems"]), report
        assert mem.doctor(repair=True)["ok"] and mem.doctor()["ok"]
        assert [r.id for r in mem.list(tags=["hobby"]).records] == [rid]


def test_doctor_finds_and_repairs_a_stale_metadata_index(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        rid = mem.add("dave keeps bees", metadata={"hobby": "bees"})[0].record.id
        with sqlite3.connect(db) as conn:  # e.g. rows written by a tool without the triggers
            conn.execute("DELETE FROM record_meta")
            conn.execute("INSERT INTO record_meta VALUES ('default', 'ghost', 'x', 99)")
        assert mem.list(filters={"metadata.hobby": "bees"}).records == []
        report = mem.doctor()
        assert not report["ok"]
        assert any("metadata index has 2 rows" in p for p in report["problems"]), report
        assert mem.doctor(repair=True)["ok"] and mem.doctor()["ok"]
        assert [r.id for r in mem.list(filters={"metadata.hobby": "bees"}).records] == [rid]


def test_doctor_reports_a_chunk_whose_vector_row_is_gone(tmp_path: Path) -> None:
    """Vectors are table data (``chunk_vectors``), not derived: a lost row is reported,
    repair does not pretend to rebuild it, and a re-embed writes it again."""
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        mem.add(["one fact", "another fact"], user_id="u")
        assert mem.doctor()["ok"]
        with sqlite3.connect(db) as conn:  # e.g. a row removed by another tool
            conn.execute("DELETE FROM chunk_vectors WHERE chunk_id = (SELECT min(id) FROM chunks)")
        for report in (mem.doctor(), mem.doctor(repair=True)):
            assert not report["ok"]
            assert any("1 chunks have no stored vector" in p for p in report["problems"])
        mem.reembed(HashEmbedder(24))
        assert mem.doctor()["ok"]
        assert [h.record.text for h in mem.search("one fact", top_k=1, mode="vector").hits] == [
            "one fact"
        ]
