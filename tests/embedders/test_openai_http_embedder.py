"""ENGRAM_EMBEDDER=openai:<model> against a small local HTTP server that speaks the protocol.

The server is real (a socket, HTTP/1.1, JSON); its vectors come from the hash embedder, so
a text's own vector finds it. Untested against a real provider (no network here).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engramdb import EmbeddingError, HashEmbedder, Memory, Settings
from engramdb.embedders.openai_http import OpenAIEmbedder

KEY = "sk-test-secret-123"


class EmbeddingsServer:
    """``POST /v1/embeddings`` as OpenAI answers it; ``mode`` injects failures."""

    def __init__(self) -> None:
        self.hasher = HashEmbedder(32)
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.mode = "ok"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                owner.auth.append(self.headers.get("Authorization"))
                if self.path != "/v1/embeddings":
                    return self._send(404, {"error": {"message": "no such route"}})
                if (
                    owner.mode == "unauthorized"
                    or self.headers.get("Authorization") != f"Bearer {KEY}"
                ):
                    return self._send(401, {"error": {"message": "Incorrect API key provided"}})
                if owner.mode == "overloaded":
                    return self._send(503, {"error": {"message": "overloaded"}})
                if owner.mode == "malformed":
                    return self._send(200, {"object": "list", "items": []})
                vectors = owner.hasher.embed(body["input"])
                data = [
                    {"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
                    for i, v in enumerate(vectors)
                ]
                data.reverse()  # the protocol orders by "index", not by position
                self._send(200, {"object": "list", "data": data, "model": body["model"]})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
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

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[EmbeddingsServer]:
    s = EmbeddingsServer()
    yield s
    s.close()


@pytest.fixture
def env(server: EmbeddingsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_EMBEDDER", "openai:text-embedding-test")
    monkeypatch.setenv("ENGRAM_EMBEDDER_BASE_URL", server.base_url)
    monkeypatch.setenv("ENGRAM_EMBEDDER_API_KEY", KEY)
    monkeypatch.setenv("ENGRAM_EMBED_BATCH_SIZE", "3")


@pytest.mark.usefixtures("env")
def test_memory_embeds_through_the_service_in_batches(
    server: EmbeddingsServer, tmp_path: Path
) -> None:
    texts = [f"note number {i} about {w}" for i, w in enumerate("abcdefg")]
    with Memory(f"sqlite:///{tmp_path / 'm.db'}") as mem:
        assert mem.embedder.name == "openai:text-embedding-test"
        assert mem.embedder.dim == 32  # asked of the service once
        server.requests.clear()
        mem.add(texts, user_id="u")
        assert [len(r["input"]) for r in server.requests] == [3, 3, 1]
        assert {r["model"] for r in server.requests} == {"text-embedding-test"}
        assert set(server.auth) == {f"Bearer {KEY}"}
        hit = mem.search(texts[4], user_id="u", mode="vector").hits[0]
        assert hit.record.text == texts[4]
        assert hit.parts.vector == pytest.approx(1.0, abs=1e-5)


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize(
    ("mode", "words"),
    [("unauthorized", "refused the key"), ("overloaded", "HTTP 503"), ("malformed", "malformed")],
)
def test_service_failures_are_embedding_errors_without_the_key(
    server: EmbeddingsServer, tmp_path: Path, mode: str, words: str
) -> None:
    with Memory(f"sqlite:///{tmp_path / 'm.db'}") as mem:
        server.mode = mode
        with pytest.raises(EmbeddingError) as info:
            mem.add("a text that cannot be embedded now", user_id="u")
        assert words in str(info.value)
        assert KEY not in str(info.value)
        server.mode = "ok"
        assert mem.count() == 0  # nothing stored on the failed add
        assert mem.add("and now it works", user_id="u")[0].outcome == "written"


def test_an_unreachable_service_names_its_endpoint(server: EmbeddingsServer) -> None:
    url = server.base_url
    server.close()
    emb = OpenAIEmbedder("m", base_url=url, dim=32, retries=1, timeout_s=2)
    with pytest.raises(EmbeddingError, match="unreachable"):
        emb.embed(["x"])


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAIEmbedder("m", base_url="ftp://example")
    with pytest.raises(ValueError, match="model"):
        Memory(":memory:", settings=Settings(embedder="openai:"))
