"""Validation of everything a caller hands us, before any work is done.

Pure functions: each raises :class:`ValidationError` (or :class:`LimitExceededError`) naming
the field and the limit, and returns the normalised value.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from typing import Any, cast

from engramdb.config import Settings
from engramdb.errors import LimitExceededError, ValidationError
from engramdb.ids import ID_PATTERN
from engramdb.timeutil import to_us

# Every pattern is applied with ``fullmatch``: ``$`` alone also matches before a trailing
# newline, which let "alice\n" pass as a look-alike of "alice". Lone surrogates are refused
# with the control characters: they cannot be encoded, so no store can hold them.
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
SCOPE_PATTERN = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{1,256}")
TYPE_PATTERN = re.compile(r"[a-z][a-z0-9_\-]{0,63}")
TAG_PATTERN = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{1,128}")


def check_namespace(namespace: Any) -> str:
    """Return a valid namespace: 1-128 chars of letters, digits, ``_ . -``, starting alnum."""
    if not isinstance(namespace, str) or not NAMESPACE_PATTERN.fullmatch(namespace):
        raise ValidationError(
            f"namespace {namespace!r} is invalid: use 1-128 letters, digits, '_', '.', '-' "
            "starting with a letter or digit",
            field="namespace",
        )
    return namespace


def check_id(value: Any, field: str = "id") -> str:
    """Return a valid record id (1-128 chars of letters, digits, ``_ . : -``)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ValidationError(
            f"{field} {value!r} is invalid: use 1-128 letters, digits, '_', '.', ':', '-'",
            field=field,
        )
    return value


def check_scope(value: Any, field: str) -> str | None:
    """Return a valid user/agent/thread id (None allowed): 1-256 chars, no control chars."""
    if value is None:
        return None
    if not isinstance(value, str) or not SCOPE_PATTERN.fullmatch(value):
        raise ValidationError(
            f"{field} {value!r} is invalid: a non-empty string of at most 256 characters "
            "without control characters",
            field=field,
        )
    return value


def check_thread(value: Any) -> str:
    """Return a valid, required thread id (events and slots always belong to a thread)."""
    thread = check_scope(value, "thread_id")
    if not thread:
        raise ValidationError("thread_id is required", field="thread_id")
    return thread


def check_action(value: Any) -> str:
    """Return a valid event action: a non-empty string without control characters."""
    if not isinstance(value, str) or not SCOPE_PATTERN.fullmatch(value):
        raise ValidationError("action must be a non-empty string", field="action")
    return value


def check_slot_values(values: Any, settings: Settings, *, stored: bool = False) -> dict[str, Any]:
    """Return valid working-memory slots: a non-empty object of name -> JSON value.

    ``stored``: a thread's slots as a store holds them (an import). They may be empty once
    every slot was removed (a ``None`` value removes one), and may together pass
    ``max_metadata_bytes``, which bounds each ``set_slots`` call, not a thread's sum.
    """
    if not isinstance(values, dict) or not (values or stored):
        raise ValidationError("slots must be a non-empty object of name -> value", field="values")
    for name in values:
        if not isinstance(name, str) or not SCOPE_PATTERN.fullmatch(name):
            raise ValidationError(f"slot name {name!r} is invalid", field="values")
    if not stored:
        check_metadata(values, settings)
    return values


def check_type(value: Any) -> str:
    """Return a valid record type (lowercase identifier, e.g. ``fact``, ``message``)."""
    if not isinstance(value, str) or not TYPE_PATTERN.fullmatch(value):
        raise ValidationError(
            f"type {value!r} is invalid: a lowercase identifier like 'fact' or 'preference'",
            field="type",
        )
    return value


def check_text(text: Any, settings: Settings, field: str = "text") -> str:
    """Return the text if it is a non-blank str within ``max_text_bytes`` and valid UTF-8."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"{field} is not valid UTF-8: {exc}", field=field) from exc
    if not isinstance(text, str):
        raise ValidationError(f"{field} must be a string, got {type(text).__name__}", field=field)
    if not text.strip():
        raise ValidationError(f"{field} is empty", field=field)
    if "\x00" in text:
        raise ValidationError(f"{field} contains a NUL character", field=field)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{field} is not valid Unicode (lone surrogate)", field=field
        ) from exc
    if size > settings.max_text_bytes:
        raise LimitExceededError(
            f"{field} is {size} bytes; the limit max_text_bytes is {settings.max_text_bytes}",
            field=field,
            limit="max_text_bytes",
            value=size,
        )
    return text


def normalize_text(text: str) -> str:
    """Unicode NFC plus whitespace collapsing: the notion of "same text" for dedup.

    ``str.split()`` splits on exactly the characters ``\\s`` matches (``str.isspace``),
    so this equals collapsing ``\\s+`` to one space and stripping, without a regex; it
    runs once per added record.
    """
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_hash(text: str) -> str:
    """Return the SHA-256 hex digest of the normalised text."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def check_metadata(metadata: Any, settings: Settings) -> dict[str, Any]:
    """Return metadata as a JSON-safe dict within the size and depth limits."""
    if metadata is None:
        return {}
    metadata_json(metadata, settings)
    return cast(dict[str, Any], metadata)


