"""The service benchmark: what going over HTTP or ZeroMQ costs against calling ``Memory``.

One run (``engramdb bench service``; ``--quick`` for a short one) on a SQLite file of
``--records`` records (hash embedder, so the encoder is out of the figures; 50 users):

* ``inprocess``: user-filtered hybrid ``search`` (top 10) and single ``add`` from 1, 8 and
  32 threads on one ``Memory``;
* ``http``: the same calls from 1, 8 and 32 keep-alive httpx clients (one asyncio driver)
  against a real ``engramdb serve`` process with a namespace key: one worker for 1 client,
  ``--workers 2`` for 8 and 32 (and one worker at 8 clients, for the comparison);
* ``zmq``: the same frames over the service's ZeroMQ endpoint (DEALER sockets);
* ``health``: ``/health`` p95 while 8 callers loop on heavy calls (deep-offset searches and
  exports), beside the idle figure;
* ``huge_body``: the server's RSS before and after a 300 MB body (Content-Length, then
  chunked) is refused, three rounds: a body sent without a length is read up to
  ``max_body_bytes`` before the 413, so the first round may grow the heap by about that
  much; later rounds show whether it stays bounded (the allocator reuses it) or leaks;
* ``floor``: trivial Starlette/FastAPI apps under the same uvicorn and httpx driver, 1
  client (:mod:`bench.service_floor`): what any Python HTTP round trip costs here;
* ``soak``: a mixed search/add/delete load over HTTP against the one-worker server for
  ``--soak-seconds`` (300 in a full run) with the server's RSS sampled
  (:mod:`bench.service_soak`): whether memory stays flat.

Figures go to ``bench/results/service.json`` (``service_quick.json`` for ``--quick``); the
summary's ratios compare each surface with in-process calls at the same concurrency,
measured in the same run on the same machine.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import finish, log, machine, ratio
from bench.data import generate_texts
from bench.service_drivers import (
    USERS,
    Calls,
    health_under_heavy,
    phase_report,
    run_http,
    run_threads,
    run_zmq,
    send_huge_body,
)
from bench.service_floor import measure_floors
from bench.service_soak import soak

CLI = [sys.executable, "-c", "from engramdb.cli import main; main()"]
NAMESPACE = "bench"
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
CLIENTS = (1, 8, 32)
HUGE_BODY = 300 * 1024 * 1024
HUGE_BODY_ROUNDS = 3
WARM_S = 3.0
SOAK_S = 300.0
SOAK_QUICK_S = 3.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def seed(url: str, records: int) -> None:
    """``records`` generated sentences spread over :data:`USERS` users, in batches."""
    from engramdb import Memory, Settings

    rng = np.random.default_rng(18)
    texts = generate_texts(records, rng, set())
    with Memory(
        settings=Settings(url=url, embedder="hash", namespace=NAMESPACE, extract="off")
    ) as mem:
        for start in range(0, records, 500):
            batch = texts[start : start + 500]
            mem.add(
                [{"text": t, "user_id": f"u{(start + i) % USERS}"} for i, t in enumerate(batch)]
            )


def namespace_key(url: str) -> str:
    """A read-write key of the bench namespace (what an agent would call with)."""
    from engramdb import Settings
    from engramdb.ops.keys import open_keys

    with open_keys(Settings(url=url, embedder="hash")) as keys:
        return keys.create(NAMESPACE).key


def inprocess(url: str, seconds: float) -> dict[str, Any]:
    """Search and add from 1, 8 and 32 threads on one ``Memory`` over the file."""
    from engramdb import Memory, Settings

    out: dict[str, Any] = {}
    calls = Calls("inprocess")
    with Memory(
        settings=Settings(url=url, embedder="hash", namespace=NAMESPACE, extract="off")
    ) as mem:
        mem.search("warm up", user_id="u0")
        for clients in CLIENTS:
            for op in ("search", "add"):
                if op == "search":
                    phase = run_threads(lambda: mem.search(**calls.search()), clients, seconds)
                else:
                    phase = run_threads(lambda: mem.add(**calls.add()), clients, seconds)
                out[f"{op}_{clients}"] = rep = phase_report(phase, clients)
                log(
                    f"in-process {op} x{clients}: p50 {rep.get('p50_ms')} ms, "
                    f"{rep['throughput_per_s']}/s"
                )
    return out


class Server:
    """``engramdb serve`` on free loopback ports (HTTP and ZeroMQ) over the bench file."""

    def __init__(self, url: str, workers: int, logdir: Path) -> None:
        self.port = _free_port()
        self.zmq_url = f"tcp://127.0.0.1:{_free_port()}"
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        env.update(HF_HUB_OFFLINE="1", ENGRAM_ADMIN_KEY=ADMIN_KEY, ENGRAM_EXTRACT="off")
        argv = [*CLI, "--url", url, "--no-model", "serve", "--port", str(self.port)]
        argv += ["--workers", str(workers), "--zmq", self.zmq_url]
        self._log = open(logdir / f"serve-{workers}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.workers = workers

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engramdb serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base}/ready", timeout=5).status_code == 200:
                    # every worker answers once before the clock starts
                    for _ in range(4 * self.workers):
                        httpx.get(f"{self.base}/ready", timeout=5)
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("engramdb serve did not become ready")

    def rss_mb(self) -> float:
        """Resident memory of the server and its worker processes, in MiB."""
        import psutil

        root = psutil.Process(self.proc.pid)
        procs = [root, *root.children(recursive=True)]
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return round(total / 2**20, 1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@contextlib.contextmanager
def serving(url: str, workers: int, logdir: Path) -> Iterator[Server]:
    server = Server(url, workers, logdir)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def over_the_wire(
    server: Server, key: str, clients: tuple[int, ...], seconds: float
) -> dict[str, Any]:
    """Search and add over HTTP and over ZeroMQ at each of ``clients``."""
    out: dict[str, Any] = {"workers": server.workers, "http": {}, "zmq": {}}
    calls = Calls(f"w{server.workers}")
    ns = f"/v1/namespaces/{NAMESPACE}"
    # Warm every process (caches, the first search's index load) before the clock runs:
    # the workers over HTTP, the process holding the ZeroMQ endpoint over ZeroMQ.
    run_http(server.base, key, f"{ns}/search", calls.search, 4 * server.workers, WARM_S)
    run_zmq(server.zmq_url, lambda: _frame("search", key, calls.search()), 2, WARM_S)
    for n in clients:
        for op, path, body in (
            ("search", f"{ns}/search", calls.search),
            ("add", f"{ns}/records", calls.add),
        ):
            phase = run_http(server.base, key, path, body, n, seconds)
            out["http"][f"{op}_{n}"] = rep = phase_report(phase, n)
            log(
                f"http w{server.workers} {op} x{n}: p50 {rep.get('p50_ms')} ms, "
                f"{rep['throughput_per_s']}/s, errors {rep['errors']}"
            )

            phase = run_zmq(
                server.zmq_url, lambda op=op, body=body: _frame(op, key, body()), n, seconds
            )
            out["zmq"][f"{op}_{n}"] = rep = phase_report(phase, n)
            log(
                f"zmq w{server.workers} {op} x{n}: p50 {rep.get('p50_ms')} ms, "
                f"{rep['throughput_per_s']}/s, errors {rep['errors']}"
            )
    out["rss_mb_after"] = server.rss_mb()
    return out


def _frame(op: str, key: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"op": op, "namespace": NAMESPACE, "api_key": key, "args": args}


def huge_body(server: Server, key: str) -> dict[str, Any]:
    """RSS of the server around a refused 300 MB body, declared and then chunked, in
    :data:`HUGE_BODY_ROUNDS` rounds (RSS after each kind of body in each round)."""
    out: dict[str, Any] = {"rss_mb_before": server.rss_mb(), "rounds": []}
    path = f"/v1/namespaces/{NAMESPACE}/records"
    for _ in range(HUGE_BODY_ROUNDS):
        got: dict[str, Any] = {}
        for kind, chunked in (("content_length", False), ("chunked", True)):
            got[kind] = send_huge_body("127.0.0.1", server.port, path, key, HUGE_BODY, chunked)
            time.sleep(0.5)
            got[f"rss_mb_after_{kind}"] = server.rss_mb()
        out["rounds"].append(got)
    first = out["rounds"][0]
    out["content_length"], out["chunked"] = first["content_length"], first["chunked"]
    out["rss_mb_after"] = out["rounds"][-1]["rss_mb_after_chunked"]
    out["rss_growth_mb"] = round(out["rss_mb_after"] - out["rss_mb_before"], 1)
    out["rss_growth_mb_content_length"] = round(
        first["rss_mb_after_content_length"] - out["rss_mb_before"], 1
    )
    out["rss_growth_mb_first_round"] = round(
        first["rss_mb_after_chunked"] - out["rss_mb_before"], 1
    )
    out["rss_growth_mb_later_rounds"] = round(
        out["rss_mb_after"] - first["rss_mb_after_chunked"], 1
    )
    return out


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures and the ratios against in-process calls."""
    inproc = report["inprocess"]
    one = report["servers"]["workers_1"]
    two = report["servers"]["workers_2"]
    s: dict[str, Any] = {"records": report["config"]["records"]}
    for op in ("search", "add"):
        base1 = inproc[f"{op}_1"]
        s[f"inprocess_{op}_1_p50_ms"] = base1.get("p50_ms")
        for surface in ("http", "zmq"):
            got = one[surface][f"{op}_1"]
            s[f"{surface}_{op}_1_p50_ms"] = got.get("p50_ms")
            s[f"{surface}_{op}_1_p95_ms"] = got.get("p95_ms")
            s[f"{surface}_1_{op}_added_p50_ms"] = _diff(got.get("p50_ms"), base1.get("p50_ms"))
        for n in (8, 32):
            base = inproc[f"{op}_{n}"]
            s[f"inprocess_{op}_{n}_throughput_per_s"] = base["throughput_per_s"]
            s[f"inprocess_{op}_{n}_p95_ms"] = base.get("p95_ms")
            for surface in ("http", "zmq"):
                got = two[surface][f"{op}_{n}"]
                key = f"{surface}_{n}_{op}"
                s[f"{key}_throughput_per_s"] = got["throughput_per_s"]
                s[f"{key}_p95_ms"] = got.get("p95_ms")
                s[f"{key}_throughput_over_inprocess"] = ratio(
                    got["throughput_per_s"], base["throughput_per_s"]
                )
                s[f"{key}_p95_over_inprocess"] = ratio(got.get("p95_ms", 0), base.get("p95_ms", 0))
    # the headline names of the issue: search, the call agents make most
    s["http_1_added_p50_ms"] = s["http_1_search_added_p50_ms"]
    s["http_8_throughput_over_inprocess"] = s["http_8_search_throughput_over_inprocess"]
    s["http_8_p95_over_inprocess"] = s["http_8_search_p95_over_inprocess"]
    s["zmq_1_added_p50_ms"] = s["zmq_1_search_added_p50_ms"]
    s["health_p95_ms_idle"] = report["health"]["idle"].get("p95_ms")
    s["health_p95_ms_under_heavy"] = report["health"]["under_heavy"].get("p95_ms")
    s["huge_body_statuses"] = [
        report["huge_body"][k]["status_line"] for k in ("content_length", "chunked")
    ]
    s["huge_body_rss_growth_mb"] = report["huge_body"]["rss_growth_mb"]
    for k in ("content_length", "first_round", "later_rounds"):
        s[f"huge_body_rss_growth_mb_{k}"] = report["huge_body"][f"rss_growth_mb_{k}"]
    floor = report["floor"]
    for name, phase in floor.items():
        tag = "" if name == "starlette" else f"_{name}"
        s[f"http_floor{tag}_p50_ms"] = phase.get("p50_ms")
        s[f"http_floor{tag}_p95_ms"] = phase.get("p95_ms")
    # The service's own cost: its HTTP p50 less the in-process call and less the floor of a
    # FastAPI app with the same models and one thread hop (what any such service pays).
    s["http_1_search_added_over_floor_ms"] = _diff(
        s["http_1_search_added_p50_ms"], floor["fastapi_thread"].get("p50_ms")
    )
    s["http_1_add_added_over_floor_ms"] = _diff(
        s["http_1_add_added_p50_ms"], floor["fastapi_thread"].get("p50_ms")
    )
    sk = report["soak"]
    s["soak_seconds"] = sk["seconds"]
    for k in ("rss_mb_start", "rss_mb_end", "rss_mb_max"):
        s[f"soak_{k}"] = sk[k]
    s["soak_slope_mb_per_min"] = sk["second_half_slope_mb_per_min"]
    s["soak_flat"] = sk["flat"]
    s["soak_errors"] = sk.get("errors")
    errors = sum(
        v.get("errors", 0)
        for srv in report["servers"].values()
        for surface in ("http", "zmq")
        for v in srv[surface].values()
    )
    s["errors"] = errors + sum(p.get("errors", 0) for p in floor.values())
    return s


