"""The load drivers of the service benchmark: threads in-process, httpx and ZeroMQ clients.

Each driver runs ``clients`` callers for ``seconds`` and returns every call's latency plus
the wall time, so the figures of all three are computed the same way
(:func:`phase_report`). A caller makes one call at a time (closed loop): throughput is
what ``clients`` callers waiting on their answers get, the way agents call a service.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import latency

USERS = 50
MIN_PROBES = 20  # a phase shorter than one probe under load still measures something
TOP_K = 10
QUERIES = (
    "dentist appointment next week",
    "who picked up the concert tickets",
    "budget spreadsheet for the team offsite",
    "flight to Lisbon and the visa paperwork",
    "my sister talked about the rescue puppy",
    "kitchen renovation at the old flat",
    "running shoes from the market",
    "book club pick this month",
)


@dataclass
class Phase:
    """The calls of one (surface, op, clients) phase."""

    samples: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    wall_s: float = 0.0

    def fail(self, what: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = what[:300]


def phase_report(phase: Phase, clients: int) -> dict[str, Any]:
    """Latency summary, throughput (answered calls per second of wall time) and errors."""
    out: dict[str, Any] = {"clients": clients, **latency(phase.samples)}
    out["throughput_per_s"] = round(len(phase.samples) / phase.wall_s, 1) if phase.wall_s else 0
    out["errors"] = phase.errors
    if phase.first_error:
        out["first_error"] = phase.first_error
    return out


class Calls:
    """The arguments of the i-th search or add (deterministic, unique add texts)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._n = itertools.count()
        self._lock = threading.Lock()

    def search(self) -> dict[str, Any]:
        with self._lock:
            i = next(self._n)
        return {"query": QUERIES[i % len(QUERIES)], "user_id": f"u{i % USERS}", "top_k": TOP_K}

    def add(self) -> dict[str, Any]:
        with self._lock:
            i = next(self._n)
        text = f"{self.tag} note {i}: remember the {QUERIES[i % len(QUERIES)]} for later"
        return {"text": text, "user_id": f"u{i % USERS}"}


# ---------------------------------------------------------------------------- in-process


def run_threads(call: Callable[[], None], clients: int, seconds: float) -> Phase:
    """``clients`` threads each calling ``call`` back to back for ``seconds``."""
    phase = Phase()
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker() -> None:
        mine: list[float] = []
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            t0 = time.perf_counter()
            try:
                call()
            except Exception as exc:  # counted, the run goes on
                with lock:
                    phase.fail(repr(exc))
                continue
            mine.append(time.perf_counter() - t0)
        with lock:
            phase.samples.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    phase.wall_s = time.perf_counter() - start
    return phase


# ---------------------------------------------------------------------------- HTTP


async def _run_http(
    base: str,
    key: str,
    path: str,
    body: Callable[[], dict[str, Any]],
    clients: int,
    seconds: float,
) -> Phase:
    import httpx

    phase = Phase()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60, headers=headers) as c:
        # one call per connection first, so connection setup is not in the figures
        await asyncio.gather(*(c.get("/health") for _ in range(clients)))
        deadline = time.perf_counter() + seconds

        async def caller() -> None:
            while time.perf_counter() < deadline:
                payload = body()
                t0 = time.perf_counter()
                try:
                    resp = await c.post(path, json=payload)
                except httpx.HTTPError as exc:
                    phase.fail(repr(exc))
                    continue
                took = time.perf_counter() - t0
                if resp.status_code != 200:
                    phase.fail(f"{resp.status_code} {resp.text}")
                    continue
                phase.samples.append(took)

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(clients)))
        phase.wall_s = time.perf_counter() - start
    return phase


def run_http(
    base: str,
    key: str,
    path: str,
    body: Callable[[], dict[str, Any]],
    clients: int,
    seconds: float,
) -> Phase:
    """``clients`` keep-alive httpx connections posting ``body()`` to ``path``."""
    return asyncio.run(_run_http(base, key, path, body, clients, seconds))


# ---------------------------------------------------------------------------- ZeroMQ


