"""Counting calls of an object's methods in a test, the real methods still running."""

from __future__ import annotations

from typing import Any

import pytest


def count_calls(monkeypatch: pytest.MonkeyPatch, obj: object, names: list[str]) -> dict:
    """Count calls of the named methods of ``obj`` (the real methods still run)."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(obj, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(obj, name, counted)
    return calls
