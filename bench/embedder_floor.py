"""The floor under ``engramdb bench embedder``'s targets: the runtimes with no engramdb code.

A plain ``onnxruntime.InferenceSession`` of the default model file, fed by ``tokenizers``
(length-sorted, padded per batch), against sentence-transformers' ``encode``, interleaved:

- batch throughput at 1 and 2 intra-op threads (torch at 1 and 2 as well): the best raw ONNX
  Runtime figure over the best torch figure is the most the default embedder can reach over
  torch on this machine;
- one thread's cost per text at batches of 1, 4 and 16: coalescing concurrent single texts
  only pays where a batch costs less per text than one text alone. Torch's cost for one
  text over the cheapest of these is the most the default can reach over torch per request
  when the encoder is what a request waits on (the HTTP adds).
- the same cases in CPU time (``cpu_ms_per_text``): on a machine whose cores are all busy a
  request's throughput is its share of the CPU over its CPU cost, so torch's one-text CPU
  cost over the cheapest ONNX CPU cost per text at any batch size is the most the default
  can reach over torch per request there, whatever the coalescing.
- the int8 file encoding one text per call (its rule: a vector must not depend on its
  batch-mates) on one lane and on two lanes side by side: the best of these over the best
  torch figure is the most the int8 embedder can reach over torch here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bench.common import log

SMALL_BATCHES = (1, 4, 16)


def _session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _feeds(tokenizer: Any, texts: list[str], batch: int) -> list[dict[str, np.ndarray]]:
    """Length-sorted batches of ``batch`` texts, each padded to its longest."""
    encodings = sorted(tokenizer.encode_batch(texts), key=lambda e: len(e.ids))
    out = []
    for start in range(0, len(encodings), batch):
        part = encodings[start : start + batch]
        ids = np.zeros((len(part), max(len(e.ids) for e in part)), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(part):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    return out


def measure_floor(texts: list[str], singles: list[str], rounds: int) -> dict[str, Any]:
    """Raw ONNX Runtime against raw torch (see the module docstring); figures are medians."""
    import torch
    from tokenizers import Tokenizer

    from engramdb.embedders.minilm import MiniLMEmbedder
    from engramdb.embedders.model_files import find_or_build, source_model_dir
    from engramdb.embedders.onnx_minilm import MAX_TOKENS

    tokenizer = Tokenizer.from_file(str(source_model_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    path = str(find_or_build("fp32", None).onnx)
    sessions = {n: _session(path, n) for n in (1, 2)}
    int8_session = _session(str(find_or_build("int8", None).onnx), 1)
    lanes = ThreadPoolExecutor(2)
    model = MiniLMEmbedder()._load()

    def onnx(threads: int, texts_: list[str], batch: int) -> Callable[[], None]:
        session = sessions[threads]
        wanted = {i.name for i in session.get_inputs()}

        def run() -> None:  # tokenization is inside the timed call, as torch's is
            for feed in _feeds(tokenizer, texts_, batch):
                session.run(None, {k: v for k, v in feed.items() if k in wanted})

        return run

    def int8_one_per_call(texts_: list[str], lane_count: int) -> Callable[[], None]:
        wanted = {i.name for i in int8_session.get_inputs()}

        def one(feed: dict[str, np.ndarray]) -> None:
            int8_session.run(None, {k: v for k, v in feed.items() if k in wanted})

        def run() -> None:
            feeds = _feeds(tokenizer, texts_, 1)
            if lane_count == 1:
                for feed in feeds:
                    one(feed)
            else:
                list(lanes.map(one, feeds))

        return run

    def st(threads: int, texts_: list[str], batch: int) -> Callable[[], None]:
        def run() -> None:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                for start in range(0, len(texts_), batch):
                    model.encode(
                        texts_[start : start + batch],
                        batch_size=batch,
                        normalize_embeddings=True,
                        show_progress_bar=False,
                    )

        return run

    cases: dict[str, tuple[Callable[[], None], int]] = {}
    for n in (1, 2):
        cases[f"onnx_batch64_threads{n}"] = (onnx(n, texts, 64), len(texts))
        cases[f"torch_batch64_threads{n}"] = (st(n, texts, 64), len(texts))
    for b in SMALL_BATCHES:
        cases[f"onnx_batch{b}_threads1"] = (onnx(1, singles, b), len(singles))
    cases["torch_batch1_threads1"] = (st(1, singles, 1), len(singles))
    for n in (1, 2):
        cases[f"int8_one_per_call_lanes{n}"] = (int8_one_per_call(texts, n), len(texts))
    for run, _ in cases.values():
        run()  # warm up
    seconds: dict[str, list[float]] = {k: [] for k in cases}
    cpu_seconds: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(rounds):
        log(f"embedder: floor round {r + 1}/{rounds} (load {os.getloadavg()[0]:.1f})")
        for name in names[r % len(names) :] + names[: r % len(names)]:
            run, _ = cases[name]
            started, cpu_started = time.perf_counter(), time.process_time()
            run()
            seconds[name].append(time.perf_counter() - started)
            cpu_seconds[name].append(time.process_time() - cpu_started)
    ms_per_text = {
        k: round(1000 * float(np.median(s)) / cases[k][1], 3) for k, s in seconds.items()
    }
    cpu_ms_per_text = {
        k: round(1000 * float(np.median(s)) / cases[k][1], 3) for k, s in cpu_seconds.items()
    }
    one_thread = [f"onnx_batch{b}_threads1" for b in (*SMALL_BATCHES, 64)]
    cheapest_cpu = min(cpu_ms_per_text[k] for k in one_thread)
    best_onnx = min(ms_per_text[f"onnx_batch64_threads{n}"] for n in (1, 2))
    best_torch = min(ms_per_text[f"torch_batch64_threads{n}"] for n in (1, 2))
    best_int8 = min(ms_per_text[f"int8_one_per_call_lanes{n}"] for n in (1, 2))
    cheapest_small = min(ms_per_text[f"onnx_batch{b}_threads1"] for b in SMALL_BATCHES)
    return {
        "ms_per_text": ms_per_text,
        # CPU time (this process, all its threads): what a text costs whatever the load.
        "cpu_ms_per_text": cpu_ms_per_text,
        "onnx_cheapest_cpu_ms_per_text": cheapest_cpu,
        "torch_single_cpu_ms_per_text": cpu_ms_per_text["torch_batch1_threads1"],
        "per_request_encoder_ceiling_over_torch_cpu": round(
            cpu_ms_per_text["torch_batch1_threads1"] / cheapest_cpu, 3
        ),
        "raw_onnx_over_torch_throughput": round(best_torch / best_onnx, 3),
        "per_request_encoder_ceiling_over_torch": round(
            ms_per_text["torch_batch1_threads1"] / cheapest_small, 3
        ),
        "int8_one_per_call_over_torch_throughput": round(best_torch / best_int8, 3),
        "onnx_batch4_over_single_cost": round(
            ms_per_text["onnx_batch4_threads1"] / ms_per_text["onnx_batch1_threads1"], 3
        ),
    }
