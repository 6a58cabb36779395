"""The one hook through which the library reports what it does, for whoever measures it.

The library has no metrics dependency: the facades report every verb call (its name, its
outcome, how long it took), the engine reports time spent in the embedder, the cache tier
its hits and misses, and the shared pool how many calls wait for a thread. Nobody listens
by default, and then a report costs one global read. The service installs an observer
(``engramdb.server.metrics``) that turns the reports into Prometheus metrics; a test may
install its own.

A leaf: imports nothing of engramdb, so every layer may report through it.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    """What the library reports. Every method must be cheap and must never raise."""

    def operation(self, op: str, seconds: float, error: BaseException | None) -> None:
        """A facade verb ``op`` finished after ``seconds``; ``error`` is what it raised."""

    def timing(self, name: str, seconds: float) -> None:
        """A stage took ``seconds``: ``embedding``, ``entity_extraction``."""

    def cache(self, hits: int, misses: int) -> None:
        """The cache tier served ``hits`` entries and missed ``misses``."""

    def queued(self, pool: str, delta: int) -> None:
        """A call began (+1) or stopped (-1) waiting for a thread of ``pool``."""


_observer: Observer | None = None


def set_observer(observer: Observer | None) -> Observer | None:
    """Install ``observer`` for the whole process (None: nobody listens); return the old one."""
    global _observer
    previous, _observer = _observer, observer
    return previous


def observer() -> Observer | None:
    """The installed observer, or None."""
    return _observer


def timing(name: str, seconds: float) -> None:
    """Report that stage ``name`` took ``seconds`` (nothing when nobody listens)."""
    obs = _observer
    if obs is not None:
        obs.timing(name, seconds)


def cache(hits: int, misses: int) -> None:
    """Report cache hits and misses (nothing when nobody listens)."""
    obs = _observer
    if obs is not None:
        obs.cache(hits, misses)
