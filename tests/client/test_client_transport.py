"""``Client`` as a network citizen: retries (and which calls may be retried), the
Idempotency-Key that makes a retried write apply once, the key it sends, files moved both
ways, and what it raises when the service cannot be reached. Over real sockets: a real
service process, and a TCP proxy of our own that drops the first answer of a connection.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from client_helpers import ADMIN_HEADERS, ADMIN_KEY, Service, free_port

from engramdb.client import AsyncClient, Client
from engramdb.client.transport import Policy
from engramdb.client.wire import encode
from engramdb.errors import NotFoundError, StoreUnavailableError


class DroppingProxy:
    """Forwards TCP to the service; on its first ``drop`` connections it lets the request
    through, waits for the first byte of the answer (so the service has done the work),
    then closes both sides without passing the answer on: a lost answer."""

    def __init__(self, upstream_port: int, drop: int = 1) -> None:
        self.upstream_port = upstream_port
        self.drop = drop
        self.requests: list[bytearray] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            seen = bytearray()
            self.requests.append(seen)
            dropping = len(self.requests) <= self.drop
            threading.Thread(target=self._serve, args=(conn, seen, dropping), daemon=True).start()

    def _serve(self, conn: socket.socket, seen: bytearray, dropping: bool) -> None:
        up = socket.create_connection(("127.0.0.1", self.upstream_port))
        threading.Thread(target=_pump, args=(conn, up, seen), daemon=True).start()
        if dropping:
            up.recv(1)  # the service answered: the work is done
            for s in (up, conn):
                s.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked on it; close alone won't
                s.close()
            return
        _pump(up, conn, None)

    def close(self) -> None:
        self.server.close()


def _pump(src: socket.socket, dst: socket.socket, seen: bytearray | None) -> None:
    try:
        while chunk := src.recv(65536):
            if seen is not None:
                seen.extend(chunk)
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _header(raw: bytes, name: str) -> str:
    for line in raw.decode("latin-1").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    raise AssertionError(f"no {name} header in {raw[:300]!r}")


@pytest.fixture
def proxy(service: Service) -> Iterator[DroppingProxy]:
    p = DroppingProxy(service.port)
    yield p
    p.close()


def test_a_write_whose_answer_was_lost_is_retried_and_applied_once(
    service: Service, proxy: DroppingProxy, namespace: str
) -> None:
    with Client(proxy.url, api_key=ADMIN_KEY, namespace=namespace, backoff_s=0.01) as client:
        event = client.log_event("t", "paid", {"amount": 12})
    assert event.action == "paid"
    assert len(proxy.requests) == 2  # the first answer was dropped, the retry got through
    first, retry = (bytes(r) for r in proxy.requests)
    assert _header(first, "idempotency-key") == _header(retry, "idempotency-key")
    assert _header(first, "authorization") == f"Bearer {ADMIN_KEY}"
    with Client(service.url, namespace=namespace, api_key=ADMIN_KEY) as direct:
        assert [e.action for e in direct.events("t")] == ["paid"]  # not twice


def test_a_read_is_retried_but_a_call_that_is_not_repeatable_is_not(
    service: Service, namespace: str
) -> None:
    with Client(service.url, namespace=namespace, api_key=ADMIN_KEY) as direct:
        rid = direct.add("retry me")[0].id
    reads = DroppingProxy(service.port)
    with Client(reads.url, namespace=namespace, backoff_s=0.01, api_key=ADMIN_KEY) as client:
        assert client.get(rid).text == "retry me"
    assert len(reads.requests) == 2
    reads.close()
    admin = DroppingProxy(service.port)
    client = Client(admin.url, namespace=namespace, backoff_s=0.01, api_key=ADMIN_KEY)
    with client, pytest.raises(StoreUnavailableError) as caught:
        client.doctor(repair=True)
    assert len(admin.requests) == 1 and caught.value.details["attempts"] == 1
    admin.close()


def test_the_service_keeps_an_idempotency_key_per_caller(service: Service, namespace: str) -> None:
    path = f"/v1/namespaces/{namespace}/threads/t/events"
    body = {"action": "charged"}
    own_key = service.namespace_key(namespace)
    with httpx.Client(base_url=service.url, headers=ADMIN_HEADERS) as http:
        one = http.post(path, json=body, headers={"Idempotency-Key": "k1"})
        two = http.post(path, json=body, headers={"Idempotency-Key": "k1"})
        assert one.status_code == two.status_code == 201
        assert two.json() == one.json() and two.headers["idempotent-replayed"] == "true"
        other = http.post(
            path, json=body, headers={"Idempotency-Key": "k1", "Authorization": f"Bearer {own_key}"}
        )
        assert other.status_code == 201, other.text
        assert other.json()["id"] != one.json()["id"]  # another caller's key is its own
        bad = http.post(path, json=body, headers={"Idempotency-Key": "has space"})
        assert bad.status_code == 422 and "Idempotency-Key" in bad.json()["message"]
        events = http.get(path).json()["events"]
    assert len(events) == 2


def test_an_unreachable_service_raises_store_unavailable_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        Client(url, retries=2, backoff_s=0.01) as client,
        pytest.raises(StoreUnavailableError) as caught,
    ):
        client.get("x")
    assert caught.value.details["attempts"] == 3 and url in caught.value.message


def test_the_retry_rule() -> None:
    policy = Policy(retries=2, backoff_s=0.1, max_backoff_s=1.0)
    read, write, admin = (
        encode("get", "ns", {"id": "r"}),
        encode("add", "ns", {"text": "t"}),
        encode("doctor", "ns", {"repair": True}),
    )
    assert read.repeatable and write.repeatable and write.keyed and not admin.repeatable
    never_sent = httpx.ConnectError("refused")
    lost = httpx.ReadTimeout("lost")
    assert policy.delay(admin, 0, never_sent) is not None  # nothing was sent: always safe
    assert policy.delay(admin, 0, lost) is None
    assert policy.delay(write, 0, lost) is not None
    busy = httpx.Response(503)
    assert policy.delay(read, 1, busy) is not None and policy.delay(read, 2, busy) is None
    assert policy.delay(admin, 0, busy) is None
    assert policy.delay(read, 0, httpx.Response(404)) is None
    limited = httpx.Response(429, headers={"Retry-After": "7"})
    assert policy.delay(admin, 0, limited) == 7.0
    for attempt in range(2):
        assert 0.0 <= (policy.delay(read, attempt, busy) or 0.0) <= 0.1 * 2**attempt


@pytest.mark.slow
def test_files_move_both_ways(tmp_path: Path) -> None:
    """backup, export, import_ and restore move local files (a service of its own: restore
    replaces the whole store)."""
    served = Service(tmp_path / "files.db", tmp_path / "files.log").wait_ready()
    try:
        with Client(served.url, namespace="src", api_key=ADMIN_KEY) as client:
            client.add(["one", "two", "three"])
            seen: list[int] = []
            assert client.export(tmp_path / "out.jsonl", progress=seen.append) == 3
            assert seen == [3]
            copy = client.with_namespace("copy")
            assert copy.import_(tmp_path / "out.jsonl")["written"] == 3
            assert copy.count() == 3
            client.backup(tmp_path / "backup.db")
            with sqlite3.connect(tmp_path / "backup.db") as conn:
                assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 6
            conn.close()
            copy.delete_all(all=True)
            assert copy.count() == 0
            client.restore(tmp_path / "backup.db")
            assert copy.count() == 3
            with pytest.raises(NotFoundError):
                client.restore(tmp_path / "no-such-file.db")
    finally:
        assert served.stop() == 0, served.tail()


async def test_the_async_client_retries_too(
    service: Service, proxy: DroppingProxy, namespace: str
) -> None:
    async with AsyncClient(
        proxy.url, namespace=namespace, backoff_s=0.01, api_key=ADMIN_KEY
    ) as client:
        [result] = await client.add("async and retried")
        view = client.with_namespace(namespace)
        assert (await view.get(result.id)).text == "async and retried"
    assert len(proxy.requests) == 2  # a lost answer; its retry and the get share a connection
    async with AsyncClient(service.url, namespace=namespace, api_key=ADMIN_KEY) as direct:
        assert await direct.count() == 1
