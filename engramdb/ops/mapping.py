"""The mapping file: which source field fills which engramdb field, and how dates read.

A mapping is JSON (``--mapping FILE``, or the source's built-in one)::

    {"text": "content", "id": "id", "user_id": "user_id", "agent_id": "agent",
     "thread_id": "session_id", "occurred_at": "created_at", "type": "kind",
     "tags": "labels", "metadata": ["role", "channel"], "timezone": "Europe/Berlin"}

* A value names a source field (``a.b`` reaches into nested objects when no field is
  literally called that); ``{"value": X}`` is a constant instead. Adapters add
  ``$``-prefixed pseudo-fields (``$id``, ``$document``, ``$parent``, ``$thread``…).
* ``metadata``: a list of source fields copied into metadata, ``"*"`` for every field
  not mapped to something else (pseudo-fields excluded), or one field holding an object
  (mem0's ``metadata``).
* ``id``: the source id (default: the adapter's own, e.g. a Chroma id or the position in
  a file). The engramdb id is derived from it, so re-runs find what they wrote.
* Dates: ISO 8601, ``YYYY-MM-DD HH:MM:SS``, epoch seconds (numbers or digit strings;
  beyond 1e11 they are read as milliseconds), datetimes from SQL, and Firestore timestamp
  objects; a naive time is in ``timezone`` (default UTC).
* ``embedding``: a source field holding the vector (Chroma's are read without it);
  ``embedding_model``/``embedding_dim`` state the model of the source's vectors.
* Adapter keys: ``table``/``query`` (sql), ``collection`` (Firestore path),
  ``records`` (the key of a JSON file's array). ``optional``: fields that may be absent.

A mapped field that no item of the source holds is a mistake in the mapping
(:func:`missing_fields`), reported with the field named before anything is written.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from engramdb.errors import ValidationError

FIELDS = (
    "text",
    "id",
    "user_id",
    "agent_id",
    "thread_id",
    "occurred_at",
    "type",
    "tags",
    "source",
    "importance",
    "embedding",
)
SETTINGS = ("metadata", "timezone", "embedding_model", "embedding_dim", "optional")
ADAPTER_KEYS = ("table", "query", "collection", "records")
_MISSING = object()
_DIGITS = re.compile(r"^-?\d+(\.\d+)?$")


class SkipItem(Exception):
    """An item that cannot be migrated; the message is the reason logged."""

    def __init__(self, reason: str, source_id: str | None = None) -> None:
        super().__init__(reason)
        self.source_id = source_id


@dataclass
class Mapping:
    """A parsed, checked mapping."""

    fields: dict[str, Any]
    """engramdb field -> source field name, or ``{"value": X}``."""
    metadata: list[str] | str | None = None
    timezone: dt.tzinfo = dt.UTC
    embedding_model: str | None = None
    embedding_dim: int | None = None
    optional: set[str] = field(default_factory=set)
    raw: dict[str, Any] = field(default_factory=dict)

    def named_fields(self) -> list[str]:
        """Every source field the mapping names (constants excluded)."""
        names = [v for v in self.fields.values() if isinstance(v, str)]
        if isinstance(self.metadata, list):
            names += self.metadata
        elif isinstance(self.metadata, str) and self.metadata != "*":
            names.append(self.metadata)
        return names


def parse_mapping(raw: Any, where: str = "the mapping") -> Mapping:
    """Check a mapping object and return it parsed.

    Raises:
        ValidationError: not an object, an unknown key, no ``text``, a bad value or zone.
    """
    if not isinstance(raw, dict):
        raise ValidationError(f"{where} must be a JSON object", field="mapping")
    unknown = sorted(set(raw) - set(FIELDS) - set(SETTINGS) - set(ADAPTER_KEYS))
    if unknown:
        raise ValidationError(
            f"{where} has unknown key(s) {unknown}; known: "
            f"{sorted(FIELDS + SETTINGS + ADAPTER_KEYS)}",
            field="mapping",
        )
    if "text" not in raw:
        raise ValidationError(f"{where} must name the source field of 'text'", field="text")
    fields: dict[str, Any] = {}
    for name in FIELDS:
        if name not in raw or raw[name] is None:
            continue
        value = raw[name]
        ok = (isinstance(value, str) and value) or (
            isinstance(value, dict) and set(value) == {"value"}
        )
        if not ok:
            raise ValidationError(
                f'{where}: {name!r} must name a source field or be {{"value": …}}', field=name
            )
        fields[name] = value
    meta = raw.get("metadata")
    if meta is not None and not (
        isinstance(meta, str) or (isinstance(meta, list) and all(isinstance(m, str) for m in meta))
    ):
        raise ValidationError(
            f"{where}: 'metadata' must be a list of source fields, \"*\" or one field name",
            field="metadata",
        )
    tz: dt.tzinfo = dt.UTC
    if raw.get("timezone") not in (None, "UTC", "utc"):
        try:
            tz = ZoneInfo(str(raw["timezone"]))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationError(
                f"{where}: unknown timezone {raw['timezone']!r}", field="timezone"
            ) from exc
    dim = raw.get("embedding_dim")
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0):
        raise ValidationError(
            f"{where}: 'embedding_dim' must be a positive integer", field="embedding_dim"
        )
    optional = raw.get("optional") or []
    if not isinstance(optional, list):
        raise ValidationError(f"{where}: 'optional' must be a list", field="optional")
    return Mapping(
        fields=fields,
        metadata=meta,
        timezone=tz,
        embedding_model=raw.get("embedding_model"),
        embedding_dim=dim,
        optional={str(o) for o in optional},
        raw=raw,
    )


def load_mapping(path: str) -> dict[str, Any]:
    """Read a mapping file (JSON).

    Raises:
        ValidationError: the file is missing or is not JSON.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError as exc:
        raise ValidationError(f"the mapping file {path} does not exist", field="mapping") from exc
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"the mapping file {path} is not JSON: {exc.msg} at line {exc.lineno}", field="mapping"
        ) from exc
    if not isinstance(data, dict):
        raise ValidationError(f"the mapping file {path} must hold a JSON object", field="mapping")
    return data


