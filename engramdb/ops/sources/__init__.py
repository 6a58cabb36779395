"""Legacy source adapters for ``engramdb migrate``: one small interface, one module each.

:func:`open_source` turns a source URL into a :class:`LegacySource`; engramdb store URLs
(``sqlite://``, ``postgresql://``) are not legacy sources and take the store-to-store path
in :mod:`engramdb.ops.migrate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engramdb.config import url_without_password
from engramdb.errors import ValidationError
from engramdb.ops.sources.base import EmbeddingModel, LegacySource, SourceItem, WritableSource

__all__ = [
    "KINDS",
    "EmbeddingModel",
    "LegacySource",
    "SourceItem",
    "WritableSource",
    "is_legacy",
    "open_source",
]

KINDS = (
    "chroma",
    "jsonl",
    "json",
    "mem0",
    "sql",
    "redis",
    "rediss",
    "firestore-export",
    "firestore",
)


def is_legacy(url: str) -> bool:
    """Whether ``url`` names a legacy source (not an engramdb store)."""
    return isinstance(url, str) and url.split(":", 1)[0].lower() in KINDS


def _path_and_query(rest: str) -> tuple[Path, dict[str, list[str]]]:
    """``///abs/file?x=1`` -> (/abs/file, {x: [1]}); ``//rel`` and bare paths are relative."""
    body, _, query = rest.partition("?")
    if body.startswith("//"):
        body = body[2:]
    if not body:
        raise ValidationError("the source URL names no path", field="source")
    return Path(body), parse_qs(query)


def open_source(url: str, mapping: dict[str, Any] | None = None) -> LegacySource:
    """Open the legacy source named by ``url``.

    Raises:
        ValidationError: an unknown kind, a missing file or directory, an unreachable server,
            or a mapping the kind needs and did not get.
    """
    kind, _, rest = url.partition(":")
    kind = kind.lower()
    if kind == "chroma":
        path, query = _path_and_query(rest)
        from engramdb.ops.sources.chroma import ChromaSource

        names = query.get("collection")
        return ChromaSource(path, names[0] if names else None)
    if kind in ("jsonl", "json", "mem0"):
        path, _ = _path_and_query(rest)
        from engramdb.ops.sources.files import FileSource

        key = (mapping or {}).get("records")
        return FileSource(kind, path, key if isinstance(key, str) else None)
    if kind == "sql":
        from engramdb.ops.sources.sql import SQLSource

        return SQLSource(rest, mapping)
    if kind in ("redis", "rediss"):
        from engramdb.ops.sources.redis_lists import RedisSource

        return RedisSource(url)
    if kind == "firestore-export":
        path, _ = _path_and_query(rest)
        from engramdb.ops.sources.firestore import FirestoreExportSource

        return FirestoreExportSource(path, mapping)
    if kind == "firestore":  # pragma: no cover - the live reader is untested
        parts = urlsplit(url)
        from engramdb.ops.sources.firestore import FirestoreLiveSource

        return FirestoreLiveSource(parts.netloc, parts.path.strip("/"))
    raise ValidationError(
        f"unsupported source {url_without_password(url)!r}: use chroma://, jsonl://, json://, "
        "mem0://, sql:<SQLAlchemy URL>, redis://, firestore-export:// or an engramdb store URL",
        field="source",
    )
