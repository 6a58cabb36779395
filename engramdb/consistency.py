"""Read-your-writes across processes: a floor that a caller puts under the reads it makes.

A store with read replicas (PostgreSQL with ``read_url``) sends a read to a replica only
when the replica has replayed at least the read's floor, a position in the primary's WAL
(an LSN). A caller that knows a position, such as the REST service reading the
``X-Engram-LSN`` request header, raises the floor with :func:`read_at_least` for the reads
inside it; the store asks :func:`read_floor` before each routed read.

The floor is a context variable, not a thread-local: it follows a request through
``asyncio`` tasks and, because ``AsyncMemory`` runs each call in a copy of the caller's
context, into the thread that does the read. A leaf module: every layer may import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from engramdb.errors import ValidationError

_FLOOR: ContextVar[int | None] = ContextVar("engramdb_read_floor", default=None)


def parse_lsn(text: str) -> int:
    """``'16/B374D848'`` → an integer that orders like the LSN; ValidationError when malformed."""
    hi, sep, lo = text.strip().partition("/")
    try:
        if not sep or not hi or not lo or len(hi) > 8 or len(lo) > 8:
            raise ValueError(text)
        return (int(hi, 16) << 32) | int(lo, 16)
    except ValueError:
        raise ValidationError(
            f"not a WAL position (LSN): {text[:40]!r}; expected hex 'X/Y' as in '0/16B3748'",
            field="lsn",
        ) from None


def format_lsn(value: int) -> str:
    """The PostgreSQL text form of an LSN integer."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@contextmanager
def read_at_least(lsn: str | int | None) -> Iterator[None]:
    """Reads inside this block (this context) see at least WAL position ``lsn``.

    Nested blocks keep the higher floor; None leaves the current floor as it is.

    Example::

        with read_at_least(response.headers["X-Engram-LSN"]):
            mem.get(record_id)

    Raises:
        ValidationError: ``lsn`` is a string that is not an LSN.
    """
    value = parse_lsn(lsn) if isinstance(lsn, str) else lsn
    current = _FLOOR.get()
    if value is not None and current is not None:
        value = max(value, current)
    token = _FLOOR.set(value if value is not None else current)
    try:
        yield
    finally:
        _FLOOR.reset(token)


def read_floor() -> int | None:
    """The floor :func:`read_at_least` set for reads in this context, if any."""
    return _FLOOR.get()
