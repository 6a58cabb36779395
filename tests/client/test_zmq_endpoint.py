"""The ZeroMQ endpoint over real sockets: the frame protocol, answers equal to REST's, every
failure an ``ok: false`` answer on a socket that keeps serving, concurrency on one ROUTER,
the key hook, and one endpoint per service whatever the number of HTTP workers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zmq
from client_helpers import ADMIN_HEADERS, ADMIN_KEY, Service, free_port
from fastapi.testclient import TestClient

from engramdb import HashEmbedder, Memory
from engramdb.client import ZmqClient
from engramdb.config import Settings
from engramdb.errors import (
    AuthenticationError,
    NotSupportedError,
    PermissionDeniedError,
    StoreUnavailableError,
    ValidationError,
)
from engramdb.server import create_app
from engramdb.zmq import ZmqEndpoint

TIMEOUT_MS = 30_000


@pytest.fixture
def req(service: Service) -> Iterator[zmq.Socket[bytes]]:
    """A plain REQ socket, the strictest client: one answer per request, in order."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    sock.connect(service.zmq_url)
    yield sock
    sock.close(0)


def ask(sock: zmq.Socket[bytes], frame: Any) -> dict[str, Any]:
    if isinstance(frame, dict) and "api_key" not in frame:
        frame = {**frame, "api_key": ADMIN_KEY}
    raw = frame if isinstance(frame, bytes) else json.dumps(frame).encode()
    sock.send(raw)
    reply: dict[str, Any] = json.loads(sock.recv())
    return reply


def test_a_result_is_the_rest_body_and_an_error_the_rest_code(
    service: Service, req: zmq.Socket[bytes], namespace: str
) -> None:
    added = ask(req, {"op": "add", "namespace": namespace, "args": {"text": "over zmq"}, "id": 7})
    assert added["ok"] is True and added["id"] == 7
    rid = added["result"]["results"][0]["id"]
    got = ask(req, {"op": "get", "namespace": namespace, "args": {"id": rid}})
    rest = httpx.get(
        f"{service.url}/v1/namespaces/{namespace}/records/{rid}", headers=ADMIN_HEADERS
    )
    assert got == {"ok": True, "result": rest.json()}
    missing = ask(req, {"op": "get", "namespace": namespace, "args": {"id": "nope"}})
    rest_missing = httpx.get(
        f"{service.url}/v1/namespaces/{namespace}/records/nope", headers=ADMIN_HEADERS
    ).json()
    assert missing["ok"] is False
    assert (missing["error"], missing["message"]) == (
        rest_missing["error"],
        rest_missing["message"],
    )
    stale = ask(
        req,
        {
            "op": "update",
            "namespace": namespace,
            "args": {"id": rid, "text": "x", "expected_version": 9},
        },
    )
    assert (stale["ok"], stale["error"]) == (False, "conflict")


@pytest.mark.parametrize(
    ("frame", "names"),
    [
        (b"not json at all", "not JSON"),
        (b"\xff\xfe\x00garbage", "UTF-8"),
        (b"[1, 2, 3]", "JSON object"),
        (b'{"op": "count", "args": {"filters": {"n": NaN}}}', "not JSON"),
        ({"op": "drop_tables", "args": {}}, "drop_tables"),
        ({"op": "backup", "args": {"path": "/etc/passwd"}}, "backup"),
        ({"op": "restore", "args": {"path": "/tmp/x"}}, "restore"),
        ({"op": "get", "args": {"idd": "x"}}, "idd"),
        ({"op": "get", "args": ["x"]}, "args"),
        ({"op": "get", "namespace": 5, "args": {"id": "x"}}, "namespace"),
        ({"op": "get", "args": {"id": "x"}, "sql": "DROP"}, "sql"),
        ({"op": "add", "namespace": "bad ns!", "args": {"text": "x"}}, "namespace"),
    ],
)
def test_every_bad_frame_gets_ok_false_and_the_socket_keeps_serving(
    req: zmq.Socket[bytes], frame: Any, names: str
) -> None:
    reply = ask(req, frame)
    assert reply["ok"] is False and reply["error"] == "validation_error", reply
    assert names in reply["message"], reply
    assert "Traceback" not in json.dumps(reply)
    after = ask(req, {"op": "health"})
    assert after["ok"] is True and after["result"]["status"] == "ok"


