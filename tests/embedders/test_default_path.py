"""The default embedder's runtime path: no torch in the process, and no model at all for
CLI commands that embed nothing.

Each case runs in a fresh interpreter, since this test process has torch loaded already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODULES = ["torch", "sentence_transformers", "transformers", "onnxruntime", "tokenizers"]


def loaded_after(code: str, cwd: Path) -> tuple[dict[str, bool], str]:
    """Run ``code`` in a new interpreter; return which heavy modules it loaded, and its output."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {MODULES!r}}}))"
    )
    # The model folder is kept: it says where the ONNX files are, not how to behave.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ENGRAM_") or k == "ENGRAM_MODEL_DIR"
    }
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,  # a first use exports the model (tens of seconds, more when busy)
        env={**env, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    *output, last = proc.stdout.strip().splitlines()
    loaded: dict[str, bool] = json.loads(last)
    return loaded, "\n".join(output)


@pytest.mark.model
@pytest.mark.parametrize(
    "model_dir",
    [
        pytest.param(None, id="files-built"),
        pytest.param("empty", id="first-use-build", marks=pytest.mark.slow),
    ],
)
def test_memory_add_and_search_never_import_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_dir: str | None
) -> None:
    """Also on a first use that builds the ONNX file: the export runs in a child process."""
    if model_dir is not None:
        monkeypatch.setenv("ENGRAM_MODEL_DIR", str(tmp_path / model_dir))
    loaded, _ = loaded_after(
        "from engramdb import Memory\n"
        "m = Memory('sqlite:///m.db')\n"
        "m.add('Maria is allergic to peanuts.', user_id='u')\n"
        "assert m.search('food allergy', user_id='u').hits\n"
        "m.close()",
        tmp_path,
    )
    assert loaded["onnxruntime"] and loaded["tokenizers"]
    assert not loaded["torch"]
    assert not loaded["sentence_transformers"]
    assert not loaded["transformers"]
    if model_dir is not None:
        assert list((tmp_path / model_dir).rglob("model-fp32.onnx"))


def cli(*args: str) -> str:
    return (
        "from engramdb.cli import cli\n"
        "try:\n"
        f"    cli(['--url', 'sqlite:///c.db', *{list(args)!r}], prog_name='engramdb')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code"
    )


@pytest.mark.model
def test_cli_commands_that_embed_nothing_load_no_model(tmp_path: Path) -> None:
    added, output = loaded_after(
        cli("--json", "add", "Alice moved to Lisbon", "--user-id", "a", "--thread-id", "t"),
        tmp_path,
    )
    assert added["onnxruntime"] and not added["torch"]
    record_id = json.loads(output)[0]["record"]["id"]
    for command in (
        ["get", record_id],
        ["list"],
        ["count"],
        ["history", record_id],
        ["events", "t"],
        ["slots", "get", "t"],
        ["export", str(tmp_path / "out.jsonl")],
    ):
        loaded, _ = loaded_after(cli(*command), tmp_path)
        assert not any(loaded.values()), (command, loaded)
