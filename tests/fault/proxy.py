"""A fault-injecting TCP proxy for the PostgreSQL fault tests (D1, C3's lost COMMIT).

It listens on a free loopback port and forwards every connection to the real server,
with two pump threads per connection. Controls, callable from the test's thread:

* ``pass_()``: forward normally (the default);
* ``drop()``: reset every open connection now (RST, as a crashed peer or a NAT flush);
* ``blackhole()``: accept and read, never forward, in both directions (a hung server or
  a silent network path: TCP stays up, no reply ever comes);
* ``latency(seconds)``: delay every forwarded chunk;
* ``cut_at_commit(forward=...)``: one shot: on the next ``COMMIT`` sent by a client, either
  forward it, swallow the server's reply and reset the connection (the commit happened,
  the client cannot know), or reset before forwarding (it did not happen, and the client
  cannot know either).

PostgreSQL clients send a transaction's end as a simple-protocol query message
``'Q' int32(11) "COMMIT\\0"`` (psycopg's ``Transaction`` does), which is what the cut
looks for.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

COMMIT_MSG = b"Q" + struct.pack("!i", 11) + b"COMMIT\x00"


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    swallow: bool = False  # the COMMIT went through: drop the reply, then the link
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                # SO_LINGER 0: close sends RST, like a crashed peer.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


class FaultProxy:
    """A TCP forwarder to ``target_port`` on 127.0.0.1 with fault controls (see module)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._mode = "pass"
        self._latency = 0.0
        self._cut: bool | None = None  # None: no cut armed; else forward the COMMIT or not
        self.commits_cut = 0
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ controls

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0] + "@" if len(netloc) == 2 else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def pass_(self) -> None:
        """Forward normally again; links that lost bytes in a blackhole are reset."""
        with self._lock:
            was = self._mode
            self._mode = "pass"
            self._latency = 0.0
        if was == "blackhole":
            self.drop()

    def blackhole(self) -> None:
        """Accept and read, never forward (both directions, existing links included)."""
        with self._lock:
            self._mode = "blackhole"

    def latency(self, seconds: float) -> None:
        """Delay every forwarded chunk by ``seconds``."""
        with self._lock:
            self._latency = seconds

    def drop(self) -> int:
        """Reset every open connection now; return how many there were."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.reset()
        return len(links)

    def cut_at_commit(self, *, forward: bool) -> None:
        """Arm a one-shot cut at the next COMMIT (see module docstring)."""
        with self._lock:
            self._cut = forward

    def close(self) -> None:
        """Stop accepting and reset every link."""
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self.drop()

    # ------------------------------------------------------------------ pumps

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                with contextlib.suppress(OSError):
                    client.close()
                continue
            link = _Link(client, server)
            with self._lock:
                self._links.append(link)
            for src, dst, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(link, src, dst, upstream), daemon=True
                ).start()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    mode, delay, cut = self._mode, self._latency, self._cut
                if mode == "blackhole":
                    continue
                if delay:
                    time.sleep(delay)
                if not upstream and link.swallow:
                    break  # the reply to the forwarded COMMIT: lost on the way
                if upstream and cut is not None and COMMIT_MSG in data:
                    with self._lock:
                        self._cut = None
                        self.commits_cut += 1
                    end = data.index(COMMIT_MSG) + len(COMMIT_MSG)
                    if not cut:
                        break  # reset before the server sees COMMIT
                    link.swallow = True
                    dst.sendall(data[:end])
                    continue  # wait for the server's reply, swallow it, then reset
                dst.sendall(data)
        except OSError:
            pass
        link.reset()
        with self._lock, contextlib.suppress(ValueError):
            self._links.remove(link)
