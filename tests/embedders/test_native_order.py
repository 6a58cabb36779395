"""onnxruntime and usearch in one process, in either order of first use (engramdb.native).

usearch loaded first made onnxruntime crash as it loaded: a process that searched a store's
ANN graph before it first encoded a text died on that text with a segmentation fault. Each
case runs in a fresh interpreter, since the crash (or its absence) is a property of the
order in which one process loads the two. The first case does not make onnxruntime load
early: it encodes only after the ANN graph has loaded usearch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BUILD = """
import sys
import numpy as np
from engramdb import Memory, Settings
settings = Settings(extract="off", ann_min_rows=50)
with Memory(sys.argv[1], settings=settings) as mem:
    mem.add([f"note {i} about the garden and the heron" for i in range(120)], user_id="u")
"""

SEARCH_THEN_ENCODE = """
import sys, time
import numpy as np
from engramdb import Memory, Settings
settings = Settings(extract="off", ann_min_rows=50)
with Memory(sys.argv[1], settings=settings) as mem:
    q = np.ones(384, dtype=np.float32) / np.sqrt(384)
    deadline = time.monotonic() + 600
    # Searches by vector encode nothing; the first ones build the ANN graph off the search
    # path, which loads usearch. Wait until it is loaded (the order under test).
    while "usearch.compiled" not in sys.modules:
        mem.search("garden", query_vector=q, mode="vector")
        assert time.monotonic() < deadline, "the ANN graph never loaded usearch"
        time.sleep(0.05)
    assert "onnxruntime" not in sys.modules  # the order under test: usearch first
    added = mem.add("the heron came back at dawn", user_id="u")[0]
    hits = mem.search("heron at dawn", user_id="u", top_k=3).hits
    print("ok", added.id in {h.record.id for h in hits})
"""

USEARCH_FIRST = """
import usearch.index
from engramdb.embedders.onnx_minilm import OnnxMiniLMEmbedder
from engramdb.errors import EmbeddingError
try:
    OnnxMiniLMEmbedder().embed(["a text"])
except EmbeddingError as exc:
    print("refused:", exc)
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ENGRAM_") or k == "ENGRAM_MODEL_DIR"
    }
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**env, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.model
def test_a_process_that_searched_the_ann_graph_then_encodes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    built = _run(BUILD, url)
    assert built.returncode == 0, built.stderr[-3000:]
    proc = _run(SEARCH_THEN_ENCODE, url)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert proc.stdout.strip().splitlines()[-1] == "ok True"


@pytest.mark.model
def test_an_encoder_made_after_usearch_was_loaded_is_refused_not_crashed() -> None:
    proc = _run(USEARCH_FIRST)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert "usearch was imported before it" in proc.stdout
