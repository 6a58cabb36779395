"""A loopback server speaking the OpenAI HTTP protocol, for the tests of what calls one.

engramdb talks to three OpenAI-style endpoints: embeddings (`openai:<model>` embedder), and
chat completions for the fact extractor and the summarizer. Each of their tests needs a real
socket answering like the provider would, with failures it can switch on. This is that
server, written once: ``POST /v1/embeddings`` answers with hash-embedder vectors (so a text's
own vector finds it), ``POST /v1/chat/completions`` answers with what ``chat_answer`` returns
for the request. Every request is kept as ``{"path", "auth", "body"}``.

``mode`` injects failures: ``"unauthorized"`` (401), ``"overloaded"`` (503), ``"malformed"``
(200 with a body that is not the protocol's), ``"error"`` (500 with a non-JSON body); a
``key`` set on the server makes any other bearer token a 401.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engramdb import HashEmbedder

ChatAnswer = Callable[[dict[str, Any]], str]


def _no_answer(body: dict[str, Any]) -> str:
    return "{}"


class OpenAIProtocolServer:
    """``/v1/embeddings`` and ``/v1/chat/completions`` on 127.0.0.1, on a thread of its own."""

    def __init__(self, *, key: str | None = None, dim: int = 32) -> None:
        self.key = key
        self.hasher = HashEmbedder(dim)
        self.requests: list[dict[str, Any]] = []
        self.mode = "ok"
        self.chat_answer: ChatAnswer = _no_answer
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization")
                owner.requests.append({"path": self.path, "auth": auth, "body": body})
                status, payload = owner.answer(self.path, auth, body)
                raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, auth: str | None, body: dict[str, Any]) -> tuple[int, Any]:
        """The status and body the provider would send for one request."""
        if path not in ("/v1/embeddings", "/v1/chat/completions"):
            return 404, {"error": {"message": "no such route"}}
        if self.mode == "unauthorized" or (self.key is not None and auth != f"Bearer {self.key}"):
            return 401, {"error": {"message": "Incorrect API key provided"}}
        if self.mode == "overloaded":
            return 503, {"error": {"message": "overloaded"}}
        if self.mode == "error":
            return 500, "oops"
        if self.mode == "malformed":
            return 200, {"object": "list", "items": []}
        if path == "/v1/embeddings":
            data = [
                {"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
                for i, v in enumerate(self.hasher.embed(body["input"]))
            ]
            data.reverse()  # the protocol orders by "index", not by position
            return 200, {"object": "list", "data": data, "model": body["model"]}
        message = {"role": "assistant", "content": self.chat_answer(body)}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return 200, {"id": "x", "object": "chat.completion", "choices": [choice]}

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies received, oldest first."""
        return [r["body"] for r in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
