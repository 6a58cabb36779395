"""``ZmqEndpoint``: a ROUTER socket on its own thread and event loop, answering JSON frames.

Why ROUTER: a REP socket must answer before it reads again, so one slow or lost call
wedges it; a ROUTER reads the next frame at once and answers each by its envelope, in any
order. Requests run concurrently up to ``max_in_flight``; past that the endpoint stops
reading (ZeroMQ queues, then pushes back on senders) instead of growing without bound.

Each frame becomes the REST request of its op (``engramdb.client.wire``) and is dispatched
in-process into the REST app, so a ZeroMQ call gets the same validation, keys, limits and
answers as the same call over HTTP, byte for byte in ``result``. Every failure, a malformed
frame included, is an ``ok: false`` answer; the loop never raises out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import zmq
import zmq.asyncio

from engramdb.client import wire
from engramdb.errors import EngramError, ValidationError, status_for
from engramdb.zmq.auth import Authorize, authorize

log = logging.getLogger("engramdb.zmq")
SCHEMES = ("tcp://", "ipc://", "inproc://")
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""A larger message disconnects its sender (ZeroMQ's MAXMSGSIZE); the REST app's own body
limits apply to everything smaller."""
_POLL_MS = 100
_DISPATCH_BASE = "http://zmq.internal"


