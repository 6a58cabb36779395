"""Settings names to embedders, and a store's recorded embedder back to the settings.

``minilm`` and ``minilm-torch`` are one embedder on two runtimes (one stored name);
``minilm-int8`` is another embedder. The CLI reopens a store with the embedder it recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from engramdb import HashEmbedder, MiniLMEmbedder, Settings
from engramdb.cli import cli
from engramdb.embedders.base import EMBEDDER_CHOICES, resolve_embedder, setting_for_stored
from engramdb.embedders.minilm import NAME
from engramdb.embedders.onnx_minilm import NAME_INT8, OnnxMiniLMEmbedder
from engramdb.errors import ValidationError


def test_each_name_builds_its_embedder_with_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        onnx_threads=2,
        onnx_batch_threads=1,
        embed_coalesce_ms=5.0,
        embed_coalesce_lanes=3,
        embed_batch_size=16,
        model_dir=str(tmp_path),
        hash_dim=32,
    )
    default = resolve_embedder("minilm", settings)
    assert isinstance(default, OnnxMiniLMEmbedder)
    assert (default.variant, default.name) == ("fp32", NAME)
    assert (default.threads, default.batch_threads, default.batch_size) == (2, 1, 16)
    assert default.model_dir == tmp_path
    assert default.coalescer is not None
    assert (default.coalescer.window_s, default.coalescer.lanes) == (0.005, 3)
    int8 = resolve_embedder("minilm-int8", settings)
    assert isinstance(int8, OnnxMiniLMEmbedder)
    assert (int8.variant, int8.name, int8.coalescer) == ("int8", NAME_INT8, None)
    torch_side = resolve_embedder("minilm-torch", settings)
    assert isinstance(torch_side, MiniLMEmbedder) and torch_side.name == NAME
    hashing = resolve_embedder("hash", settings)
    assert isinstance(hashing, HashEmbedder) and hashing.dim == 32
    plain = resolve_embedder(None, Settings(embedder="minilm"))
    assert isinstance(plain, OnnxMiniLMEmbedder) and plain.coalescer is not None
    assert plain.coalescer.lanes == (os.cpu_count() or 1)  # 0: one lane per core
    no_coalescing = resolve_embedder("minilm", Settings(embed_coalesce_ms=0))
    assert isinstance(no_coalescing, OnnxMiniLMEmbedder) and no_coalescing.coalescer is None


def test_an_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ValidationError, match="'minilm', 'minilm-torch', 'minilm-int8', 'hash'"):
        resolve_embedder("minilm-fp16", Settings())
    with pytest.raises(ValidationError, match="or an Embedder object"):
        resolve_embedder(42, Settings())  # type: ignore[arg-type]


def test_a_recorded_embedder_maps_back_to_its_settings() -> None:
    assert setting_for_stored("hash-64", 64) == {"embedder": "hash", "hash_dim": 64}
    assert setting_for_stored(NAME, 384) == {"embedder": "minilm"}
    assert setting_for_stored(NAME_INT8, 384) == {"embedder": "minilm-int8"}
    assert setting_for_stored("my-own-model", 768) is None
    assert set(EMBEDDER_CHOICES) == {"minilm", "minilm-torch", "minilm-int8", "hash"}


@pytest.mark.model
def test_the_cli_reopens_an_int8_store_with_int8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENGRAM_EMBEDDER", raising=False)
    url = f"sqlite:///{tmp_path / 'int8.db'}"
    runner = CliRunner()

    def run(*args: str) -> object:
        result = runner.invoke(cli, ["--url", url, "--json", *args], catch_exceptions=False)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)

    run("--embedder", "minilm-int8", "add", "Maria is allergic to peanuts.", "--user-id", "u")
    run("--embedder", "minilm-int8", "add", "Alice moved to Lisbon.", "--user-id", "u")
    # No --embedder: the store's own (int8) is used instead of the default, which it refuses.
    found = run("search", "food allergy", "--user-id", "u", "--top-k", "1")
    assert isinstance(found, dict)
    assert found["hits"][0]["record"]["text"] == "Maria is allergic to peanuts."
