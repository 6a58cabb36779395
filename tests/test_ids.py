"""Record ids: 26 Crockford base32 digits of (milliseconds << 80 | random), time-ordered."""

from __future__ import annotations

import time

from engramdb.ids import ID_PATTERN, new_id

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _decode(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 32 + ALPHABET.index(ch)
    return value


def test_ids_carry_their_time_and_sort_in_creation_order() -> None:
    before = int(time.time() * 1000)
    ids = [new_id() for _ in range(20_000)]
    after = int(time.time() * 1000)
    assert all(len(i) == 26 and ID_PATTERN.match(i) and set(i) <= set(ALPHABET) for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # strictly increasing as text, so by creation in a process
    values = [_decode(i) for i in ids]
    assert values == sorted(values) and all(v < 1 << 128 for v in values)
    for value in (values[0], values[-1]):
        assert before <= value >> 80 <= after
    # Within one millisecond the random part counts up by one.
    same_ms = [(a, b) for a, b in zip(values, values[1:], strict=False) if a >> 80 == b >> 80]
    assert same_ms and all(b == a + 1 for a, b in same_ms)
