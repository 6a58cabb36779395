"""Paging cursors: opaque strings that carry where the next page starts.

A cursor names its kind, so one from ``list`` (``"a"``: after this record id) cannot be
passed to ``search`` (``"o"``: this offset into the fused order), and a caller cannot tell
or rely on what is inside. Pure: no I/O.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from engramdb.errors import ValidationError

MAX_CURSOR_CHARS = 512


def encode_cursor(kind: str, value: Any) -> str:
    """Return the cursor of kind ``kind`` (``"a"`` or ``"o"``) that carries ``value``."""
    raw = json.dumps({kind: value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> Any:
    """Return the value a cursor of kind ``kind`` carries.

    Raises:
        ValidationError: the cursor is malformed, too long, or of another kind.
    """
    try:
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        value = data[kind]
        if kind == "o" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError
        if kind == "a" and not isinstance(value, str):
            raise ValueError
        return value
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError(
            f"cursor {cursor!r} is invalid or from another call", field="cursor"
        ) from exc
