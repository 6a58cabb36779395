"""``redis://host:port/db?pattern=chat:*``: conversation histories kept in Redis.

Each key matching the pattern is one conversation; the key's suffix after the pattern's
literal prefix is its thread id (``chat:abc`` under ``chat:*`` is thread ``abc``).
* A list: each element is one turn as a JSON object (``{"role", "content", …}``).
* A hash whose values are JSON objects: each field is one turn (fields in natural order).
* Any other hash: the hash itself is one item (its fields as they are).
An element that is not a JSON object, or a key of another type, is an item carrying an
error. Order: keys sorted (SCAN's order is not stable), then the list's or the hash's.
Source ids are ``<thread>/<position>`` (list) or ``<thread>/<field>`` (hash), except for a
turn that carries ``$engram_id`` (one written through
:class:`~engramdb.ops.legacy_memory.LegacyMemory`): its source id is ``engram:<that id>``,
so it keeps its engramdb id wherever it sits in the list.

It can also be written (:class:`~engramdb.ops.sources.WritableSource`), as the legacy side of
dual write and shadow reads: a turn is appended to its thread's key (``<prefix><thread>``,
which must match the pattern), as a JSON object the reader above reads back (the mapped
fields, ``$engram_id``, no other ``$`` field); replacing a turn rewrites it in place.
Removing a list turn shifts the positions after it, so an older turn behind it (one without
``$engram_id``) gets a new source id and with it a new derived engramdb id; turns written
here keep theirs. A write looks for the turn in its thread's key only; a read by ``engram:``
id scans the pattern's keys (Redis has no index on them).
"""

from __future__ import annotations

import fnmatch
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from engramdb.config import url_without_password
from engramdb.errors import ValidationError
from engramdb.ops.sources.base import EmbeddingModel, SourceItem, batched

ENGRAM_ID = "$engram_id"  # the turn field naming the engramdb id of a turn written here
ENGRAM = "engram:"  # the source id prefix of such turns (``engramdb.ops.legacy.ENGRAM_PREFIX``)

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

    def _items(self, keys: list[bytes] | None = None) -> Iterator[SourceItem]:
        for raw_key in self._keys() if keys is None else keys:
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
        if isinstance(obj.get(ENGRAM_ID), str) and obj[ENGRAM_ID]:
            sid = ENGRAM + obj[ENGRAM_ID]
        return SourceItem(sid, self.collection, {**obj, **base, "$index": position})

    # --- writing (the legacy side of dual write and shadow reads) ------------------------

    def put(self, collection: str, items: list[SourceItem]) -> None:
        """Append each item to its thread's key, or rewrite it where its source id is.

        Raises:
            ValidationError: an item without a thread, a thread whose key falls outside the
                pattern, or a key that is not a list or a hash of turns.
        """
        self._check(collection)
        for item in items:
            sid = item.source_id
            if sid.startswith(ENGRAM):
                thread = str(item.fields.get("$thread") or "")
            else:  # an older turn: its position names its thread
                thread = sid.rpartition("/")[0]
            if not thread:
                raise ValidationError(
                    "a Redis turn needs a thread id (the key's suffix)", field="thread_id"
                )
            turn = {k: val for k, val in item.fields.items() if not k.startswith("$")}
            if sid.startswith(ENGRAM):
                turn[ENGRAM_ID] = sid[len(ENGRAM) :]
            raw = json.dumps(turn, default=str)
            key = self.prefix + thread
            # Only the thread's own key is searched: a turn that changes thread is removed
            # from the old one first (LegacyMemory.update does).
            found = self._locate([sid], [key]).get(sid)
            if found is not None:
                self._replace(key, found[1], raw)
            else:
                self._append(key, raw)

    def remove(self, collection: str, source_ids: list[str]) -> None:
        """Delete turns by source id (absent ones are ignored)."""
        self._check(collection)
        # Later positions first, so each removal leaves the others' positions in place.
        found = sorted(self._locate(source_ids).values(), key=lambda f: _natural(f[1]))
        for key, position in reversed(found):
            self._remove_at(key, position)

    def fetch(self, collection: str, source_ids: list[str]) -> list[SourceItem]:
        """The turns with these source ids (absent ones left out)."""
        self._check(collection)
        wanted = set(source_ids)
        keys = None
        if not any(sid.startswith(ENGRAM) for sid in wanted):  # positions name their keys
            keys = sorted({(self.prefix + sid.rpartition("/")[0]).encode() for sid in wanted})
        return [i for i in self._items(keys) if i.source_id in wanted and i.error is None]

    def source_ids(self, collection: str) -> list[str]:
        """Every readable turn's source id."""
        self._check(collection)
        return [i.source_id for i in self._items() if i.error is None]

    def count_where(self, collection: str, where: dict[str, Any] | None) -> int:
        """How many readable turns hold these field values (``$thread`` for the thread)."""
        self._check(collection)
        terms = where or {}
        return sum(
            1
            for i in self._items()
            if i.error is None and all(i.fields.get(k) == val for k, val in terms.items())
        )

    def _check(self, collection: str) -> None:
        if collection != self.collection:
            raise ValidationError(
                f"the Redis source holds {self.collection!r}, not {collection!r}",
                field="collection",
            )

    def _locate(
        self, source_ids: list[str], keys: list[str] | None = None
    ) -> dict[str, tuple[str, str]]:
        """source id -> (key, position or field) of the turns that exist (in ``keys``, or
        under the whole pattern)."""
        wanted = set(source_ids)
        out: dict[str, tuple[str, str]] = {}
        for item in self._items(None if keys is None else [k.encode() for k in keys]):
            if item.source_id in wanted and item.error is None:
                out[item.source_id] = (str(item.fields["$key"]), str(item.fields["$index"]))
        return out

    def _append(self, key: str, raw: str) -> None:
        if not fnmatch.fnmatchcase(key, self.pattern):
            raise ValidationError(
                f"the key {key!r} of this thread falls outside the pattern {self.pattern!r}",
                field="thread_id",
            )
        kind = self._client.type(key).decode()
        if kind in ("list", "none"):
            self._client.rpush(key, raw)
        elif kind == "hash":
            numbers = [int(f) for f in self._client.hkeys(key) if f.isdigit()]
            self._client.hset(key, str(max(numbers, default=-1) + 1), raw)
        else:
            raise ValidationError(f"key {key!r} is a {kind}, not a list or hash", field="source")

    def _replace(self, key: str, position: str, raw: str) -> None:
        if self._client.type(key).decode() == "list":
            self._client.lset(key, int(position), raw)
        else:
            self._client.hset(key, position, raw)

    def _remove_at(self, key: str, position: str) -> None:
        if self._client.type(key).decode() == "list":
            # LSET to a value no turn holds, then LREM it: removes exactly that element.
            marker = f"engramdb-removed-{uuid.uuid4().hex}"
            pipe = self._client.pipeline(transaction=True)
            pipe.lset(key, int(position), marker)
            pipe.lrem(key, 1, marker)
            pipe.execute()
        else:
            self._client.hdel(key, position)


def _json_object(value: bytes | str) -> dict[str, Any] | None:
    try:
        obj = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _natural(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.isdigit() else (1, name)
