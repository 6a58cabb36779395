"""``Client`` and ``AsyncClient``: ``Memory``/``AsyncMemory`` over the REST service.

The verbs come from ``base.py`` (and its generated async twin); what is shared by both
faces — the retry rule, headers, reading answers — is in ``transport.py``. Here is only the
I/O: one pooled ``httpx`` client (keep-alive) per object, and its views from
``with_namespace`` share it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from engramdb.client import wire
from engramdb.client._async_base import AsyncClientMethods
from engramdb.client.base import ClientMethods
from engramdb.client.transport import (
    Endpoint,
    Policy,
    answer,
    count_exported,
    read_json,
    unreachable,
)
from engramdb.errors import ValidationError

DEFAULT_NAMESPACE = "default"
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)
_CHUNK = 1 << 20


def _namespace(namespace: str | None) -> str:
    # the library's default: ENGRAM_NAMESPACE, else "default"
    return namespace or os.environ.get("ENGRAM_NAMESPACE") or DEFAULT_NAMESPACE


def _check(url: object, timeout: object, retries: object) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValidationError(f"url must be the service's http(s) base URL, got {url!r}")
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ValidationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValidationError(f"retries must be 0 or more, got {retries!r}")
    return url.rstrip("/")


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 10.0))


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


class Client(ClientMethods):
    """``Memory``'s methods, arguments, results and errors, over HTTP.

    Example::

        from engramdb.client import Client
        with Client("http://127.0.0.1:8080", api_key="...", namespace="team") as mem:
            mem.add("Alice moved to Lisbon in 2021", user_id="alice")
            hits = mem.search("where does alice live?", user_id="alice")

    Writes carry an ``Idempotency-Key`` so a write retried after a lost answer is applied
    once; reads are retried as they are. ``retries`` extra attempts at most, waits of
    ``backoff_s`` doubling to ``max_backoff_s`` with jitter.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        namespace: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = _check(url, timeout, retries)
        self.namespace = _namespace(namespace)
        self._endpoint = Endpoint(base, api_key)
        self._policy = Policy(retries, backoff_s, max_backoff_s)
        self._http = httpx.Client(
            base_url=base, timeout=_timeout(timeout), limits=LIMITS, transport=transport
        )
        self._owner = True

    def with_namespace(self, namespace: str) -> Client:
        """A view of the same service in another namespace (shares the connection pool)."""
        view = object.__new__(Client)
        view.__dict__.update(self.__dict__)
        view.namespace = namespace
        view._owner = False
        return view

    def close(self) -> None:
        """Close the connection pool (only the object that made it closes it)."""
        if self._owner:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, op: str, **args: Any) -> Any:
        req = wire.encode(op, self.namespace, args)
        http_args = self._endpoint.request_args(req)
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = self._send(req, http_args)
            except httpx.TransportError as exc:
                outcome = exc
            delay = self._policy.delay(req, attempt, outcome)
            if delay is None:
                break
            time.sleep(delay)
            attempt += 1
        if not isinstance(outcome, httpx.Response):
            raise unreachable(self._endpoint, req, outcome, attempt + 1) from outcome
        ok = outcome.status_code in req.ok_statuses
        if req.download is not None and ok:
            body = count_exported(req.download) if req.op == "export" else None
        else:
            body = read_json(outcome)
        return answer(req, outcome.status_code, body)

    def _send(self, req: wire.Request, http_args: dict[str, Any]) -> httpx.Response:
        if req.upload is not None:
            with open(req.upload, "rb") as fh:
                return self._http.request(**http_args, content=iter(lambda: fh.read(_CHUNK), b""))
        if req.download is None:
            return self._http.request(**http_args)
        with self._http.stream(**http_args) as resp:
            if resp.status_code not in req.ok_statuses:
                resp.read()
                return resp
            with open(_part(req.download), "wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
        _part(req.download).replace(req.download)
        return resp


class AsyncClient(AsyncClientMethods):
    """``AsyncMemory``'s methods over HTTP: the same as :class:`Client`, awaited.

    Example::

        async with AsyncClient("http://127.0.0.1:8080", namespace="team") as mem:
            await mem.add("Alice moved to Lisbon in 2021", user_id="alice")
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        namespace: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = _check(url, timeout, retries)
        self.namespace = _namespace(namespace)
        self._endpoint = Endpoint(base, api_key)
        self._policy = Policy(retries, backoff_s, max_backoff_s)
        self._http = httpx.AsyncClient(
            base_url=base, timeout=_timeout(timeout), limits=LIMITS, transport=transport
        )
        self._owner = True

    def with_namespace(self, namespace: str) -> AsyncClient:
        """A view of the same service in another namespace (shares the connection pool)."""
        view = object.__new__(AsyncClient)
        view.__dict__.update(self.__dict__)
        view.namespace = namespace
        view._owner = False
        return view

    async def aclose(self) -> None:
        """Close the connection pool (only the object that made it closes it)."""
        if self._owner:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, op: str, **args: Any) -> Any:
        req = wire.encode(op, self.namespace, args)
        http_args = self._endpoint.request_args(req)
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self._send(req, http_args)
            except httpx.TransportError as exc:
                outcome = exc
            delay = self._policy.delay(req, attempt, outcome)
            if delay is None:
                break
            await asyncio.sleep(delay)
            attempt += 1
        if not isinstance(outcome, httpx.Response):
            raise unreachable(self._endpoint, req, outcome, attempt + 1) from outcome
        ok = outcome.status_code in req.ok_statuses
        if req.download is not None and ok:
            exported = req.op == "export"
            body = await asyncio.to_thread(count_exported, req.download) if exported else None
        else:
            body = read_json(outcome)
        return answer(req, outcome.status_code, body)

    async def _send(self, req: wire.Request, http_args: dict[str, Any]) -> httpx.Response:
        if req.upload is not None:
            return await self._http.request(**http_args, content=_read_chunks(req.upload))
        if req.download is None:
            return await self._http.request(**http_args)
        async with self._http.stream(**http_args) as resp:
            if resp.status_code not in req.ok_statuses:
                await resp.aread()
                return resp
            fh = await asyncio.to_thread(open, _part(req.download), "wb")
            try:
                async for chunk in resp.aiter_bytes():
                    await asyncio.to_thread(fh.write, chunk)
            finally:
                await asyncio.to_thread(fh.close)
        await asyncio.to_thread(_part(req.download).replace, req.download)
        return resp


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    fh = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(fh.read, _CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(fh.close)
