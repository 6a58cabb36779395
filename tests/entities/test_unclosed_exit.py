"""A process that exits without ``Memory.close()`` leaves its extraction queued, not failed.

The script below has no ``__main__`` guard, like a quick test script: the helper process
must not run it again, and the batch in flight when the interpreter exits is not the
texts' fault, so the next process to open the store extracts every record.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from entities_helpers import by_name, open_memory

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from engramdb import HashEmbedder, Memory, Settings

    def main():
        m = Memory(sys.argv[1], embedder=HashEmbedder(384), settings=Settings(extract="background"))
        for i in range(200):
            m.add(f"Maria Garcia number {i} works for Microsoft in Seattle.")
        # Wait until the worker holds a batch, then exit with it in flight (no close()).
        index = m._engine._entities
        deadline = time.monotonic() + 60
        while not index._lock.locked() and time.monotonic() < deadline:
            time.sleep(0.01)
        print("in flight" if index._lock.locked() else "never started", flush=True)

    main()
    """
)


@pytest.mark.slow
@pytest.mark.fault
def test_unclosed_process_leaves_extraction_pending(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    script = tmp_path / "unclosed.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, str(script), url],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "in flight", done.stdout + done.stderr
    assert "entity extraction failed" not in done.stderr
    with open_memory(url, extract="background") as m:
        assert m.stats()["entities"]["failed"] == 0
        found = by_name(m.entities())
        assert {"Maria Garcia", "Microsoft", "Seattle"} <= set(found)
        assert found["Maria Garcia"].mention_count == 200
        stats = m.stats()["entities"]
        assert (stats["pending"], stats["failed"]) == (0, 0)
