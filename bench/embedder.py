"""The text encoder on its three runtimes, in one run over the same texts.

- ``torch``: sentence-transformers' ``encode`` (the ``minilm-torch`` embedder);
- ``default``: all-MiniLM-L6-v2 on ONNX Runtime (``minilm``, the same vectors);
- ``int8``: the int8-quantized ONNX file (``minilm-int8``, other vectors).

Measured per variant, interleaved round by round (who goes first rotates) so load from other
processes falls on all alike: batch throughput (the embedder's own batching, default
settings), single-text latency (distinct texts, no cache), cold start to the first vector in
a new process (and that time less importing engramdb itself) and its RSS after a batch, and
agreement with torch (cosine per text, top-10 overlap of 50 held-out queries over the
texts). The default variant also runs at 1 and 2 intra-op threads (what its thread settings
rest on). The floor (:mod:`bench.embedder_floor`): the runtimes with no engramdb code around
them. End to end, torch against the default: a CLI ``add`` on an existing store (wall time of
the process) and 32 concurrent single adds over HTTP (:mod:`bench.embedder_http`, with the
hash embedder and a no-op server as the ceilings).

    engramdb bench embedder [--quick] [--out DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import latency, log, machine, ratio, write_report
from bench.data import generate_texts
from bench.embedder_floor import measure_floor
from bench.embedder_http import CONCURRENCY as HTTP_CONCURRENCY
from bench.embedder_http import http_adds

VARIANTS = {"torch": "minilm-torch", "default": "minilm", "int8": "minilm-int8"}
SEED = 22_000_022
HTTP_WAVES = 3  # timed waves of 32 adds per server start
CLI = [sys.executable, "-c", "from engramdb.cli import main; main()"]

COLD_START = """
import json, sys, time
started = time.perf_counter()
from engramdb import Settings
from engramdb.embedders.base import resolve_embedder
imported = time.perf_counter() - started
embedder = resolve_embedder(None, Settings(embedder=sys.argv[1]))
embedder.embed(["the first text of a new process"])
first = time.perf_counter() - started
embedder.embed(json.loads(sys.argv[2]))
import psutil
rss = psutil.Process().memory_info().rss / 2**20
print(json.dumps({"cold_start_s": first, "engramdb_import_s": imported, "rss_mb": rss,
                  "torch": "torch" in sys.modules}))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    return {**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def _embedders() -> dict[str, Any]:
    from engramdb import Settings
    from engramdb.embedders.base import resolve_embedder

    out = {}
    for variant, setting in VARIANTS.items():
        # Coalescing is measured over HTTP; here each call runs as the caller made it.
        out[variant] = resolve_embedder(None, Settings(embedder=setting, embed_coalesce_ms=0))
        out[variant].embed(["warm up", "two texts"])
        out[variant].embed(["warm up"])
    return out


def _rotations(rounds: int) -> list[list[str]]:
    names = list(VARIANTS)
    return [names[r % len(names) :] + names[: r % len(names)] for r in range(rounds)]


def measure_in_process(texts: list[str], singles: list[str], rounds: int) -> dict[str, Any]:
    """Batch throughput and single-text latency of each variant, interleaved."""
    embedders = _embedders()
    batch_s: dict[str, list[float]] = {v: [] for v in VARIANTS}
    single_s: dict[str, list[float]] = {v: [] for v in VARIANTS}
    per_round = max(1, len(singles) // rounds)
    for r, order in enumerate(_rotations(rounds)):
        log(f"embedder: round {r + 1}/{rounds}")
        for variant in order:
            started = time.perf_counter()
            embedders[variant].embed(texts)
            batch_s[variant].append(time.perf_counter() - started)
        for variant in order:
            for text in singles[r * per_round : (r + 1) * per_round]:
                started = time.perf_counter()
                embedders[variant].embed([text])
                single_s[variant].append(time.perf_counter() - started)
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        best = float(np.median(batch_s[variant]))
        out[variant] = {
            "batch_texts_per_s": round(len(texts) / best, 1),
            "batch_seconds": [round(s, 3) for s in batch_s[variant]],
            "single": latency(single_s[variant]),
        }
    return {"runs": out, "embedders": embedders}


def agreement(embedders: dict[str, Any], texts: list[str], queries: list[str]) -> dict[str, Any]:
    """Cosine with torch per text and the overlap of each query's top 10 with torch's."""
    docs = {v: e.embed(texts) for v, e in embedders.items()}
    qs = {v: e.embed(queries) for v, e in embedders.items()}
    torch_top = [set(np.argsort(-(docs["torch"] @ q))[:10]) for q in qs["torch"]]
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        cos = (docs[variant] * docs["torch"]).sum(axis=1)
        top = [set(np.argsort(-(docs[variant] @ q))[:10]) for q in qs[variant]]
        overlap = [len(a & b) / 10 for a, b in zip(top, torch_top, strict=True)]
        out[variant] = {
            "cosine_min": round(float(cos.min()), 7),
            "cosine_mean": round(float(cos.mean()), 7),
            "top10_agreement": round(float(np.mean(overlap)), 4),
            "identical_top10_lists": sum(a == b for a, b in zip(top, torch_top, strict=True)),
        }
    return out


def cold_starts(texts: list[str], rounds: int) -> dict[str, Any]:
    """Each variant's first vector in a new process, and its RSS after a batch."""
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    batch = json.dumps(texts[:64])
    for order in _rotations(rounds):
        for variant in order:
            proc = subprocess.run(
                [sys.executable, "-c", COLD_START, VARIANTS[variant], batch],
                capture_output=True,
                text=True,
                timeout=600,
                env=_env(),
            )
            if proc.returncode:
                raise RuntimeError(proc.stderr[-2000:])
            samples[variant].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {
        v: {
            "cold_start_s": round(float(np.median([s["cold_start_s"] for s in rows])), 3),
            "model_only_s": round(
                float(np.median([s["cold_start_s"] - s["engramdb_import_s"] for s in rows])), 3
            ),
            "rss_mb": round(float(np.median([s["rss_mb"] for s in rows])), 1),
            "imports_torch": any(s["torch"] for s in rows),
            "samples_s": [round(s["cold_start_s"], 3) for s in rows],
        }
        for v, rows in samples.items()
    }


def thread_study(texts: list[str], singles: list[str], rounds: int) -> dict[str, Any]:
    """The default variant at 1 and 2 intra-op threads: single-text latency, batch speed."""
    from engramdb.embedders.onnx_minilm import OnnxMiniLMEmbedder

    runs = {n: OnnxMiniLMEmbedder(threads=n, batch_threads=n, coalesce_ms=0) for n in (1, 2)}
    single_s: dict[int, list[float]] = {1: [], 2: []}
    batch_s: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        for n in (1, 2) if r % 2 == 0 else (2, 1):
            runs[n].embed(["warm up"])
            for text in singles[:20]:
                started = time.perf_counter()
                runs[n].embed([text])
                single_s[n].append(time.perf_counter() - started)
            started = time.perf_counter()
            runs[n].embed(texts)
            batch_s[n].append(time.perf_counter() - started)
    return {
        f"threads_{n}": {
            "single": latency(single_s[n]),
            "batch_texts_per_s": round(len(texts) / float(np.median(batch_s[n])), 1),
        }
        for n in (1, 2)
    }


def cli_add(folder: Path, rounds: int) -> dict[str, Any]:
    """Wall time of ``engramdb add`` on an existing store, torch against the default."""
    url = f"sqlite:///{folder / 'cli.db'}"
    cmd = CLI
    subprocess.run(
        [*cmd, "--url", url, "add", "an existing record"],
        check=True,
        capture_output=True,
        env=_env(),
    )
    walls: dict[str, list[float]] = {"torch": [], "default": []}
    for r in range(rounds):
        for variant in ("torch", "default") if r % 2 == 0 else ("default", "torch"):
            extra = {"ENGRAM_EMBEDDER": "minilm-torch"} if variant == "torch" else {}
            started = time.perf_counter()
            subprocess.run(
                [*cmd, "--url", url, "add", f"cli add number {r} by {variant}"],
                check=True,
                capture_output=True,
                env=_env(**extra),
            )
            walls[variant].append(time.perf_counter() - started)
    return {v: {"wall_s": round(float(np.median(w)), 3), "samples_s": w} for v, w in walls.items()}


def _cpu_per_add(http: dict[str, Any], variant: str) -> float:
    """The CPU a request waits on, median ms per add: the server's workers and the client.

    The extraction helpers' CPU is left out: they parse after the request has returned, at
    a lower priority, so on a busy machine they take what the requests leave (and within
    the timed waves they lag behind them).
    """
    cpu = http[variant]["cpu_ms_per_add"]
    return float(cpu["server"] + cpu["client"])


def http_summary(http: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    """The summary lines of the HTTP adds and of the encoder floor under them.

    The CPU lines say what the wall lines cannot on a shared machine: with every core busy,
    a variant's throughput is its CPU share over its CPU per add. ``hash``'s CPU per add is
    everything but the encoder, so adding the encoders' own CPU cost per text (the floor) to
    it bounds ``default / torch`` wherever the CPU is the limit.
    """
    out: dict[str, Any] = {}
    for variant in http:
        out[f"http_adds_per_s_{variant}"] = http[variant]["texts_per_s"]
        out[f"http_p95_ms_{variant}"] = http[variant]["p95_ms"]
        if variant != "noop":
            out[f"http_cpu_ms_per_add_{variant}"] = round(_cpu_per_add(http, variant), 2)
        out[f"http_load_1min_{variant}"] = http[variant]["load_1min_median"]
    if "torch" in http and "default" in http:
        out["http_default_over_torch"] = ratio(
            http["default"]["texts_per_s"], http["torch"]["texts_per_s"]
        )
        out["http_cpu_torch_over_default"] = ratio(
            _cpu_per_add(http, "torch"), _cpu_per_add(http, "default")
        )
    if "torch" in http and "hash" in http:
        # No encoder makes an add cheaper than none: the ceiling of http_default_over_torch.
        out["http_ceiling_over_torch"] = ratio(
            http["hash"]["texts_per_s"], http["torch"]["texts_per_s"]
        )
    if "hash" in http:
        rest = _cpu_per_add(http, "hash")
        out["http_cpu_bound_ceiling_over_torch"] = ratio(
            rest + floor["torch_single_cpu_ms_per_text"],
            rest + floor["onnx_cheapest_cpu_ms_per_text"],
        )
    out["floor_raw_onnx_over_torch_throughput"] = floor["raw_onnx_over_torch_throughput"]
    out["floor_per_request_encoder_over_torch"] = floor["per_request_encoder_ceiling_over_torch"]
    out["floor_per_request_encoder_over_torch_cpu"] = floor[
        "per_request_encoder_ceiling_over_torch_cpu"
    ]
    out["floor_onnx_cheapest_cpu_ms_per_text"] = floor["onnx_cheapest_cpu_ms_per_text"]
    out["floor_torch_single_cpu_ms_per_text"] = floor["torch_single_cpu_ms_per_text"]
    out["floor_int8_one_per_call_over_torch"] = floor["int8_one_per_call_over_torch_throughput"]
    return out


def full_run(
    report: dict[str, Any],
    texts: list[str],
    singles: list[str],
    queries: list[str],
    rounds: int,
    http_texts: list[str],
    http_rounds: int,
    variants: list[str],
) -> None:
    """Every part of the benchmark, into ``report`` (with its summary)."""
    measured = measure_in_process(texts, singles, rounds)
    report["in_process"] = measured["runs"]
    report["agreement_with_torch"] = agreement(measured["embedders"], texts, queries)
    del measured
    log("embedder: threads")
    report["default_threads"] = thread_study(texts, singles, rounds)
    log("embedder: floor (the runtimes with no engramdb code)")
    report["floor"] = measure_floor(texts, singles, rounds)
    log("embedder: cold starts")
    report["cold_start"] = cold_starts(texts, rounds)
    with tempfile.TemporaryDirectory(prefix="engram-bench-embedder-") as tmp:
        log("embedder: CLI add")
        report["cli_add"] = cli_add(Path(tmp), rounds)
        log("embedder: HTTP adds")
        report["http_concurrent_adds"] = http_adds(
            Path(tmp), http_texts, http_rounds, _env(), variants
        )
    run, agree = report["in_process"], report["agreement_with_torch"]
    http = report["http_concurrent_adds"]
    report["summary"] = {
        "default_over_torch_throughput": ratio(
            run["default"]["batch_texts_per_s"], run["torch"]["batch_texts_per_s"]
        ),
        "default_top10_agreement_with_torch": agree["default"]["top10_agreement"],
        "default_cosine_min_with_torch": agree["default"]["cosine_min"],
        "int8_over_torch_throughput": ratio(
            run["int8"]["batch_texts_per_s"], run["torch"]["batch_texts_per_s"]
        ),
        "int8_top10_agreement_with_torch": agree["int8"]["top10_agreement"],
        "int8_cosine_min_with_torch": agree["int8"]["cosine_min"],
        "default_single_p50_over_torch": ratio(
            run["default"]["single"]["p50_ms"], run["torch"]["single"]["p50_ms"]
        ),
        "single_p50_ms_default": run["default"]["single"]["p50_ms"],
        "single_p50_ms_torch": run["torch"]["single"]["p50_ms"],
        "single_p50_ms_int8": run["int8"]["single"]["p50_ms"],
        "cold_start_s_default": report["cold_start"]["default"]["cold_start_s"],
        "cold_start_s_torch": report["cold_start"]["torch"]["cold_start_s"],
        "cold_start_s_int8": report["cold_start"]["int8"]["cold_start_s"],
        "cold_start_model_only_s_default": report["cold_start"]["default"]["model_only_s"],
        "cold_start_model_only_s_torch": report["cold_start"]["torch"]["model_only_s"],
        "rss_mb_default": report["cold_start"]["default"]["rss_mb"],
        "rss_mb_torch": report["cold_start"]["torch"]["rss_mb"],
        "cli_add_wall_s_default": report["cli_add"]["default"]["wall_s"],
        "cli_add_wall_s_torch": report["cli_add"]["torch"]["wall_s"],
        **http_summary(http, report["floor"]),
    }


def main(
    out_dir: Path,
    quick: bool,
    *,
    http_only: bool = False,
    http_variants: list[str] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; write ``embedder.json``; return the report.

    ``http_only`` runs the HTTP adds and the floor alone (a quick loop for the service path);
    ``http_variants`` picks the HTTP variants (default: torch, default, hash, noop).
    """
    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "embedder", "machine": machine()}
    rng = np.random.default_rng(SEED)
    seen: set[str] = set()
    n_texts, n_singles, rounds = (128, 30, 2) if quick else (512, 120, 3)
    texts = generate_texts(n_texts, rng, seen)
    singles = generate_texts(n_singles, rng, seen)
    queries = generate_texts(50, rng, seen)
    http_rounds = 1 if quick else 2
    http_texts = generate_texts(HTTP_CONCURRENCY * HTTP_WAVES * http_rounds, rng, seen)
    report["config"] = {
        "texts": n_texts,
        "single_texts": n_singles,
        "queries": len(queries),
        "rounds": rounds,
        "http_concurrency": HTTP_CONCURRENCY,
        "http_workers": 2,
        "variants": VARIANTS,
    }
    variants = http_variants or ["torch", "default", "hash", "noop"]
    report["config"]["http_variants"] = variants
    if http_only:
        log("embedder: floor (the runtimes with no engramdb code)")
        report["floor"] = measure_floor(texts, singles, rounds)
        with tempfile.TemporaryDirectory(prefix="engram-bench-embedder-") as tmp:
            log("embedder: HTTP adds")
            report["http_concurrent_adds"] = http_adds(
                Path(tmp), http_texts, http_rounds, _env(), variants
            )
        report["summary"] = http_summary(report["http_concurrent_adds"], report["floor"])
    else:
        full_run(report, texts, singles, queries, rounds, http_texts, http_rounds, variants)
    report["quick"] = quick
    report["seconds"] = round(time.perf_counter() - started, 1)
    path = write_report(report, out_dir, "embedder")
    log(f"embedder: wrote {path}")
    for key, value in report["summary"].items():
        print(f"{key}: {value}")
    return report