class ZmqEndpoint:
    """Serves ``app`` (the REST ASGI app) on the ZeroMQ address ``url``.

    ``start()`` returns once the socket is bound (or raises why it could not bind);
    ``stop()`` stops reading, lets the calls in flight answer, and closes the socket.
    """

    def __init__(
        self,
        app: Any,
        url: str,
        *,
        authorize: Authorize = authorize,
        default_namespace: str = "default",
        max_in_flight: int = 64,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(SCHEMES):
            raise ValidationError(
                f"the ZeroMQ address must start with one of {', '.join(SCHEMES)}, got {url!r}",
                field="zmq_url",
            )
        self.app = app
        self.url = url
        self.authorize = authorize
        self.default_namespace = default_namespace
        self.max_in_flight = max_in_flight
        self.bound_url: str | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve on a daemon thread.

        Raises:
            ValidationError: the address cannot be bound (in use, malformed); the message
                names it.
        """
        self._thread = threading.Thread(target=self._run, name="engramdb-zmq", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise ValidationError(
                f"cannot bind the ZeroMQ endpoint {self.url}: {self._failure}", field="zmq_url"
            ) from self._failure

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop reading frames, finish the calls in flight, close the socket."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); a running loop never gets here
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        context = zmq.asyncio.Context()
        sock = context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        try:
            sock.bind(self.url)
        except zmq.ZMQError:
            sock.close(0)
            context.term()
            raise
        self.bound_url = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._ready.set()
        slots = asyncio.Semaphore(self.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=_DISPATCH_BASE) as http:
            try:
                while not self._stopping.is_set():
                    if not await sock.poll(_POLL_MS):
                        continue
                    frames = await sock.recv_multipart()
                    await slots.acquire()
                    task = asyncio.create_task(self._answer(sock, http, frames, slots))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.wait(tasks)
            finally:
                sock.close(0)
                context.term()

    async def _answer(
        self,
        sock: zmq.asyncio.Socket,
        http: httpx.AsyncClient,
        frames: list[bytes],
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            if len(frames) < 2:  # a ROUTER always prepends the sender's identity
                return
            reply = await self.handle(frames[-1], http)
            await sock.send_multipart([*frames[:-1], json.dumps(reply).encode()])
        except Exception:  # one call's failure never stops the loop
            log.exception("ZeroMQ call failed while answering")
        finally:
            slots.release()

    async def handle(self, raw: bytes, http: httpx.AsyncClient) -> dict[str, Any]:
        """The answer to one request frame (always a dict; failures are ``ok: false``)."""
        request_id: Any = None
        try:
            frame = _parse_frame(raw)
            request_id = frame.get("id")
            op, namespace, api_key, args = self._fields(frame)
            self.authorize(api_key, namespace, op)
            req = wire.encode(op, namespace, args)
            reply = await self._dispatch(http, req, api_key)
        except EngramError as exc:
            reply = {
                "ok": False,
                "error": exc.code,
                "message": exc.message,
                "details": _plain(exc.details),
                "status": status_for(exc),
            }
        except Exception:
            log.exception("ZeroMQ call raised")
            reply = {
                "ok": False,
                "error": "internal_error",
                "message": "internal server error; see the server log",
                "status": 500,
            }
        if _is_id(request_id):
            reply["id"] = request_id
        return reply

    def _fields(self, frame: dict[str, Any]) -> tuple[str, str, str | None, dict[str, Any]]:
        unknown = sorted(set(frame) - {"op", "namespace", "api_key", "args", "id"})
        if unknown:
            raise ValidationError(f"unknown frame fields: {', '.join(unknown)}", fields=unknown)
        op = frame.get("op")
        if not isinstance(op, str) or op not in wire.FRAME_OPS:
            raise ValidationError(
                f"unknown op {op!r}; one of: {', '.join(sorted(wire.FRAME_OPS))}", field="op"
            )
        namespace = frame.get("namespace", self.default_namespace)
        if not isinstance(namespace, str) or not namespace:
            raise ValidationError("namespace must be a non-empty string", field="namespace")
        api_key = frame.get("api_key")
        if api_key is not None and not isinstance(api_key, str):
            raise ValidationError("api_key must be a string", field="api_key")
        args = frame.get("args", {})
        if not isinstance(args, dict):
            raise ValidationError("args must be an object of keyword arguments", field="args")
        return op, namespace, api_key, args

    async def _dispatch(
        self, http: httpx.AsyncClient, req: wire.Request, api_key: str | None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        content = None
        if req.body is not None:
            # ASCII escapes: a lone surrogate reaches the app's validation as text, not as
            # bytes that cannot be encoded
            content = json.dumps(req.body, allow_nan=False).encode("ascii")
            headers["Content-Type"] = "application/json"
        try:
            params: list[tuple[str, str | int | float | bool | None]] = [
                (k, v.encode("utf-8").decode("utf-8")) for k, v in req.params
            ]
        except UnicodeError as exc:
            raise ValidationError("a query argument is not valid Unicode text") from exc
        resp = await http.request(
            req.method, req.path, params=params or None, content=content, headers=headers
        )
        body = resp.json() if resp.content else None
        if resp.status_code in req.ok_statuses:
            return {"ok": True, "result": body}
        fields = body if isinstance(body, dict) else {}
        return {
            "ok": False,
            "error": str(fields.get("error") or "http_error"),
            "message": str(fields.get("message") or f"the call failed with {resp.status_code}"),
            "details": fields.get("details") or {},
            "status": resp.status_code,
        }


def _parse_frame(raw: bytes) -> dict[str, Any]:
    try:
        frame = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise ValidationError("the frame is not UTF-8 text", field="frame") from exc
    except ValueError as exc:
        raise ValidationError(f"the frame is not JSON: {exc}", field="frame") from exc
    except RecursionError as exc:
        raise ValidationError("the frame nests too deeply", field="frame") from exc
    if not isinstance(frame, dict):
        raise ValidationError("the frame must be a JSON object", field="frame")
    return frame


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _is_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and len(value) <= 200
    )


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        try:
            json.dumps(value)
            out[key] = value
        except (TypeError, ValueError):
            out[key] = repr(value)
    return out


@contextmanager
def serve_zmq(app: Any, url: str | None, **options: Any) -> Iterator[ZmqEndpoint | None]:
    """Serve ``app`` on ``url`` for the duration of the block (nothing when ``url`` is None).

    Bind it once per service: the runner does, in the process that supervises the HTTP
    workers, whatever their number.
    """
    if not url:
        yield None
        return
    endpoint = ZmqEndpoint(app, url, **options)
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()
