"""The README cannot lie: its settings table matches Settings and its Python blocks run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engramdb import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _table_rows() -> dict[str, str]:
    text = README.read_text()
    block = text.split("<!-- settings-table:start -->")[1].split("<!-- settings-table:end -->")[0]
    rows = {}
    for line in block.splitlines():
        m = re.match(r"\| `(\w+)` \| `(ENGRAM_\w+)` \| `([^`]*)` \|", line)
        if m:
            rows[m.group(1)] = m.group(3)
            assert m.group(2) == f"ENGRAM_{m.group(1).upper()}"
    return rows


def test_settings_table_lists_every_setting_with_its_default() -> None:
    rows = _table_rows()
    assert set(rows) == set(Settings.model_fields), "run scripts/settings_table.py"
    for name, field in Settings.model_fields.items():
        assert rows[name] == str(field.default), name


@pytest.mark.model
@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    for i, code in enumerate(blocks):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert proc.returncode == 0, f"README block {i} failed:\n{proc.stderr[-2000:]}"
    assert (tmp_path / "engram.db").exists()
