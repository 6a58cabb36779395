"""An embedder over any OpenAI-compatible HTTP embeddings API (``ENGRAM_EMBEDDER=openai:<model>``).

OpenAI, Voyage, vLLM, Ollama, LiteLLM and others answer ``POST {base}/embeddings`` with
``{"model", "input": [texts]}`` by ``{"data": [{"index", "embedding"}]}``. The base URL and
the key come from settings (``ENGRAM_EMBEDDER_BASE_URL``, ``ENGRAM_EMBEDDER_API_KEY``). Texts
go in batches of ``embed_batch_size``. Every failure (unreachable, refused key, throttled
past the retries, a malformed answer) is an :class:`~engramdb.errors.EmbeddingError` that
names the service and the status, never the key. The dimension is a setting or, unset, is
asked of the service once (one probe text) when the store first needs it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from engramdb.errors import EmbeddingError, ValidationError

if TYPE_CHECKING:
    from engramdb.config import Settings

PREFIX = "openai:"
# Statuses worth another try: throttled or a passing server fault.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIEmbedder:
    """Embeds through an OpenAI-compatible ``/embeddings`` endpoint.

    Example::

        OpenAIEmbedder("text-embedding-3-small", base_url="http://localhost:8000/v1")
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str | None = None,
        dim: int | None = None,
        max_tokens: int = 512,
        batch_size: int = 64,
        timeout_s: float = 30.0,
        retries: int = 2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ValidationError(
                "openai embedder: name a model, e.g. openai:text-embedding-3-small",
                field="embedder",
            )
        if not base_url.startswith(("http://", "https://")):
            raise ValidationError(
                f"embedder_base_url must be an http(s) URL, got {base_url!r}",
                field="embedder_base_url",
            )
        self.model = model
        self.name = f"{PREFIX}{model}"
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.retries = retries
        self.endpoint = base_url.rstrip("/") + "/embeddings"
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(headers=headers, timeout=timeout_s, transport=transport)
        self._dim = dim
        self._dim_lock = threading.Lock()

    @classmethod
    def from_settings(cls, model: str, settings: Settings) -> OpenAIEmbedder:
        """Build from ``openai:<model>`` and the ``embedder_*`` settings."""
        key = settings.embedder_api_key
        return cls(
            model,
            base_url=settings.embedder_base_url,
            api_key=key.get_secret_value() if key is not None else None,
            dim=settings.embedder_dim,
            max_tokens=settings.embedder_max_tokens,
            batch_size=settings.embed_batch_size,
            timeout_s=settings.embedder_timeout_s,
        )

    @property
    def dim(self) -> int:
        """The vector dimension: the setting, else measured once on a probe text."""
        if self._dim is None:
            with self._dim_lock:
                if self._dim is None:
                    self._dim = len(self._request(["dimension probe"])[0])
        return self._dim

    @dim.setter
    def dim(self, value: int) -> None:
        self._dim = value

    def count_tokens(self, text: str) -> int:
        """Estimate tokens as one per four characters (the service's tokenizer is remote)."""
        return max(1, math.ceil(len(text) / 4))

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Embed ``texts`` in batches; return an (n, dim) float32 array of unit rows."""
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            rows += self._request(list(texts[start : start + self.batch_size]))
        arr = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        return arr / np.where(norms == 0, 1, norms)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _request(self, batch: list[str]) -> list[list[float]]:
        body = {"model": self.model, "input": batch, "encoding_format": "float"}
        for attempt in range(self.retries + 1):
            try:
                response = self._client.post(self.endpoint, json=body)
            except httpx.HTTPError as exc:
                if attempt < self.retries:
                    time.sleep(0.2 * 2**attempt)
                    continue
                raise EmbeddingError(
                    f"embedding service {self.endpoint} unreachable: {type(exc).__name__}",
                    embedder=self.name,
                ) from None
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                time.sleep(0.2 * 2**attempt)
                continue
            return self._parse(response, len(batch))
        raise AssertionError("unreachable")  # pragma: no cover

    def _parse(self, response: httpx.Response, n: int) -> list[list[float]]:
        if response.status_code in (401, 403):
            raise EmbeddingError(
                f"embedding service {self.endpoint} refused the key (HTTP {response.status_code});"
                " check ENGRAM_EMBEDDER_API_KEY",
                embedder=self.name,
            )
        if response.status_code != 200:
            raise EmbeddingError(
                f"embedding service {self.endpoint} answered HTTP {response.status_code}: "
                f"{_message(response)}",
                embedder=self.name,
            )
        try:
            data = response.json()["data"]
            ordered = sorted(data, key=lambda item: int(item["index"]))
            rows = [[float(x) for x in item["embedding"]] for item in ordered]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(
                f"embedding service {self.endpoint} sent a malformed answer "
                f"({type(exc).__name__}); expected {{'data': [{{'index', 'embedding'}}]}}",
                embedder=self.name,
            ) from None
        if len(rows) != n:
            raise EmbeddingError(
                f"embedding service {self.endpoint} returned {len(rows)} vectors for {n} texts",
                embedder=self.name,
            )
        return rows


def _message(response: httpx.Response) -> str:
    """The service's own error message, cut short (never our request or key)."""
    try:
        payload: Any = response.json()
        error = payload.get("error") if isinstance(payload, dict) else None
        text = error.get("message") if isinstance(error, dict) else error or payload
    except ValueError:
        text = response.text
    return str(text)[:200]
