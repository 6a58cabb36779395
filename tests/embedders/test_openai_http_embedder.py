"""ENGRAM_EMBEDDER=openai:<model> against a small local HTTP server that speaks the protocol.

The server is real (a socket, HTTP/1.1, JSON); its vectors come from the hash embedder, so
a text's own vector finds it. Untested against a real provider (no network here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from protocol_servers import OpenAIProtocolServer

from engramdb import EmbeddingError, Memory, Settings
from engramdb.embedders.openai_http import OpenAIEmbedder

KEY = "sk-test-secret-123"


@pytest.fixture
def server() -> Iterator[OpenAIProtocolServer]:
    s = OpenAIProtocolServer(key=KEY)
    yield s
    s.close()


@pytest.fixture
def env(server: OpenAIProtocolServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_EMBEDDER", "openai:text-embedding-test")
    monkeypatch.setenv("ENGRAM_EMBEDDER_BASE_URL", server.base_url)
    monkeypatch.setenv("ENGRAM_EMBEDDER_API_KEY", KEY)
    monkeypatch.setenv("ENGRAM_EMBED_BATCH_SIZE", "3")


@pytest.mark.usefixtures("env")
def test_memory_embeds_through_the_service_in_batches(
    server: OpenAIProtocolServer, tmp_path: Path
) -> None:
    texts = [f"note number {i} about {w}" for i, w in enumerate("abcdefg")]
    with Memory(f"sqlite:///{tmp_path / 'm.db'}") as mem:
        assert mem.embedder.name == "openai:text-embedding-test"
        assert mem.embedder.dim == 32  # asked of the service once
        server.requests.clear()
        mem.add(texts, user_id="u")
        assert [len(r["input"]) for r in server.bodies()] == [3, 3, 1]
        assert {r["model"] for r in server.bodies()} == {"text-embedding-test"}
        assert {r["auth"] for r in server.requests} == {f"Bearer {KEY}"}
        hit = mem.search(texts[4], user_id="u", mode="vector").hits[0]
        assert hit.record.text == texts[4]
        assert hit.parts.vector == pytest.approx(1.0, abs=1e-5)


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize(
    ("mode", "words"),
    [("unauthorized", "refused the key"), ("overloaded", "HTTP 503"), ("malformed", "malformed")],
)
def test_service_failures_are_embedding_errors_without_the_key(
    server: OpenAIProtocolServer, tmp_path: Path, mode: str, words: str
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


def test_an_unreachable_service_names_its_endpoint(server: OpenAIProtocolServer) -> None:
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