def test_one_router_answers_many_calls_in_flight(service: Service, namespace: str) -> None:
    # two keys, 20 calls each: every key stays under the service's per-key concurrency
    # limit (32), so no answer may be a rate_limited refusal whatever the scheduling
    keys = [ADMIN_KEY, service.namespace_key(namespace)]
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    dealer.connect(service.zmq_url)
    try:
        for i in range(40):
            frame = {
                "op": "add",
                "namespace": namespace,
                "api_key": keys[i % 2],
                "args": {"text": f"fact {i}"},
                "id": i,
            }
            dealer.send_multipart([b"", json.dumps(frame).encode()])
        # a DEALER that sends no empty delimiter is answered the same way
        dealer.send_multipart([json.dumps({"op": "health", "id": "h"}).encode()])
        replies = [json.loads(dealer.recv_multipart()[-1]) for _ in range(41)]
    finally:
        dealer.close(0)
    assert sorted(r["id"] for r in replies if r["id"] != "h") == list(range(40))
    assert [r for r in replies if not r["ok"]] == []
    with ZmqClient(service.zmq_url, api_key=ADMIN_KEY, namespace=namespace) as client:
        assert client.count() == 40


def test_a_client_that_leaves_mid_call_does_not_disturb_the_next(
    service: Service, namespace: str
) -> None:
    for _ in range(5):
        gone = zmq.Context.instance().socket(zmq.REQ)
        gone.setsockopt(zmq.LINGER, 0)
        gone.connect(service.zmq_url)
        gone.send(
            json.dumps({"op": "search", "namespace": namespace, "args": {"query": "q"}}).encode()
        )
        gone.close(0)
    with ZmqClient(service.zmq_url, api_key=ADMIN_KEY, namespace=namespace) as client:
        assert client.health()["status"] == "ok"


def test_the_zmq_client_refuses_file_calls_and_reports_a_silent_endpoint() -> None:
    silent = f"tcp://127.0.0.1:{free_port()}"
    with ZmqClient(silent, timeout=0.5) as client:
        with pytest.raises(NotSupportedError):
            client.backup("/tmp/b.db")
        with pytest.raises(StoreUnavailableError) as caught:
            client.count()
    assert silent in caught.value.message
    with pytest.raises(StoreUnavailableError):
        client.count()  # closed by the with block: an engramdb error, not a zmq one
    with pytest.raises(ValidationError):
        ZmqClient("http://127.0.0.1:1")


@pytest.fixture
def keyed_endpoint(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An endpoint in this process over the REST app with real keys: its URL and a key of
    namespace ``ns-a`` (the REST app behind the endpoint checks the key of every frame)."""
    settings = Settings(url=f"sqlite:///{tmp_path / 'keyed.db'}", admin_key=ADMIN_KEY)
    with Memory(settings=settings, embedder=HashEmbedder()) as mem:
        app = create_app(mem)
        with TestClient(app) as http:
            made = http.post("/v1/admin/keys", json={"namespace": "ns-a"}, headers=ADMIN_HEADERS)
            assert made.status_code == 201, made.text
        endpoint = ZmqEndpoint(app, "tcp://127.0.0.1:*")
        endpoint.start()
        try:
            assert endpoint.bound_url is not None
            yield endpoint.bound_url, made.json()["key"]
        finally:
            endpoint.stop()


def test_keys_decide_and_the_socket_keeps_serving(keyed_endpoint: tuple[str, str]) -> None:
    url, key = keyed_endpoint
    with ZmqClient(url, api_key=key, namespace="ns-a") as own:
        own.add("tenant a's fact")
        with pytest.raises(PermissionDeniedError):
            own.with_namespace("ns-b").count()
        with ZmqClient(url, api_key="wrong", namespace="ns-a") as wrong:
            with pytest.raises(AuthenticationError) as caught:
                wrong.count()
            assert caught.value.details["status"] == 401
        anonymous = ZmqClient(url, namespace="ns-a")
        with anonymous, pytest.raises(AuthenticationError):
            anonymous.search("fact")
        assert own.count() == 1


def test_an_address_in_use_is_a_clear_error(
    keyed_endpoint: tuple[str, str], tmp_path: Path
) -> None:
    url = keyed_endpoint[0]
    with Memory(f"sqlite:///{tmp_path / 'second.db'}", embedder=HashEmbedder()) as mem:
        second = ZmqEndpoint(create_app(mem), url)
        with pytest.raises(ValidationError) as caught:
            second.start()
    assert url in caught.value.message


@pytest.mark.slow
def test_one_endpoint_for_two_workers_from_the_environment(tmp_path: Path) -> None:
    served = Service(tmp_path / "two.db", tmp_path / "two.log", workers=2, zmq_by_env=True)
    try:
        served.wait_ready()
        with ZmqClient(served.zmq_url, api_key=ADMIN_KEY, namespace="w") as client:
            client.add(["from zmq one", "from zmq two"])
            assert client.count() == 2
        fresh = httpx.Limits(max_keepalive_connections=0)  # each call may reach either worker
        with httpx.Client(base_url=served.url, limits=fresh, headers=ADMIN_HEADERS) as http:
            for _ in range(10):
                assert http.post("/v1/namespaces/w/records/count", json={}).json() == {"count": 2}
    finally:
        assert served.stop() == 0, served.tail()
    assert "Address already in use" not in served.log.read_text(errors="replace")
