"""Concurrent single adds over HTTP for ``engramdb bench embedder``, with the floors under them.

32 clients each send one ``POST /records`` at once to ``engramdb serve --workers 2``, round
after round, through one keep-alive connection pool (what a real client does; a new client
per request spends its time building TLS contexts in the benchmark's own process, which
shares the two cores with the server). Variants, interleaved round by round:

- ``torch`` and ``default``: the ``minilm-torch`` and ``minilm`` embedders;
- ``hash``: the hash embedder, i.e. everything an add costs except the encoder. No encoder
  can make adds faster than this, so ``hash / torch`` is the ceiling of
  ``default / torch`` on this machine;
- ``noop``: the same requests to a two-worker uvicorn app that answers at once (the HTTP
  round trip and the client alone).

Beside the wall figures, the CPU time the server's processes (workers, and apart from them
the entity-extraction helpers, which run at a lower priority) and the benchmark's client
spent per add during the timed waves: on a machine whose cores are all busy (other work, or
both workers saturated) throughput is the CPU share over the CPU per add, so the CPU ratio
of two variants is their throughput ratio there. ``worker_share`` is the busiest worker's
part of the workers' CPU: a keep-alive pool's connections are accepted by whichever worker
wakes first, often one worker for nearly all of them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import latency, log

CONCURRENCY = 32
WORKERS = 2
ADMIN_KEY = "engramdb-bench-embedder-admin-key-0123456789"
ENGINE_VARIANTS = {"torch": "minilm-torch", "default": "minilm", "hash": "hash"}
# Extra variants for A/B runs (``--http-variants``): the default embedder with other settings.
SETTING_VARIANTS = {"default-1lane": ("minilm", {"ENGRAM_EMBED_COALESCE_LANES": "1"})}
HTTP_VARIANTS = ("torch", "default", "hash", "noop", *SETTING_VARIANTS)
NOOP_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"results": []}'})
"""


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(variant: str, folder: Path, r: int, port: int, env: dict[str, str]) -> Any:
    if variant == "noop":
        app_dir = folder / "noop"
        app_dir.mkdir(exist_ok=True)
        (app_dir / "noop_app.py").write_text(NOOP_APP)
        cmd = [sys.executable, "-m", "uvicorn", "noop_app:app", "--app-dir", str(app_dir)]
        cmd += ["--port", str(port), "--workers", str(WORKERS), "--log-level", "warning"]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"sqlite:///{folder / f'http-{variant}-{r}.db'}"
    cmd = [sys.executable, "-c", "from engramdb.cli import main; main()", "--url", url, "serve"]
    cmd += ["--port", str(port), "--workers", str(WORKERS)]
    embedder, settings = SETTING_VARIANTS.get(variant, (ENGINE_VARIANTS.get(variant, ""), {}))
    extra = {"ENGRAM_EMBEDDER": embedder, "ENGRAM_ADMIN_KEY": ADMIN_KEY, **settings}
    return subprocess.Popen(
        cmd, env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_ready(base: str, server: Any) -> None:
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            httpx.get(f"{base}/health", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("the server did not start")


def _stop(server: Any) -> None:
    """SIGTERM (a drained stop), then SIGKILL if the server is still there after a while."""
    server.terminate()
    try:
        server.wait(120)
    except subprocess.TimeoutExpired:
        log("embedder: the server did not stop within 120 s of SIGTERM; killed")
        server.kill()
        server.wait(30)


def _tree_cpu(pid: int) -> dict[int, tuple[float, bool]]:
    """CPU seconds (user + system) of ``pid`` and its descendants, and whether each is an
    extraction helper."""
    import psutil

    out: dict[int, tuple[float, bool]] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return out
    for proc in procs:
        try:
            times = proc.cpu_times()
            helper = "serve_stdio" in " ".join(proc.cmdline())
        except psutil.Error:
            continue
        out[proc.pid] = (times.user + times.system, helper)
    return out


def _cpu_split(before: dict[int, tuple[float, bool]], after: dict[int, tuple[float, bool]]) -> Any:
    """Worker CPU, helper CPU and the busiest worker's share between two ``_tree_cpu``s."""
    spent = {
        p: (cpu - before.get(p, (0.0, helper))[0], helper) for p, (cpu, helper) in after.items()
    }
    workers = [cpu for cpu, helper in spent.values() if not helper]
    helpers = sum(cpu for cpu, helper in spent.values() if helper)
    total = sum(workers)
    return total, helpers, (max(workers) / total if total > 0 else 0.0)


def _one_round(client: Any, path: str, texts: list[str]) -> dict[str, Any]:
    def add(text: str) -> float:
        started = time.perf_counter()
        client.post(path, json={"text": text}).raise_for_status()
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        each = list(pool.map(add, texts))
    wall = time.perf_counter() - started
    return {"texts_per_s": len(texts) / wall, "latency": latency(each)}


def http_adds(
    folder: Path, texts: list[str], rounds: int, env: dict[str, str], variants: list[str]
) -> dict[str, Any]:
    """Per variant: median texts/s and p95 over ``rounds`` server starts (interleaved), each
    timing ``len(texts) // CONCURRENCY // rounds`` waves of 32 concurrent adds after a warm-up
    wave (every worker loads its model before the clock starts)."""
    import httpx

    waves = max(1, len(texts) // CONCURRENCY // rounds)
    out: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for variant in order:
            log(f"embedder: HTTP adds, {variant} (round {r + 1}/{rounds})")
            port = free_port()
            server = _start(variant, folder, r, port, env)
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            limits = httpx.Limits(
                max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY
            )
            try:
                base = f"http://127.0.0.1:{port}"
                _wait_ready(base, server)
                path = f"{base}/v1/namespaces/default/records"
                with httpx.Client(timeout=300, headers=headers, limits=limits) as client:
                    _one_round(client, path, [f"warm-up add {i} of round {r}" for i in range(32)])
                    start = r * waves * CONCURRENCY
                    for w in range(waves):
                        wave = texts[start + w * CONCURRENCY : start + (w + 1) * CONCURRENCY]
                        tree = _tree_cpu(server.pid)
                        client_cpu = time.process_time()
                        row = _one_round(client, path, wave)
                        client_cpu = time.process_time() - client_cpu
                        workers, helpers, share = _cpu_split(tree, _tree_cpu(server.pid))
                        row["cpu_ms_per_add"] = {
                            "server": 1000 * workers / len(wave),
                            "extraction": 1000 * helpers / len(wave),
                            "client": 1000 * client_cpu / len(wave),
                        }
                        row["worker_share"] = share
                        row["load"] = os.getloadavg()[0]
                        out[variant].append(row)
            finally:
                _stop(server)
    return {
        v: {
            "texts_per_s": round(float(np.median([x["texts_per_s"] for x in runs])), 1),
            "p95_ms": round(float(np.median([x["latency"]["p95_ms"] for x in runs])), 1),
            "cpu_ms_per_add": {
                part: round(float(np.median([x["cpu_ms_per_add"][part] for x in runs])), 2)
                for part in ("server", "extraction", "client")
            },
            "busiest_worker_share": round(float(np.median([x["worker_share"] for x in runs])), 3),
            "load_1min_median": round(float(np.median([x["load"] for x in runs])), 2),
            "waves": [
                {
                    "texts_per_s": round(x["texts_per_s"], 1),
                    "p95_ms": x["latency"]["p95_ms"],
                    "cpu_ms_per_add": {k: round(v, 2) for k, v in x["cpu_ms_per_add"].items()},
                    "load_1min": round(x["load"], 2),
                }
                for x in runs
            ],
        }
        for v, runs in out.items()
    }