def lookup(fields: dict[str, Any], name: str) -> Any:
    """The value of source field ``name`` (dotted paths reach into objects), or a marker."""
    if name in fields:
        return fields[name]
    if "." in name:
        value: Any = fields
        for part in name.split("."):
            if not isinstance(value, dict) or part not in value:
                return _MISSING
            value = value[part]
        return value
    return _MISSING


def present(fields: dict[str, Any], name: str) -> bool:
    """Whether the item holds source field ``name``."""
    return lookup(fields, name) is not _MISSING


def missing_fields(mapping: Mapping, seen: Iterable[str]) -> list[str]:
    """The source fields the mapping names (and does not call optional) that no item held."""
    have = set(seen)
    return sorted(
        {n for n in mapping.named_fields() if n not in have and n not in mapping.optional}
    )


def fields_seen(mapping: Mapping, fields: dict[str, Any]) -> set[str]:
    """The mapping's source fields that this item holds."""
    return {n for n in mapping.named_fields() if present(fields, n)}


@dataclass
class Mapped:
    """One source item mapped onto engramdb's record fields (not yet validated by the engine)."""

    source_id: str
    values: dict[str, Any]
    """``text``, ``user_id``… as the engine's ``prepare_record`` takes them."""
    embedding: np.ndarray | None = None


def apply_mapping(
    mapping: Mapping, fields: dict[str, Any], default_id: str, stored: np.ndarray | None
) -> Mapped:
    """Map one item's fields.

    Raises:
        SkipItem: no text, an unreadable date or a malformed value (the reason names it).
    """

    def get(name: str) -> Any:
        spec = mapping.fields.get(name)
        if spec is None:
            return None
        if isinstance(spec, dict):
            return spec["value"]
        value = lookup(fields, spec)
        return None if value is _MISSING else value

    sid = get("id")
    source_id = default_id if sid is None or sid == "" else str(sid)
    try:
        return _apply(mapping, fields, source_id, stored, get)
    except SkipItem as exc:
        exc.source_id = source_id
        raise


