"""``engramdb reconcile`` with a legacy side: a real Chroma collection against a real SQLite
engramdb store, one record missing and one different each way.

What must hold: records migrated from Chroma and records dual-written since compare equal
(the legacy side is read with the ids ``migrate`` and dual write give); each difference is
reported by id; ``--repair --legacy-read-only`` writes only the engramdb side and reports
what the legacy side lacks as left; ``--repair`` writes both, after which nothing differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from engramdb import HashEmbedder, Memory
from engramdb.cli import cli
from engramdb.ops.legacy import migrate_legacy
from engramdb.ops.legacy_memory import LegacyMemory
from engramdb.sidebyside import DualWriteMemory
from tests.ops.chroma_helpers import build_chroma

EMB = HashEmbedder(384)


def _chroma_count(path: Path) -> int:
    import chromadb

    client = chromadb.PersistentClient(path=str(path))
    return int(client.get_collection("notes", embedding_function=None).count())


def _world(tmp_path: Path) -> tuple[str, str, dict[str, str]]:
    """Chroma "notes" migrated into an engramdb store, then written on both, then apart."""
    chroma = tmp_path / "chroma"
    build_chroma(chroma, 3, ("notes",))
    source = f"chroma://{chroma}?collection=notes"
    target = f"sqlite:///{tmp_path / 'new.db'}"
    assert migrate_legacy(source, target, embedder=EMB, log_file=None)["written"] == 3
    ids: dict[str, str] = {}
    with Memory(target, embedder=EMB) as root, LegacyMemory(source, embedder=EMB) as legacy:
        new = root.with_namespace("notes")
        with DualWriteMemory(new, legacy, tmp_path / "dual.queue", drain=False) as dual:
            both = [dual.add(f"written on both {i}", user_id="u")[0].record.id for i in range(3)]
        ids["only_chroma"] = legacy.add("only in chroma", user_id="u")[0].record.id
        ids["only_engramdb"] = new.add("only in engramdb", user_id="u")[0].record.id
        new.update(both[0], text="changed in engramdb")
        legacy.update(both[1], text="changed in chroma")
        ids["changed_new"], ids["changed_old"] = both[0], both[1]
    return source, target, ids


def test_reconcile_a_chroma_collection_with_an_engramdb_store(tmp_path: Path) -> None:
    source, target, ids = _world(tmp_path)
    chroma = tmp_path / "chroma"
    runner = CliRunner()
    base = ["--json", "reconcile", "--a", source, "--b", target]
    out = tmp_path / "report.json"

    res = runner.invoke(cli, [*base, "--output", str(out)])
    assert res.exit_code == 1, res.output
    report = json.loads(out.read_text())
    assert list(report["namespaces"]) == ["notes"]
    notes = report["namespaces"]["notes"]
    assert (notes["a"], notes["b"]) == (7, 7)
    assert notes["ids"] == {
        "missing_in_a": [ids["only_engramdb"]],
        "missing_in_b": [ids["only_chroma"]],
        "different": sorted([ids["changed_new"], ids["changed_old"]]),
    }

    # Read-only legacy side: engramdb gets the record it lacked and Chroma's versions of
    # the two that differ; Chroma is not written, so its missing record is left.
    res = runner.invoke(cli, [*base, "--repair", "--legacy-read-only"])
    assert res.exit_code == 1, res.output
    assert json.loads(res.output)["repaired"] == 3
    assert _chroma_count(chroma) == 7
    with Memory(target, embedder=EMB) as root:
        new = root.with_namespace("notes")
        assert new.get(ids["only_chroma"]).text == "only in chroma"
        assert new.get(ids["changed_new"]).text == "written on both 0"  # a (Chroma) wins
        assert new.get(ids["changed_old"]).text == "changed in chroma"
    res = runner.invoke(cli, base)
    left = json.loads(res.output)["namespaces"]["notes"]
    assert (left["missing_in_a"], left["missing_in_b"], left["different"]) == (1, 0, 0)

    # A writable legacy side is repaired too, laid out as the team's code reads it.
    res = runner.invoke(cli, [*base, "--repair"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["repaired"] == 1
    assert _chroma_count(chroma) == 8
    with LegacyMemory(source, embedder=EMB) as legacy:
        assert legacy.get(ids["only_engramdb"]).text == "only in engramdb"
    res = runner.invoke(cli, ["reconcile", "--a", target, "--b", source])  # either order
    assert res.exit_code == 0 and "differences: 0" in res.output, res.output


def test_reconcile_refuses_two_legacy_sides_and_stray_options(tmp_path: Path) -> None:
    chroma = tmp_path / "chroma"
    build_chroma(chroma, 2, ("notes",))
    source = f"chroma://{chroma}?collection=notes"
    runner = CliRunner()
    res = runner.invoke(cli, ["reconcile", "--a", source, "--b", source])
    assert res.exit_code != 0 and "one side must be an engramdb store" in res.output
    db = f"sqlite:///{tmp_path / 'x.db'}"
    res = runner.invoke(cli, ["reconcile", "--a", db, "--b", db, "--collection", "notes"])
    assert res.exit_code != 0 and "apply to a legacy side" in res.output
    res = runner.invoke(cli, ["-n", "elsewhere", "reconcile", "--a", source, "--b", db])
    assert res.exit_code == 1, res.output  # compared in the namespace named: all missing
    assert "elsewhere: a=2 b=0 missing in a=0 missing in b=2" in res.output
