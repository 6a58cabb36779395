"""``ZmqClient``: ``Memory``'s methods over the service's ZeroMQ endpoint.

A call is one JSON frame ``{"op", "namespace", "api_key", "args", "id"}``; the answer is
``{"ok": true, "result": <the REST body>}`` or ``{"ok": false, "error", "message"}``, read
by the same decoders and error table as the HTTP client. A DEALER socket (not REQ): a call
that times out leaves no socket state behind, and its late answer is recognised by ``id``
and dropped.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import zmq

from engramdb.client import decode, wire
from engramdb.client.base import ClientMethods
from engramdb.client.http import _namespace
from engramdb.errors import (
    NotSupportedError,
    ResponseError,
    StoreUnavailableError,
    ValidationError,
    error_from_body,
)

SCHEMES = ("tcp://", "ipc://", "inproc://")


class _Socket:
    """One DEALER socket and the lock that keeps one call on it at a time."""

    def __init__(self, url: str, context: zmq.Context[Any] | None) -> None:
        self.url = url
        self.context = context or zmq.Context.instance()
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(url)
        self.lock = threading.Lock()
        self.ids = itertools.count(1)

    def call(self, frame: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        try:
            return self._call(frame, timeout_s)
        except zmq.ZMQError as exc:  # a closed socket, a terminated context
            raise StoreUnavailableError(
                f"the ZeroMQ socket to {self.url} cannot send {frame['op']}: {exc}",
                url=self.url,
                op=frame["op"],
            ) from exc

    def _call(self, frame: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        with self.lock:
            frame["id"] = next(self.ids)
            self.sock.send_multipart([b"", json.dumps(frame).encode()])
            deadline = time.monotonic() + timeout_s
            while True:
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0 or not self.sock.poll(left_ms, zmq.POLLIN):
                    raise StoreUnavailableError(
                        f"the ZeroMQ endpoint at {self.url} did not answer {frame['op']} "
                        f"within {timeout_s} s",
                        url=self.url,
                        op=frame["op"],
                    )
                parts = self.sock.recv_multipart()
                reply = _parse(parts[-1], frame["op"])
                if reply.get("id") == frame["id"]:
                    return reply
                # the late answer of a call that timed out: not ours

    def close(self) -> None:
        self.sock.close(linger=0)


def _parse(raw: bytes, op: str) -> dict[str, Any]:
    try:
        reply = json.loads(raw)
    except ValueError as exc:
        raise ResponseError(f"the ZeroMQ answer to {op} is not JSON", op=op) from exc
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ResponseError(f"the ZeroMQ answer to {op} has no boolean 'ok'", op=op)
    return reply


class ZmqClient(ClientMethods):
    """``Memory``'s methods, results and errors over ZeroMQ (``engramdb serve --zmq URL``).

    Example::

        from engramdb.client import ZmqClient
        with ZmqClient("tcp://127.0.0.1:5570", namespace="team") as mem:
            mem.add("Alice moved to Lisbon in 2021", user_id="alice")

    Calls that move files (backup, restore, export, import_) and the admin calls (doctor,
    reembed) are REST-only: they raise ``NotSupportedError`` here.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        namespace: str | None = None,
        *,
        timeout: float = 30.0,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(SCHEMES):
            raise ValidationError(
                f"url must be a ZeroMQ address ({', '.join(SCHEMES)}), got {url!r}"
            )
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ValidationError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.namespace = _namespace(namespace)
        self._api_key = api_key
        self._timeout = float(timeout)
        self._socket = _Socket(url, context)
        self._owner = True

    def with_namespace(self, namespace: str) -> ZmqClient:
        """A view of the same endpoint in another namespace (shares the socket)."""
        view = object.__new__(ZmqClient)
        view.__dict__.update(self.__dict__)
        view.namespace = namespace
        view._owner = False
        return view

    def close(self) -> None:
        """Close the socket (only the object that made it closes it)."""
        if self._owner:
            self._socket.close()

    def __enter__(self) -> ZmqClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, op: str, **args: Any) -> Any:
        wire.encode(op, self.namespace, args)  # the same argument errors as over HTTP
        if op not in wire.FRAME_OPS:
            raise NotSupportedError(
                f"{op} is not offered over ZeroMQ; use engramdb.client.Client (REST)",
                backend="zmq",
                capability=op,
            )
        frame = {
            "op": op,
            "namespace": self.namespace,
            "api_key": self._api_key,
            "args": wire.jsonable({k: v for k, v in args.items() if v is not None}),
        }
        reply = self._socket.call(frame, self._timeout)
        if not reply["ok"]:
            raise error_from_body(int(reply.get("status") or 0), reply)
        return decode.decode(op, reply.get("result"))
