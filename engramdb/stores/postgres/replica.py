"""Read replicas for the PostgreSQL store: where a read goes, and read-your-writes.

With ``read_url`` set, :class:`~engramdb.stores.postgres.PostgresStore` keeps a second
pool to a streaming replica and asks a :class:`ReplicaRouter` before each routed read
(records, lists, counts, search candidates, history, events, slots, and the write
generation that guards the cache tier). Writes, migrations, backups and admin reads always
use the primary.

The freshness contract, in WAL positions (LSNs, kept as integers):

* **Read-your-writes per store object.** After each write transaction commits the store
  reads ``pg_current_wal_insert_lsn()`` on the same connection and keeps the highest
  value. That position is at or past the end of the COMMIT record whatever
  ``synchronous_commit`` says (``pg_current_wal_lsn()`` is only the *write* position and
  may still be before a commit record that sits in the WAL buffers; an LSN read inside the
  transaction is before the commit record). A replica whose
  ``pg_last_wal_replay_lsn()`` has reached it has therefore replayed the commit. A
  ``Memory`` owns one store, so its reads see its own writes; another ``Memory`` (another
  process) does not share the position and may read a replica that lags behind them.
* **A floor carried by the caller.** :func:`read_at_least` (used by the REST service for
  the ``X-Engram-LSN`` request header) raises the floor for the reads made inside it.
* **The cache generation.** A ``generation()`` read served by the primary also reads the
  primary's insert position and makes it this thread's floor, so the data reads that follow
  it (and are cached under that generation) are never older than the generation itself.
* **Bounded staleness for everyone else.** A replica more than ``max_lag_s`` behind (its
  receive position ahead of its replay position for longer than that, or cut off from the
  primary for longer than that since its last replayed transaction) is not used.

A replica that cannot be reached is skipped for :data:`DOWN_S` seconds (reads go to the
primary, counted in ``stats()["replica"]`` and logged once as a warning); a read never
fails because of the replica when the primary can serve it.

The replay position only moves forward, so a cached position that already covers the floor
needs no round trip; the lag and health probe is refreshed at most every :data:`PROBE_S`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engramdb.consistency import format_lsn as format_lsn
from engramdb.consistency import parse_lsn as parse_lsn
from engramdb.consistency import read_at_least as read_at_least
from engramdb.consistency import read_floor

log = logging.getLogger("engramdb.replica")

PROBE_S = 0.5  # how long a probe of the replica's lag and health is trusted
DOWN_S = 5.0  # how long an unreachable replica is skipped before it is tried again
CHECKOUT_S = 1.0  # longest wait for a replica connection before reading the primary

# The replay position and the lag in seconds. Lag: 0 when the replica has replayed all it
# received; the age of the last replayed transaction when it has received more (replay is
# behind or paused), or when no WAL receiver runs (cut off from the primary: it cannot know
# what it misses; never replayed anything since start: 1e9). Any user may run it (the WAL
# receiver view shows its row, without details, to everyone).
PROBE_SQL = (
    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
    "ELSE pg_current_wal_insert_lsn() END::text, "
    "CASE WHEN NOT pg_is_in_recovery() THEN 0.0 "
    "WHEN NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver) "
    "THEN coalesce(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 1e9) "
    "WHEN pg_last_wal_receive_lsn() IS NULL "
    "OR pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0.0 "
    "ELSE coalesce(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0) "
    "END::float8"
)
INSERT_LSN_SQL = "SELECT pg_current_wal_insert_lsn()::text"


class ReplicaRouter:
    """The routing state of one store's replica (see module docstring); thread-safe."""

    def __init__(self, max_lag_s: float) -> None:
        self.max_lag_s = float(max_lag_s)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._last_write: int | None = None
        self._primary_until = 0.0  # a write whose position is unknown: primary until then
        self._replay = -1  # highest replay position seen (monotone)
        self._lag_s = 0.0
        self._probed_at = -1e9
        self._down_until = 0.0
        self.counts = {
            "replica_reads": 0,
            "primary_reads": 0,
            "fallback_behind": 0,
            "fallback_lagging": 0,
            "fallback_down": 0,
            "replica_failures": 0,
        }

    # ---------------------------------------------------------------- positions

    def note_write(self, lsn: int) -> None:
        """Remember a committed write's position (the highest one wins)."""
        with self._lock:
            if self._last_write is None or lsn > self._last_write:
                self._last_write = lsn

    def note_unknown_write(self) -> None:
        """A write committed but its position could not be read: read the primary a while."""
        with self._lock:
            self._primary_until = time.monotonic() + self.max_lag_s

    def note_thread_floor(self, lsn: int) -> None:
        """This thread's next reads must be at least this fresh (a primary generation read)."""
        held = getattr(self._local, "floor", None)
        self._local.floor = lsn if held is None else max(lsn, held)

    def thread_floor(self) -> int | None:
        """This thread's own floor (:meth:`note_thread_floor`), to carry into a helper."""
        return getattr(self._local, "floor", None)

    @contextmanager
    def carrying(self, floor: int | None) -> Iterator[None]:
        """Read in this block, on this thread, under another thread's floor (a helper
        thread doing part of that thread's read: its reads must be as fresh)."""
        held = self.thread_floor()
        self._local.floor = floor
        try:
            yield
        finally:
            self._local.floor = held

    def last_write(self) -> int | None:
        """The position of this store's last committed write, if any."""
        return self._last_write

    def floor(self) -> int | None:
        """The position the next read on this thread must have been replayed past."""
        parts = [self._last_write, read_floor(), getattr(self._local, "floor", None)]
        known = [p for p in parts if p is not None]
        return max(known) if known else None

    # ---------------------------------------------------------------- decisions

    def plan(self) -> str:
        """``'replica'``, ``'probe'`` (ask the replica first) or ``'primary'`` for one read."""
        now = time.monotonic()
        with self._lock:
            if now < self._down_until:
                self.counts["fallback_down"] += 1
                return "primary"
            if now < self._primary_until:
                self.counts["fallback_behind"] += 1
                return "primary"
            if now - self._probed_at >= PROBE_S:
                return "probe"
            if self._lag_s > self.max_lag_s:
                self.counts["fallback_lagging"] += 1
                return "primary"
            need = self.floor()
            if need is None or self._replay >= need:
                return "replica"
            return "probe"

    def after_probe(self, replay: int, lag_s: float) -> bool:
        """Record a probe's answer; True when the replica may serve this read."""
        with self._lock:
            self._replay = max(self._replay, replay)
            self._lag_s = lag_s
            self._probed_at = time.monotonic()
            if lag_s > self.max_lag_s:
                self.counts["fallback_lagging"] += 1
                return False
            need = self.floor()
            if need is not None and self._replay < need:
                self.counts["fallback_behind"] += 1
                return False
            return True

    def mark_down(self, why: str) -> None:
        """The replica failed: skip it for :data:`DOWN_S` seconds (warned once per outage)."""
        with self._lock:
            warn = time.monotonic() >= self._down_until
            self._down_until = time.monotonic() + DOWN_S
            self.counts["replica_failures"] += 1
        if warn:
            log.warning("read replica unavailable, reading the primary for %.0f s: %s", DOWN_S, why)

    def served(self, by_replica: bool) -> None:
        """Count one routed read (and remember, for this thread, where it went)."""
        self._local.replica = by_replica
        with self._lock:
            self.counts["replica_reads" if by_replica else "primary_reads"] += 1

    def on_replica(self) -> bool:
        """True when this thread's last routed read went to the replica."""
        return bool(getattr(self._local, "replica", False))

    def stats(self) -> dict[str, Any]:
        """Counters and the last probe, for ``stats()["replica"]``."""
        with self._lock:
            return {
                **self.counts,
                "replay_lsn": format_lsn(self._replay) if self._replay >= 0 else None,
                "lag_s": round(self._lag_s, 3),
                "down": time.monotonic() < self._down_until,
                "last_write_lsn": (
                    format_lsn(self._last_write) if self._last_write is not None else None
                ),
                "max_lag_s": self.max_lag_s,
            }