def _apply(
    mapping: Mapping,
    fields: dict[str, Any],
    source_id: str,
    stored: np.ndarray | None,
    get: Any,
) -> Mapped:
    text = get("text")
    if text is None or (isinstance(text, str) and not text.strip()):
        raise SkipItem(f"no text (field {mapping.fields['text']!r} is missing or empty)")
    if not isinstance(text, str):
        raise SkipItem(f"the text field {mapping.fields['text']!r} is a {type(text).__name__}")
    values: dict[str, Any] = {"text": text}
    for name in ("user_id", "agent_id", "thread_id", "type", "source"):
        value = get(name)
        if value is not None and value != "":
            values[name] = str(value)
    when = get("occurred_at")
    if when is not None and when != "":
        try:
            values["occurred_at"] = parse_time(when, mapping.timezone)
        except ValueError as exc:
            raise SkipItem(f"bad date in {mapping.fields['occurred_at']!r}: {exc}") from exc
    tags = get("tags")
    if tags is not None:
        if isinstance(tags, str):
            tags = _split_tags(tags)
        if not isinstance(tags, list):
            raise SkipItem(f"tags field {mapping.fields['tags']!r} is not a list or string")
        values["tags"] = [str(t) for t in tags if str(t).strip()]
    importance = get("importance")
    if importance is not None:
        try:
            values["importance"] = float(importance)
        except (TypeError, ValueError) as exc:
            raise SkipItem(f"importance {importance!r} is not a number") from exc
    values["metadata"] = _metadata(mapping, fields)
    vector = stored
    spec = mapping.fields.get("embedding")
    if isinstance(spec, str):
        raw = lookup(fields, spec)
        if raw is not _MISSING and raw is not None:
            try:
                vector = np.asarray(raw, dtype=np.float32).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise SkipItem(f"embedding field {spec!r} is not a list of numbers") from exc
    return Mapped(source_id, values, vector)


def _split_tags(value: str) -> list[str]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return [t.strip() for t in value.split(",")]
    return parsed if isinstance(parsed, list) else [value]


def _metadata(mapping: Mapping, fields: dict[str, Any]) -> dict[str, Any]:
    spec = mapping.metadata
    out: dict[str, Any] = {}
    if spec is None:
        return out
    if spec == "*":
        taken = {v for v in mapping.fields.values() if isinstance(v, str)}
        keys = [k for k in fields if not k.startswith("$") and k not in taken]
    elif isinstance(spec, str):
        value = lookup(fields, spec)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = None
        return {str(k): _jsonable(v) for k, v in value.items()} if isinstance(value, dict) else {}
    else:
        keys = [k for k in spec if present(fields, k)]
    for key in keys:
        out[key.split(".")[-1] if key not in fields else key] = _jsonable(lookup(fields, key))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def parse_time(value: Any, tz: dt.tzinfo = dt.UTC) -> int:
    """A source date in epoch microseconds.

    Raises:
        ValueError: a value in none of the accepted shapes (the message shows it).
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a date")
    if isinstance(value, int | float):
        return _epoch_us(float(value))
    if isinstance(value, dt.datetime):
        return _datetime_us(value, tz)
    if isinstance(value, dt.date):
        return _datetime_us(dt.datetime(value.year, value.month, value.day), tz)
    if isinstance(value, dict):
        return _firestore_us(value, tz)
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.match(text):
            return _epoch_us(float(text))
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{value!r} is not ISO 8601, 'YYYY-MM-DD HH:MM:SS' or epoch seconds"
            ) from None
        return _datetime_us(parsed, tz)
    raise ValueError(f"{value!r} is not a date")


def _epoch_us(seconds: float) -> int:
    if seconds != seconds or abs(seconds) > 1e15:
        raise ValueError(f"{seconds!r} is out of range for a time")
    if abs(seconds) > 1e11:  # milliseconds since the epoch (a date past the year 5000 otherwise)
        seconds /= 1000
    return round(seconds * 1_000_000)


def _datetime_us(value: dt.datetime, tz: dt.tzinfo) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=tz)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _firestore_us(value: dict[str, Any], tz: dt.tzinfo) -> int:
    """Firestore timestamps as exports write them."""
    if value.get("__datatype__") == "timestamp" and "value" in value:
        return (
            _firestore_us(value["value"], tz)
            if isinstance(value["value"], dict)
            else parse_time(value["value"], tz)
        )
    for secs, nanos in (
        ("_seconds", "_nanoseconds"),
        ("seconds", "nanos"),
        ("seconds", "nanoseconds"),
    ):
        if secs in value:
            try:
                return int(value[secs]) * 1_000_000 + int(value.get(nanos) or 0) // 1000
            except (TypeError, ValueError):
                break
    for key in ("timestampValue", "$date", "__time__"):
        if key in value:
            return parse_time(value[key], tz)
    raise ValueError(f"{json.dumps(value)[:80]} is not a timestamp object")