def _diff(a: float | None, b: float | None) -> float | None:
    return round(a - b, 3) if a is not None and b is not None else None


def main(
    out_dir: Path,
    quick: bool,
    records: int | None = None,
    seconds: float | None = None,
    soak_seconds: float | None = None,
) -> dict:
    """Run the whole benchmark and write ``service.json`` (``service_quick.json``)."""
    records = records if records is not None else 5000
    seconds = seconds if seconds is not None else (1.5 if quick else 6.0)
    if soak_seconds is None:
        soak_seconds = SOAK_QUICK_S if quick else SOAK_S
    report: dict[str, Any] = {
        "machine": machine(),
        "config": {
            "records": records,
            "users": USERS,
            "seconds_per_phase": seconds,
            "embedder": "hash",
            "extract": "off (entity extraction is a cost of its own, apart from the service)",
            "store": "sqlite",
            "clients": list(CLIENTS),
            "soak_seconds": soak_seconds,
            "driver": "one asyncio process (httpx / zmq.asyncio), on the same 2 cores",
        },
    }
    with tempfile.TemporaryDirectory(prefix="engramdb-bench-service-") as tmp:
        tmpdir = Path(tmp)
        url = f"sqlite:///{tmpdir / 'service.db'}"
        log(f"seeding {records} records")
        seed(url, records)
        key = namespace_key(url)
        report["inprocess"] = inprocess(url, seconds)
        report["floor"] = measure_floors(
            Calls("floor").search, seconds, min(WARM_S, seconds), tmpdir, _free_port
        )
        report["servers"] = {}
        with serving(url, 1, tmpdir) as server:
            report["servers"]["workers_1"] = one = over_the_wire(server, key, (1, 8), seconds)
            one["rss_mb_start"] = server.rss_mb()
            report["health"] = health_under_heavy(
                server.base, key, ADMIN_KEY, NAMESPACE, seconds * 2
            )
            log(f"health p95 under heavy: {report['health']['under_heavy'].get('p95_ms')} ms")
            report["huge_body"] = huge_body(server, key)
            log(f"huge body: {report['huge_body']}")
            report["soak"] = soak(server.base, key, NAMESPACE, server.rss_mb, soak_seconds)
            log(
                f"soak {soak_seconds} s: RSS {report['soak']['rss_mb_start']} -> "
                f"{report['soak']['rss_mb_end']} MB, second-half slope "
                f"{report['soak']['second_half_slope_mb_per_min']} MB/min"
            )
        with serving(url, 2, tmpdir) as server:
            report["servers"]["workers_2"] = over_the_wire(server, key, (8, 32), seconds)
    report["summary"] = summarize(report)
    return finish(report, out_dir, "service", quick)
