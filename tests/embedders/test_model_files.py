"""Finding, trusting and building the ONNX files: a manifest names the weights behind a file."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engramdb.embedders import export, model_files
from engramdb.embedders.model_files import (
    FORMAT,
    ModelFiles,
    configured_root,
    export_lock,
    find_or_none,
    write_manifest,
)
from engramdb.embedders.onnx_minilm import OnnxMiniLMEmbedder
from engramdb.errors import EmbeddingError


def fake_files(root: Path, variant: str = "fp32") -> ModelFiles:
    files = ModelFiles.at(root, variant)
    files.folder.mkdir(parents=True)
    files.onnx.write_bytes(b"not a model")
    write_manifest(files, model_files.source_model_dir())
    return files


@pytest.mark.model
def test_a_file_with_a_matching_manifest_is_found(tmp_path: Path) -> None:
    files = fake_files(tmp_path)
    assert files.is_complete()
    assert find_or_none("fp32", tmp_path) == files
    assert find_or_none("int8", tmp_path) is None
    assert json.loads(files.manifest.read_text())["format"] == FORMAT


@pytest.mark.model
def test_a_file_built_from_other_weights_is_stale(tmp_path: Path) -> None:
    files = fake_files(tmp_path)
    manifest = json.loads(files.manifest.read_text())
    files.manifest.write_text(json.dumps({**manifest, "size": manifest["size"] + 1}))
    assert not files.is_complete()
    assert find_or_none("fp32", tmp_path) is None


def test_a_file_without_a_manifest_is_incomplete(tmp_path: Path) -> None:
    files = ModelFiles.at(tmp_path, "fp32")
    files.folder.mkdir(parents=True)
    files.onnx.write_bytes(b"half written")
    assert not files.is_complete()


def test_the_environment_is_searched_before_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    env_root, cache_root = model_files.default_roots()
    assert env_root.parts[-3:] == ("share", "engramdb", "onnx")
    assert cache_root == tmp_path / "cache" / "engramdb" / "onnx"


def test_an_unknown_variant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="variant"):
        export.build("fp16", tmp_path)
    with pytest.raises(ValueError, match="variant"):
        OnnxMiniLMEmbedder("fp16")


@pytest.mark.model
@pytest.mark.slow
def test_a_missing_file_is_built_on_first_use(tmp_path: Path) -> None:
    embedder = OnnxMiniLMEmbedder("int8", model_dir=tmp_path, coalesce_ms=0)
    vectors = embedder.embed(["built on first use", "from the package's weights"])
    assert vectors.shape == (2, 384)
    for variant in ("fp32", "int8"):
        found = find_or_none(variant, tmp_path)
        assert found is not None and found.onnx.stat().st_size > 1_000_000
    reference = OnnxMiniLMEmbedder("int8", coalesce_ms=0).embed(["built on first use"])
    assert float(vectors[0] @ reference[0]) >= 0.9999
    assert not list(tmp_path.rglob("*.partial"))
    assert np.isfinite(vectors).all()


@pytest.mark.model
def test_a_failed_build_names_its_cause(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    embedder = OnnxMiniLMEmbedder(model_dir=blocker / "models", coalesce_ms=0)
    with pytest.raises(EmbeddingError, match=r"failed \((NotADirectoryError|FileExistsError)"):
        embedder.embed(["needs the model"])


def lock_waiters(path: Path) -> int:
    """How many lock requests on ``path`` are blocked now (Linux's /proc/locks ``->`` lines)."""
    inode = f":{path.stat().st_ino} "
    return sum(
        "->" in line and inode in line for line in Path("/proc/locks").read_text().splitlines()
    )


@pytest.mark.model
def test_a_build_waits_for_the_one_in_progress_and_takes_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def export_again(source: Path, out: Path) -> None:
        raise AssertionError("exported although another build had finished the file")

    monkeypatch.setattr(export, "export_fp32", export_again)
    files = ModelFiles.at(tmp_path, "fp32")
    files.folder.mkdir(parents=True)
    built: list[ModelFiles] = []
    errors: list[BaseException] = []

    def second_builder() -> None:
        try:
            built.append(export.build("fp32", tmp_path))
        except BaseException as exc:
            errors.append(exc)

    with export_lock(files.folder):  # the first build, in progress
        thread = threading.Thread(target=second_builder)
        thread.start()
        deadline = time.monotonic() + 60
        while not lock_waiters(files.folder / ".lock"):
            assert thread.is_alive() and not built, "the second build did not wait for the lock"
            assert time.monotonic() < deadline, "the second build never asked for the lock"
            time.sleep(0.005)
        files.onnx.write_bytes(b"the first build's file")
        write_manifest(files, model_files.source_model_dir())
    thread.join(60)
    assert errors == []
    assert built == [files]
    assert files.onnx.read_bytes() == b"the first build's file"


def test_the_model_folder_setting_is_where_files_are_found_and_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGRAM_MODEL_DIR", str(tmp_path / "models"))
    assert configured_root() == tmp_path / "models"
    assert OnnxMiniLMEmbedder().model_dir == tmp_path / "models"
    assert OnnxMiniLMEmbedder(model_dir=tmp_path / "other").model_dir == tmp_path / "other"
    monkeypatch.delenv("ENGRAM_MODEL_DIR")
    assert configured_root() is None
    assert OnnxMiniLMEmbedder().model_dir is None
