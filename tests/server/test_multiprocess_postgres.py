"""Several service processes on one PostgreSQL (issue 3, "More than one machine"; K3, K4, C2).

Two real services share one schema: ``engramdb serve --workers 4`` (A: a uvicorn supervisor
and four worker processes) and a second, separate ``engramdb serve`` (B), both started as
the CLI is started in production (``ENGRAM_URL``, ``ENGRAM_EMBEDDER=hash``). Clients in
threads open a fresh connection per request, so the kernel spreads A's requests over its
workers; every test mixes A and B. Nothing is shared between the processes except the
database, so whatever holds here holds for processes on different machines.

The services start once for the module (a spawned worker takes seconds to import on a
2-core machine); each test works in namespaces of its own. The worker-kill test runs last.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from server_helpers import (
    ADMIN_HEADERS,
    ADMIN_KEY,
    STARTUP_TIMEOUT,
    ServerProcess,
    cli_argv,
    free_port,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WORKERS = 4


class Service(ServerProcess):
    """An ``engramdb serve`` subprocess on a free loopback port, its base URL and its log."""

    def __init__(self, name: str, url: str, workers: int, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = self.clean_env(ENGRAM_URL=url, ENGRAM_EMBEDDER="hash", ENGRAM_ADMIN_KEY=ADMIN_KEY)
        argv = cli_argv() + ["serve", "--port", str(self.port), "--workers", str(workers)]
        super().__init__(name, argv, env, log)


def with_password(url: str) -> tuple[str, str]:
    """The URL with a password in it, and the password (the log must never show it).

    The tests' own server trusts loopback connections, so a made-up password is never
    checked; an external server's URL keeps the password it has.
    """
    parts = urlsplit(url)
    if parts.password or os.environ.get("ENGRAM_TEST_POSTGRES_URL"):
        return url, parts.password or ""
    secret = "pw-" + uuid.uuid4().hex
    netloc = f"{parts.username}:{secret}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), secret


@pytest.fixture(scope="module")
def services(
    postgres_db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, Service]]:
    """A (``--workers 4``) and B (one process), started together on one fresh schema."""
    import postgres_server

    logs = tmp_path_factory.mktemp("multiprocess-pg")
    with postgres_server.fresh_schema(postgres_db_url) as schema_url:
        url, secret = with_password(schema_url)
        # Started at once: A migrates in its supervisor while B migrates on open; the
        # advisory lock makes one of them apply the schema and the other wait.
        a = Service("A", url, WORKERS, logs / "a.log")
        b = Service("B", url, 1, logs / "b.log")
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            a.wait_ready(a.base, deadline)
            b.wait_ready(b.base, deadline)
            while len(a.workers()) < WORKERS and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(a.workers()) == WORKERS, a.tail()
            yield a, b
        finally:
            codes = (a.stop(), b.stop())
        logs_text = a.log.read_text(errors="replace") + b.log.read_text(errors="replace")
        assert "Traceback" not in logs_text, f"{a.tail(80)}\n{b.tail(80)}"
        assert not secret or secret not in logs_text, "the store password reached the log"
        assert codes == (0, 0), f"exit codes {codes}:\n{a.tail()}\n{b.tail()}"


def fresh_client() -> httpx.Client:
    """A client that opens a new connection per request (so the kernel picks A's worker)."""
    return httpx.Client(
        timeout=30, limits=httpx.Limits(max_keepalive_connections=0), headers=ADMIN_HEADERS
    )


def get_many_texts(c: httpx.Client, records_url: str, ids: Iterable[str]) -> dict[str, str]:
    """id -> text of the records found, asked in pages within the service's id limit."""
    wanted, out = sorted(ids), {}
    for i in range(0, len(wanted), 500):
        found = ok(c.post(f"{records_url}/get-many", json={"ids": wanted[i : i + 500]}))
        out.update({r["id"]: r["text"] for r in found["records"]})
    return out


def ok(resp: httpx.Response, who: Service | None = None) -> Any:
    """The JSON body of a 2xx response; anything else fails with the body (and a log)."""
    assert resp.is_success, f"{resp.status_code} {resp.text}" + (
        f"\n{who.tail()}" if who is not None else ""
    )
    return resp.json() if resp.content else None


def run_threads(n: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` for each ``i < n`` on its own thread; results in order, errors raised."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(target, range(n)))


def letters(n: int) -> str:
    """A word of letters only for ``n`` (digits would split differently in the FTS parser)."""
    out = ""
    while True:
        n, r = divmod(n, 26)
        out += chr(ord("a") + r)
        if n == 0:
            return out


# ------------------------------------------------------------------------- K3: dedup


def test_same_text_added_concurrently_through_both_services_is_one_record(
    services: tuple[Service, Service],
) -> None:
    rounds, callers = 40, 8
    ns = "mp-dedup"
    barrier = threading.Barrier(callers)

    def caller(i: int) -> list[tuple[str, str]]:
        svc = services[i % 2]
        got = []
        with fresh_client() as c:
            for r in range(rounds):
                barrier.wait(timeout=60)
                resp = c.post(
                    f"{svc.base}/v1/namespaces/{ns}/records",
                    json={"text": f"the same fact, round {r}", "user_id": "u1"},
                )
                (result,) = ok(resp, svc)["results"]
                got.append((result["id"], result["outcome"]))
        return got

    per_caller = run_threads(callers, caller)
    for r in range(rounds):
        ids = {per_caller[i][r][0] for i in range(callers)}
        outcomes = sorted(per_caller[i][r][1] for i in range(callers))
        assert len(ids) == 1, f"round {r}: callers got different ids {ids}"
        assert outcomes == ["deduplicated"] * (callers - 1) + ["written"], (r, outcomes)
    for svc in services:
        with fresh_client() as c:
            count = ok(c.post(f"{svc.base}/v1/namespaces/{ns}/records/count", json={}))
        assert count["count"] == rounds


# ------------------------------------------------------------------- slots: CAS


def test_slot_compare_and_set_loses_no_update_across_processes(
    services: tuple[Service, Service],
) -> None:
    clients, wins_each = 6, 8
    url = "/v1/namespaces/mp-slots/threads/counter/slots"
    lock = threading.Lock()
    wins: list[int] = []  # the expected_version of every successful set
    conflicts: list[dict[str, Any]] = []  # the details of every 409

    def client(i: int) -> None:
        with fresh_client() as c:
            done, attempt = 0, 0
            while done < wins_each:
                attempt += 1
                assert attempt < 500, "no progress"
                # Read through one service, write through the other, alternating.
                read, write = services[(i + attempt) % 2], services[(i + attempt + 1) % 2]
                cur = ok(c.get(read.base + url), read)
                counter = cur["values"].get("counter", 0)
                # get_slots reads one snapshot: the counter always equals the version.
                assert counter == cur["version"], cur
                resp = c.put(
                    write.base + url,
                    json={"values": {"counter": counter + 1}, "expected_version": cur["version"]},
                )
                if resp.status_code == 409:
                    with lock:
                        conflicts.append(resp.json()["details"])
                    continue
                after = ok(resp, write)
                assert after["version"] == cur["version"] + 1
                assert after["values"]["counter"] == counter + 1
                with lock:
                    wins.append(cur["version"])
                done += 1

    run_threads(clients, client)
    total = clients * wins_each
    with fresh_client() as c:
        final = [ok(c.get(svc.base + url)) for svc in services]
    assert {f["version"] for f in final} == {total}
    assert {f["values"]["counter"] for f in final} == {total}
    # Each version was won exactly once: no two writers both succeeded from the same read.
    assert sorted(wins) == list(range(total))
    # Every 409 was a real conflict: its version had been won by someone else first.
    for d in conflicts:
        assert d["expected_version"] in wins and d["version"] > d["expected_version"], d
    print(f"\nslots CAS: {total} wins, {len(conflicts)} conflicts retried")


# ---------------------------------------------------------------- K4: lost update


def test_concurrent_tag_updates_through_both_services_lose_none(
    services: tuple[Service, Service],
) -> None:
    a, b = services
    base = "/v1/namespaces/mp-tags/records"
    with fresh_client() as c:
        rid = ok(c.post(a.base + base, json={"text": "a record everyone tags"}))["results"][0]["id"]
    tags = [f"t{i:02d}" for i in range(50)]
    barrier = threading.Barrier(25)

    def tag(i: int) -> None:
        with fresh_client() as c:
            for k, tag_ in enumerate(tags[i * 2 : i * 2 + 2]):
                barrier.wait(timeout=60)
                svc = services[(i + k) % 2]
                ok(c.patch(f"{svc.base}{base}/{rid}", json={"add_tags": [tag_]}), svc)

    run_threads(25, tag)
    with fresh_client() as c:
        for svc in services:
            rec = ok(c.get(f"{svc.base}{base}/{rid}"))
            assert rec["tags"] == tags and rec["version"] == 51, rec
        entries = ok(c.get(f"{b.base}{base}/{rid}/history"))["entries"]
        assert [e["version"] for e in entries] == list(range(1, 52))

    # ... and 50 conditional updates from the same version: exactly one wins.
    def conditional(i: int) -> int:
        svc = services[i % 2]
        with fresh_client() as c:
            resp = c.patch(
                f"{svc.base}{base}/{rid}",
                json={"add_tags": [f"cas{i:02d}"], "expected_version": 51},
            )
        assert resp.status_code in (200, 409), resp.text
        return resp.status_code

    codes = Counter(run_threads(50, conditional))
    assert codes == {200: 1, 409: 49}
    with fresh_client() as c:
        rec = ok(c.get(f"{a.base}{base}/{rid}"))
    assert rec["version"] == 52 and len(rec["tags"]) == 51


# ------------------------------------------------------------------ visibility


def test_every_acknowledged_write_is_visible_through_the_other_service(
    services: tuple[Service, Service],
) -> None:
    ns = "mp-visible"
    threads, ops = 4, 75
    rec_url = f"/v1/namespaces/{ns}/records"

    def search(c: httpx.Client, svc: Service, word: str) -> list[str]:
        resp = c.post(
            f"{svc.base}/v1/namespaces/{ns}/search",
            json={"query": word, "mode": "keyword", "top_k": 5},
        )
        return [h["record"]["id"] for h in ok(resp, svc)["hits"]]

    def worker(t: int) -> set[str]:
        live: list[str] = []
        with fresh_client() as c:
            for i in range(ops):
                write, read = services[(t + i) % 2], services[(t + i + 1) % 2]
                word = "kw" + letters(t * 1000 + i)
                if i % 4 in (0, 1) or not live:  # add
                    body = {"text": f"visibility note {word}", "user_id": f"u{t}"}
                    rid = ok(c.post(write.base + rec_url, json=body), write)["results"][0]["id"]
                    got = ok(c.get(f"{read.base}{rec_url}/{rid}"), read)
                    assert got["text"] == body["text"], got
                    assert rid in search(c, read, word), (rid, word, read.name)
                    live.append(rid)
                elif i % 4 == 2:  # update the text: new version and new keyword at once
                    rid = live[i % len(live)]
                    before = ok(c.get(f"{write.base}{rec_url}/{rid}"), write)
                    after = ok(
                        c.patch(f"{write.base}{rec_url}/{rid}", json={"text": f"changed {word}"}),
                        write,
                    )
                    assert after["version"] == before["version"] + 1
                    got = ok(c.get(f"{read.base}{rec_url}/{rid}"), read)
                    assert (got["version"], got["text"]) == (after["version"], f"changed {word}")
                    assert rid in search(c, read, word), (rid, word, read.name)
                else:  # delete
                    rid = live.pop(0)
                    assert c.delete(f"{write.base}{rec_url}/{rid}").status_code == 204
                    missing = c.get(f"{read.base}{rec_url}/{rid}")
                    assert missing.status_code == 404, missing.text
        return set(live)

    started = time.monotonic()
    live = set().union(*run_threads(threads, worker))
    elapsed = time.monotonic() - started
    with fresh_client() as c:
        for svc in services:
            count = ok(c.post(f"{svc.base}{rec_url}/count", json={}))["count"]
            assert count == len(live)
            page = ok(c.get(f"{svc.base}{rec_url}", params={"limit": 1000}))
            assert {r["id"] for r in page["records"]} == live
    print(f"\nvisibility: {threads * ops} writes, each read back elsewhere, in {elapsed:.1f} s")


# ------------------------------------------------------- C2-light: kill -9 a worker


def test_a_killed_worker_loses_no_acknowledged_add_and_the_service_goes_on(
    services: tuple[Service, Service],
) -> None:
    a, b = services
    ns = "mp-kill"
    rec_url = f"/v1/namespaces/{ns}/records"
    lock = threading.Lock()
    acked: dict[str, str] = {}  # id -> text, for every 2xx
    unacked: dict[str, str] = {}  # a transport error: the outcome is unknown
    server_errors: list[str] = []
    stop = threading.Event()

    def writer(t: int) -> None:
        i = 0
        with fresh_client() as c:
            while not stop.is_set():
                rid, text = f"c2-{t}-{i}", f"kill test record {t} {i}"
                i += 1
                try:
                    resp = c.post(a.base + rec_url, json={"text": text, "id": rid})
                except httpx.TransportError:
                    with lock:
                        unacked[rid] = text
                    continue
                with lock:
                    if resp.is_success:
                        assert resp.json()["results"][0]["outcome"] == "written", resp.text
                        acked[rid] = text
                    else:
                        server_errors.append(f"{resp.status_code} {resp.text}")
                        unacked[rid] = text

    def acks() -> int:
        with lock:
            return len(acked)

    before = a.workers()
    assert len(before) == WORKERS
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(writer, t) for t in range(8)]
        try:
            deadline = time.monotonic() + 30
            while acks() < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            # Kill a worker that is serving: one that just answered /health.
            with fresh_client() as c:
                victim = next(
                    pid
                    for _ in range(200)
                    if (pid := ok(c.get(f"{a.base}/health"))["pid"]) in before
                )
            os.kill(victim, signal.SIGKILL)
            killed_at, acked_at_kill = time.monotonic(), acks()
            # Writes go on while uvicorn notices and spawns a replacement.
            deadline = killed_at + 60
            while time.monotonic() < deadline:
                now = a.workers()
                if victim not in now and len(now) == WORKERS and acks() >= acked_at_kill + 40:
                    break
                time.sleep(0.1)
            spawned_in = time.monotonic() - killed_at
        finally:
            stop.set()
        for f in futures:
            f.result()

    after = a.workers()
    assert victim not in after and len(after) == WORKERS, (before, after, a.tail())
    assert acks() >= acked_at_kill + 40, "A stopped acknowledging writes after the kill"
    assert not server_errors, server_errors
    with fresh_client() as c:
        # The replacement serves too (the kernel picks the accepting worker: keep asking).
        replacement, answered = after - before, set()
        deadline = time.monotonic() + 30
        while not answered & replacement and time.monotonic() < deadline:
            answered.add(ok(c.get(f"{a.base}/health"), a)["pid"])
        assert victim not in answered and answered <= after
        assert answered & replacement, f"the replacement {replacement} never answered"
        serving_in = time.monotonic() - killed_at
        # Every acknowledged add is there, read through the other service.
        assert get_many_texts(c, b.base + rec_url, acked) == acked
        # Retry every write whose outcome is unknown, with the same id: safe (idempotent).
        for rid, text in unacked.items():
            (res,) = ok(c.post(b.base + rec_url, json={"text": text, "id": rid}), b)["results"]
            assert res["outcome"] in ("written", "unchanged"), res
        everything = {**acked, **unacked}
        assert get_many_texts(c, b.base + rec_url, everything) == everything
        count = ok(c.post(f"{a.base}{rec_url}/count", json={}))["count"]
        assert count == len(everything), "a retried write was applied twice"
    print(
        f"\nkill -9 of worker {victim}: {len(acked)} acked, {len(unacked)} retried; "
        f"replacement spawned {spawned_in:.1f} s and answering {serving_in:.1f} s after the kill"
    )
