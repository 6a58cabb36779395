"""Facts from an OpenAI-compatible chat completions endpoint (Ollama, vLLM, OpenAI...).

One request per ``add_messages`` call: the messages (role, time, text) go in one user
message, and the model is asked for JSON ``{"facts": [{"message": i, "subject", "relation",
"object", "since"}]}`` with the relations of :data:`~engramdb.extract.facts.FACT_RELATIONS`.
Whatever does not fit that shape (an unknown relation, a message index out of range, a bad
date) is dropped, never guessed. Tested against a local server that speaks the protocol;
not against a real model.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from engramdb.config import Settings
from engramdb.errors import ExtractionError
from engramdb.extract.facts import FACT_RELATIONS, SPEAKER, Fact, FactInput

PROMPT = (
    "Extract durable facts from these chat messages. Answer with JSON only: "
    '{"facts": [{"message": <index>, "subject": <"user" for the speaker\'s own statements, '
    'else the name>, "relation": <one of ' + ", ".join(FACT_RELATIONS) + '>, "object": '
    '<name or thing>, "since": <ISO date the fact began, or null>}]}. '
    "Only facts the messages state; no guesses."
)
CONFIDENCE = 0.7


class OpenAIFactExtractor:
    """A :class:`~engramdb.extract.facts.FactExtractor` over ``POST {url}/chat/completions``."""

    def __init__(
        self, url: str, model: str, api_key: str | None = None, timeout_s: float = 30.0
    ) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIFactExtractor:
        """Build from ``facts_llm_*`` settings.

        Raises:
            ExtractionError: ``facts_llm_url`` is not set.
        """
        if not settings.facts_llm_url:
            raise ExtractionError("facts=openai needs facts_llm_url (ENGRAM_FACTS_LLM_URL)")
        key = settings.facts_llm_api_key
        return cls(
            settings.facts_llm_url,
            settings.facts_llm_model,
            key.get_secret_value() if key else None,
            settings.facts_llm_timeout_s,
        )

    def extract(self, messages: list[FactInput]) -> list[list[Fact]]:
        """Ask the model; return the facts of each message.

        Raises:
            ExtractionError: the endpoint failed or answered something that is not JSON.
        """
        lines = [
            f"[{i}] ({_iso(m.occurred_at)}) {m.role}: {m.text}" for i, m in enumerate(messages)
        ]
        body = {
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": PROMPT},
                {"role": "user", "content": "\n".join(lines)},
            ],
        }
        try:
            resp = httpx.post(self.url, json=body, headers=self.headers, timeout=self.timeout_s)
            resp.raise_for_status()
            content = resp.json()["choices"][0]["message"]["content"]
            data = json.loads(content)
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise ExtractionError(f"fact extraction at {self.url} failed: {exc}") from exc
        out: list[list[Fact]] = [[] for _ in messages]
        items = data.get("facts") if isinstance(data, dict) else None
        for item in items if isinstance(items, list) else []:
            fact = _fact(item, messages)
            if fact is not None:
                out[fact[0]].append(fact[1])
        return out


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).isoformat()


def _fact(item: Any, messages: list[FactInput]) -> tuple[int, Fact] | None:
    if not isinstance(item, dict):
        return None
    i = item.get("message")
    subject, relation, obj = item.get("subject"), item.get("relation"), item.get("object")
    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(messages):
        return None
    if relation not in FACT_RELATIONS:
        return None
    if not isinstance(subject, str) or not isinstance(obj, str) or not subject or not obj:
        return None
    msg = messages[i]
    valid_from = msg.occurred_at
    since = item.get("since")
    if isinstance(since, str) and since:
        try:
            when = datetime.fromisoformat(since)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        valid_from = int(when.timestamp() * 1_000_000)
    subject = SPEAKER if subject.lower() in (SPEAKER, "i", "me") else subject[:200]
    return i, Fact(subject, relation, obj[:200], valid_from, msg.text[:500], CONFIDENCE)