def metadata_json(metadata: Any, settings: Settings) -> str:
    """Check metadata as :func:`check_metadata` does and return its stored JSON text
    (``"{}"`` for none): the size check already serialises it, so a caller that stores
    the text takes it from here instead of serialising twice."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise ValidationError(
            f"metadata must be a JSON object, got {type(metadata).__name__}", field="metadata"
        )
    _check_json_value(metadata, settings.max_metadata_depth, 1, "metadata")
    try:
        text = json.dumps(metadata, ensure_ascii=False, allow_nan=False)
        size = len(text.encode("utf-8"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValidationError(
            f"metadata is not JSON-serialisable: {exc}", field="metadata"
        ) from exc
    if size > settings.max_metadata_bytes:
        raise LimitExceededError(
            f"metadata is {size} bytes of JSON; the limit max_metadata_bytes is "
            f"{settings.max_metadata_bytes}",
            field="metadata",
            limit="max_metadata_bytes",
            value=size,
        )
    return text if metadata else "{}"


def _check_json_value(value: Any, max_depth: int, depth: int, path: str) -> None:
    # Depth counts containers (objects and arrays), not the scalar leaves inside them:
    # with max_metadata_depth=8, eight nested objects holding a number are accepted.
    if depth > max_depth and isinstance(value, dict | list):
        raise LimitExceededError(
            f"{path} nests deeper than max_metadata_depth={max_depth}",
            field="metadata",
            limit="max_metadata_depth",
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{path}: keys must be strings, got {key!r}", field=path)
            if "\x00" in key:
                raise ValidationError(f"{path}: key contains a NUL character", field=path)
            _check_json_value(item, max_depth, depth + 1, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_value(item, max_depth, depth + 1, f"{path}[{i}]")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{path}: {value} is not a finite number", field=path)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise ValidationError(f"{path}: {value} does not fit in 64 bits", field=path)
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(f"{path}: not valid Unicode", field=path) from exc
    elif value is not None and not isinstance(value, bool):
        raise ValidationError(f"{path}: {type(value).__name__} is not a JSON value", field=path)


def check_tags(tags: Any, settings: Settings) -> list[str]:
    """Return tags as a sorted, de-duplicated list of valid strings."""
    if tags is None:
        return []
    if isinstance(tags, str) or not isinstance(tags, list | tuple | set | frozenset):
        raise ValidationError("tags must be a list of strings", field="tags")
    out = set()
    for tag in tags:
        if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag):
            raise ValidationError(
                f"tag {tag!r} is invalid: 1-128 characters without control characters",
                field="tags",
            )
        out.add(tag)
    if len(out) > settings.max_tags:
        raise LimitExceededError(
            f"{len(out)} tags; the limit max_tags is {settings.max_tags}",
            field="tags",
            limit="max_tags",
        )
    return sorted(out)


def check_importance(value: Any) -> float | None:
    """Return importance as a finite float in [0, 1] (None allowed)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(
            f"importance must be a number in [0, 1], got {value!r}", field="importance"
        )
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise ValidationError(
            f"importance must be a finite number in [0, 1], got {number}", field="importance"
        )
    return number


def check_source(value: Any) -> str | None:
    """Return a valid source label (None allowed)."""
    if value is None:
        return None
    if not isinstance(value, str) or not SCOPE_PATTERN.fullmatch(value):
        raise ValidationError(f"source {value!r} is invalid", field="source")
    return value


def check_limit(value: Any, settings: Settings, field: str = "top_k") -> int:
    """Return a positive int not above ``max_top_k``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer, got {value!r}", field=field)
    if value < 1:
        raise ValidationError(f"{field} must be at least 1, got {value}", field=field)
    if value > settings.max_top_k:
        raise LimitExceededError(
            f"{field}={value} exceeds the limit max_top_k={settings.max_top_k}",
            field=field,
            limit="max_top_k",
        )
    return value


def check_offset(value: Any) -> int:
    """Return a non-negative int offset (bounded to keep deep paging cheap)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            f"offset must be a non-negative integer, got {value!r}", field="offset"
        )
    if value > 100_000:
        raise LimitExceededError(
            f"offset={value} exceeds 100000; use a narrower filter", field="offset"
        )
    return value


def check_expected_version(value: Any) -> int | None:
    """Return a compare-and-set version (None allowed): an integer in [0, 2**63)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"expected_version must be an integer, got {value!r}", field="expected_version"
        )
    if not 0 <= value < 2**63:
        raise ValidationError(
            f"expected_version must be between 0 and 2**63-1, got {value}",
            field="expected_version",
        )
    return value


def check_time(value: Any, field: str) -> int | None:
    """Return an optional time (aware datetime or ISO 8601 string) in epoch microseconds."""
    return None if value is None else to_us(value, field)
