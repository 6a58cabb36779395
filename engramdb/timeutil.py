"""Time conversions: the store keeps integer microseconds since the epoch, UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from engramdb.errors import ValidationError


def now_us() -> int:
    """Return the current time in integer microseconds since the epoch."""
    return time.time_ns() // 1000


def to_us(value: datetime | str | int | float, field: str) -> int:
    """Convert an aware datetime or ISO 8601 string (with a zone) to epoch microseconds.

    Raises:
        ValidationError: naive datetimes, unparsable strings, bools and other types.
    """
    if isinstance(value, bool):
        raise ValidationError(f"{field}: expected a datetime, got a boolean", field=field)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValidationError(
                f"{field}: {value!r} is not an ISO 8601 datetime", field=field
            ) from exc
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(
                f"{field}: naive datetime {value.isoformat()!r}; give a time zone (e.g. UTC)",
                field=field,
            )
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        if not MIN_US <= us <= MAX_US:
            # e.g. 0001-01-01T00:00+14:00 is a valid datetime whose UTC instant is before
            # year 1: nothing could turn it back into a datetime.
            raise ValidationError(
                f"{field}: {value.isoformat()} is outside the supported range "
                "0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z once converted to UTC",
                field=field,
            )
        return us
    raise ValidationError(
        f"{field}: expected a datetime or ISO 8601 string, got {type(value).__name__}", field=field
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The instants a datetime can hold, in UTC: every stored time converts back to a datetime.
MIN_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
MAX_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z


def from_us(value: int | None) -> datetime | None:
    """Convert epoch microseconds back to an aware UTC datetime (None stays None).

    Runs six times per record read (a search page reads ten records): the epoch is built
    once, not per call, and the timedelta is built from positional arguments (days,
    seconds, microseconds), which skips the keyword normalisation of ``microseconds=``.
    """
    if value is None:
        return None
    return _EPOCH + timedelta(0, 0, value)


def from_us_req(value: int) -> datetime:
    """Convert epoch microseconds (never None) to an aware UTC datetime."""
    return _EPOCH + timedelta(0, 0, value)
