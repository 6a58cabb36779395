"""``redis://host:port/db?pattern=chat:*``: conversation histories kept in Redis.

Each key matching the pattern is one conversation; the key's suffix after the pattern's
literal prefix is its thread id (``chat:abc`` under ``chat:*`` is thread ``abc``).
* A list: each element is one turn as a JSON object (``{"role", "content", …}``).
* A hash whose values are JSON objects: each field is one turn (fields in natural order).
* Any other hash: the hash itself is one item (its fields as they are).
An element that is not a JSON object, or a key of another type, is an item carrying an
error. Order: keys sorted (SCAN's order is not stable), then the list's or the hash's.
Source ids are ``<thread>/<position>`` (list) or ``<thread>/<field>`` (hash).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from engramdb.config import url_without_password
from engramdb.errors import ValidationError
from engramdb.ops.sources.base import EmbeddingModel, SourceItem, batched

BUILTIN_MAPPING: dict[str, Any] = {
    "text": "content",
    "thread_id": "$thread",
    "occurred_at": "timestamp",
    "user_id": "user_id",
    "type": {"value": "message"},
    "metadata": "*",
    "optional": ["timestamp", "user_id"],
}


class RedisSource:
    """Lists or hashes of JSON turns, one key per conversation."""

    kind = "redis"

    def __init__(self, url: str) -> None:
        import redis

        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.pattern = (query.get("pattern") or ["*"])[0]
        self.prefix = re.split(r"[*?\[]", self.pattern, maxsplit=1)[0]
        self.collection = self.prefix.rstrip(":_-/") or "redis"
        plain = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        try:
            self._client: Any = redis.Redis.from_url(plain, socket_timeout=30)
            self._client.ping()
        except redis.RedisError as exc:
            raise ValidationError(
                f"cannot reach the Redis source {url_without_password(plain)!r}: "
                f"{type(exc).__name__}",
                field="source",
            ) from exc

    def builtin_mapping(self) -> dict[str, Any] | None:
        """Turns as messages: ``content`` is the text, the key's suffix the thread."""
        return BUILTIN_MAPPING

    def embedding_model(self) -> EmbeddingModel | None:
        """Unknown: turns carry no vectors."""
        return None

    def count(self) -> int | None:
        """Not counted ahead."""
        return None

    def read_batches(self, size: int) -> Iterator[list[SourceItem]]:
        """Yield every turn of every matching key, keys in sorted order."""
        return batched(self._items(), size)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _keys(self) -> list[bytes]:
        return sorted(self._client.scan_iter(match=self.pattern, count=1000))

    def _items(self) -> Iterator[SourceItem]:
        for raw_key in self._keys():
            key = raw_key.decode("utf-8", errors="replace")
            thread = key[len(self.prefix) :] or key
            kind = self._client.type(raw_key).decode()
            base = {"$key": key, "$thread": thread}
            if kind == "list":
                length = int(self._client.llen(raw_key))
                for start in range(0, length, 1000):
                    values = self._client.lrange(raw_key, start, start + 999)
                    for offset, value in enumerate(values):
                        yield self._turn(thread, str(start + offset), value, base)
            elif kind == "hash":
                fields = {
                    k.decode("utf-8", errors="replace"): v
                    for k, v in self._client.hgetall(raw_key).items()
                }
                parsed = {k: _json_object(v) for k, v in fields.items()}
                if fields and all(p is not None for p in parsed.values()):
                    for name in sorted(fields, key=_natural):
                        yield self._turn(thread, name, fields[name], base)
                else:
                    plain = {k: v.decode("utf-8", errors="replace") for k, v in fields.items()}
                    yield SourceItem(thread, self.collection, {**plain, **base, "$index": 0})
            else:
                yield SourceItem(
                    thread,
                    self.collection,
                    base,
                    error=f"key {key!r} is a {kind}, not a list or hash",
                )

    def _turn(
        self, thread: str, position: str, value: bytes | str, base: dict[str, Any]
    ) -> SourceItem:
        sid = f"{thread}/{position}"
        obj = _json_object(value)
        if obj is None:
            return SourceItem(sid, self.collection, base, error="the element is not a JSON object")
        return SourceItem(sid, self.collection, {**obj, **base, "$index": position})


def _json_object(value: bytes | str) -> dict[str, Any] | None:
    try:
        obj = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _natural(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.isdigit() else (1, name)