async def _run_zmq(
    url: str,
    frame: Callable[[], dict[str, Any]],
    clients: int,
    seconds: float,
) -> Phase:
    import zmq
    import zmq.asyncio

    phase = Phase()
    ctx = zmq.asyncio.Context()
    socks = []
    for _ in range(clients):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(url)
        socks.append(sock)
    try:
        deadline = time.perf_counter() + seconds

        async def caller(sock: Any) -> None:
            while time.perf_counter() < deadline:
                raw = json.dumps(frame()).encode()
                t0 = time.perf_counter()
                await sock.send_multipart([b"", raw])
                parts = await sock.recv_multipart()
                took = time.perf_counter() - t0
                reply = json.loads(parts[-1])
                if not reply.get("ok"):
                    phase.fail(json.dumps(reply))
                    continue
                phase.samples.append(took)

        start = time.perf_counter()
        await asyncio.gather(*(caller(s) for s in socks))
        phase.wall_s = time.perf_counter() - start
    finally:
        for sock in socks:
            sock.close(0)
        ctx.term()
    return phase


def run_zmq(url: str, frame: Callable[[], dict[str, Any]], clients: int, seconds: float) -> Phase:
    """``clients`` DEALER sockets sending ``frame()`` to the endpoint at ``url``."""
    return asyncio.run(_run_zmq(url, frame, clients, seconds))


# ---------------------------------------------------------------------------- probes


def health_under_heavy(
    base: str, key: str, admin_key: str, namespace: str, seconds: float, heavy: int = 8
) -> dict[str, Any]:
    """``/health`` latency, sequential, while ``heavy`` callers loop on heavy calls (half
    deep-offset searches, half exports), beside the same probe on an idle service."""
    import httpx

    def probe(stop_at: float) -> list[float]:
        out: list[float] = []
        with httpx.Client(base_url=base, timeout=60) as c:
            c.get("/health")
            while time.perf_counter() < stop_at or len(out) < MIN_PROBES:
                t0 = time.perf_counter()
                c.get("/health").raise_for_status()
                out.append(time.perf_counter() - t0)
                time.sleep(0.005)
        return out

    idle = probe(time.perf_counter() + min(2.0, seconds))
    heavy_done = [0]
    heavy_refused: dict[int, int] = {}
    stop = threading.Event()

    def heavy_caller(i: int) -> None:
        with httpx.Client(base_url=base, timeout=300) as c:
            while not stop.is_set():
                if i % 2:
                    resp = c.post(
                        f"/v1/namespaces/{namespace}/search",
                        json={"query": QUERIES[i % len(QUERIES)], "top_k": 10, "offset": 4000},
                        headers={"Authorization": f"Bearer {key}"},
                    )
                else:
                    resp = c.post(
                        "/v1/admin/export",
                        json={"namespace": namespace, "vectors": True},
                        headers={"Authorization": f"Bearer {admin_key}"},
                    )
                if resp.status_code == 200:
                    heavy_done[0] += 1
                else:
                    heavy_refused[resp.status_code] = heavy_refused.get(resp.status_code, 0) + 1
                    time.sleep(0.05)

    threads = [threading.Thread(target=heavy_caller, args=(i,), daemon=True) for i in range(heavy)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # let the heavy calls fill their pool
    loaded = probe(time.perf_counter() + seconds)
    stop.set()
    for t in threads:
        t.join()
    return {
        "idle": latency(idle),
        "under_heavy": latency(loaded),
        "heavy_callers": heavy,
        "heavy_calls_done": heavy_done[0],
        "heavy_calls_refused_by_status": heavy_refused,
    }


def send_huge_body(host: str, port: int, path: str, key: str, size: int, chunked: bool) -> dict:
    """Send a ``size``-byte JSON body (declared by Content-Length, or chunked) over a raw
    socket, stopping as soon as the server answers; return the status and bytes sent."""
    sock = socket.create_connection((host, port), timeout=30)
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Authorization: Bearer {key}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}",
        "",
        "",
    ]
    sock.sendall("\r\n".join(head).encode())
    chunk = b"x" * (1 << 20)
    piece = b"%x\r\n" % len(chunk) + chunk + b"\r\n" if chunked else chunk
    sent = 0
    answered = b""
    t0 = time.perf_counter()
    sock.settimeout(5)  # a server that stops reading without answering ends the send
    try:
        while sent < size:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            sock.sendall(piece)
            sent += len(chunk)
        sock.settimeout(10)
        while b"\r\n" not in answered:
            more = sock.recv(65536)
            if not more:
                break
            answered += more
    except OSError:  # reset, broken pipe or timeout: the server refused to read on
        try:
            sock.settimeout(2)
            answered += sock.recv(65536)
        except OSError:
            pass
    finally:
        sock.close()
    status_line = answered.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    return {
        "declared_bytes": size,
        "chunked": chunked,
        "bytes_sent_before_answer": sent,
        "status_line": status_line,
        "answer_s": round(time.perf_counter() - t0, 3),
    }
