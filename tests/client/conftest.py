"""Fixtures of the client tests: one real service process per module (HTTP and ZeroMQ), and
each face of the verbs — embedded ``Memory``, ``Client`` over HTTP, ``ZmqClient`` — in a
namespace of its own per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from client_helpers import Service

from engramdb import AsyncMemory, HashEmbedder, Memory
from engramdb.client import AsyncClient, Client, ZmqClient


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """``engramdb serve --no-model --zmq ...`` on free loopback ports, for the module."""
    tmp = tmp_path_factory.mktemp("service")
    served = Service(tmp / "service.db", tmp / "service.log").wait_ready()
    yield served
    assert served.stop() == 0, served.tail()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "client", "zmq"])
def face(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> Iterator[Any]:
    """The same verbs three ways: embedded, over HTTP to the service, over ZeroMQ to it."""
    if request.param == "memory":
        with Memory(
            f"sqlite:///{tmp_path / 'embedded.db'}", namespace=namespace, embedder=HashEmbedder()
        ) as mem:
            yield mem
        return
    service: Service = request.getfixturevalue("service")
    if request.param == "client":
        key = service.namespace_key(namespace)
        with Client(service.url, api_key=key, namespace=namespace) as client:
            yield client
        return
    key = service.namespace_key(namespace)
    with ZmqClient(service.zmq_url, api_key=key, namespace=namespace) as zmq_client:
        yield zmq_client


@pytest.fixture(params=["async_memory", "async_client"])
async def async_face(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> AsyncIterator[Any]:
    """The asyncio faces: embedded ``AsyncMemory`` and ``AsyncClient`` over HTTP."""
    if request.param == "async_memory":
        mem = await AsyncMemory.open(
            f"sqlite:///{tmp_path / 'embedded.db'}", namespace=namespace, embedder=HashEmbedder()
        )
        async with mem:
            yield mem
        return
    service: Service = request.getfixturevalue("service")
    key = service.namespace_key(namespace)
    async with AsyncClient(service.url, api_key=key, namespace=namespace) as client:
        yield client
