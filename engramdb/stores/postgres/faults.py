"""How the PostgreSQL store lives through a lost server: classify, watch, retry.

A server restart, a crash, a dropped TCP connection or a hung network path must neither
hang a call forever nor apply a write twice. Three small pieces, used by
:mod:`engramdb.stores.postgres`:

* :func:`is_connection_failure` / :func:`is_serialization_failure` sort a driver error into
  "the connection or server went away" (08xxx, admin/crash shutdown, "the database system
  is starting up", too many connections, a client-side "server closed the connection", a
  pool timeout), "the server rolled the transaction back to resolve a conflict" (40001,
  40P01), or anything else; :func:`translate` turns it into engramdb's error, retryable
  only where that is safe.
* :class:`Watchdog` bounds how long one attempt may wait for the server: when the deadline
  passes it shuts the connection's socket down, so the blocked driver call returns with a
  connection error at once (a blackholed server acknowledges TCP but never answers: only
  the client can give up). One daemon thread per process serves every store.
* :func:`retried` re-runs a store method while it fails with a retryable error, with
  exponential backoff and jitter, until ``retry_s`` has passed; serialization failures
  and deadlocks are retried at most :data:`MAX_CONFLICT_ATTEMPTS` times. The store only
  marks an error retryable when the transaction surely did not commit: every read, and a
  write that failed before COMMIT was sent. A write whose connection died after COMMIT
  was sent is never retried here: it raises :class:`~engramdb.errors.CommitUnknownError`.
* :class:`Breaker` remembers that the server is down: once a call has used up its window
  and failed, later calls get a shorter one (at most :data:`OPEN_WINDOW_S`) until a call
  succeeds, so a known outage answers 503 within seconds instead of every caller waiting
  ``retry_s``; its state shows in ``Memory.health()`` and the service's ``/health``.

Nested calls (a retried method calling another) retry only at the outermost level, so
windows do not multiply.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import psycopg
from psycopg import errors as pgerr
from psycopg_pool import PoolTimeout

from engramdb.deadline import remaining_ms, timeout_error
from engramdb.errors import (
    BusyError,
    CommitUnknownError,
    EngramError,
    StoreError,
    StoreUnavailableError,
    ValidationError,
)

log = logging.getLogger("engramdb.store")

# SQLSTATEs meaning the session or server went away (class 08 is matched by prefix):
# admin_shutdown, crash_shutdown, cannot_connect_now (starting up / shutting down),
# too_many_connections, idle_session_timeout.
CONNECTION_STATES = frozenset({"57P01", "57P02", "57P03", "53300", "57P05"})
# serialization_failure, deadlock_detected: the server rolled the transaction back.
CONFLICT_STATES = frozenset({"40001", "40P01"})
MAX_CONFLICT_ATTEMPTS = 5
OPEN_WINDOW_S = 5.0  # the retry window of a call while the breaker is open (at most)
FIRST_DELAY_S = 0.05
MAX_DELAY_S = 1.0

RETRIED: set[str] = set()  # qualified names of the methods wrapped by ``retried``

P = ParamSpec("P")
R = TypeVar("R")


def is_connection_failure(exc: BaseException) -> bool:
    """True when ``exc`` means the connection or the server went away (or never came)."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        return state is None or state.startswith("08") or state in CONNECTION_STATES
    return False


def is_serialization_failure(exc: BaseException) -> bool:
    """True for 40001 / 40P01: the server rolled back to resolve a conflict; safe to rerun."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate in CONFLICT_STATES


class RetryableUnavailable(StoreUnavailableError):
    """Raised inside a retried call: the attempt failed and surely did not commit."""


class RetryableBusy(BusyError):
    """Raised inside a retried call: a serialization failure or deadlock rolled it back."""


@dataclass(frozen=True)
class RetryPolicy:
    """The bounds of one store's fault handling (from the ``store_*`` settings)."""

    retry_s: float = 10.0
    io_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0


# The end of the retry window of the retried call in progress (monotonic clock), if any. A
# context variable, like the read budget: a helper thread running part of the call in a
# copy of its context (side_threads) works inside the same window and watchdog.
_DEADLINE: ContextVar[float | None] = ContextVar("engramdb_retry_deadline", default=None)


def in_retry() -> bool:
    """True while the current context runs inside a :func:`retried` call."""
    return _DEADLINE.get() is not None


def remaining(default: float) -> float:
    """Seconds left in the current retry window (``default`` outside one); at least 0.05."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return default
    return max(0.05, deadline - time.monotonic())


def translate(exc: Exception, doing: str, server: str, committing: bool = False) -> EngramError:
    """The engramdb error for a driver error raised while ``doing`` on ``server``.

    Inside a retried call, failures that surely did not commit come back as the retryable
    private classes below; a connection lost while COMMIT was in flight (``committing``) is
    :class:`CommitUnknownError`, never retried.
    """
    msg = str(exc).strip() or type(exc).__name__
    if is_connection_failure(exc):
        if committing:
            return CommitUnknownError(
                f"the connection to PostgreSQL at {server} was lost after COMMIT was sent "
                f"while {doing}: the outcome is unknown (it may or may not be applied); "
                f"retrying an add with the same record ids is safe: {msg}",
                outcome="unknown",
                server=server,
                doing=doing,
            )
        cls = RetryableUnavailable if in_retry() else StoreUnavailableError
        return cls(
            f"PostgreSQL at {server} is unavailable while {doing}: {msg}",
            server=server,
            doing=doing,
        )
    if is_serialization_failure(exc) and in_retry():
        return RetryableBusy(f"database is busy while {doing}: {msg}", doing=doing)
    if isinstance(
        exc, pgerr.SerializationFailure | pgerr.DeadlockDetected | pgerr.LockNotAvailable
    ):
        return BusyError(f"database is busy while {doing}: {msg}")
    if isinstance(exc, pgerr.QueryCanceled) and remaining_ms() is not None:
        return timeout_error(doing)
    # PostgreSQL's messages may quote the statement or the values: they go to the log, and
    # the error names only the condition (its class and SQLSTATE).
    state = getattr(exc, "sqlstate", None) or ""
    kind = f"{type(exc).__name__} {state}".strip()
    log.error("PostgreSQL error while %s: %s", doing, msg)
    if isinstance(exc, pgerr.DataError | pgerr.UntranslatableCharacter):
        return ValidationError(f"the database rejected a value while {doing} ({kind})")
    return StoreError(f"storage failed while {doing} ({kind}; the server log has the details)")


class Breaker:
    """A circuit breaker over the server's availability (one per store).

    Open from the first call that failed after its whole retry window until the next call
    that succeeds. While open, calls are not refused (the first one after the server is
    back must get through, and a breaker that blocks would need its own probing); they only
    retry for a shorter window, ``min(retry_s, OPEN_WINDOW_S)``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.opened_at: float | None = None  # wall-clock time the breaker opened
        self.failures = 0  # calls failed in a row since it opened
        self.last_error: str | None = None

    @property
    def is_open(self) -> bool:
        """True while the last call that settled the server's state failed."""
        return self.opened_at is not None

    def window(self, policy: RetryPolicy) -> float:
        """The retry window of the next call."""
        return min(policy.retry_s, OPEN_WINDOW_S) if self.is_open else policy.retry_s

    def failed(self, exc: StoreUnavailableError) -> None:
        """A call used up its window: open (or keep open) the breaker."""
        with self._lock:
            if self.opened_at is None:
                self.opened_at = time.time()
            self.failures += 1
            self.last_error = exc.message

    def succeeded(self) -> None:
        """A call reached the server: close the breaker."""
        if self.opened_at is None and not self.failures:
            return
        with self._lock:
            self.opened_at, self.failures, self.last_error = None, 0, None

    def state(self) -> dict[str, Any]:
        """The breaker as health reports it."""
        with self._lock:
            return {
                "state": "open" if self.opened_at is not None else "closed",
                "opened_at": self.opened_at,
                "failed_calls": self.failures,
                "last_error": self.last_error,
            }


class HasRetryPolicy(Protocol):
    """A store whose methods :func:`retried` can wrap."""

    retry_policy: RetryPolicy
    breaker: Breaker


S = TypeVar("S", bound=HasRetryPolicy)


def retried(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Re-run ``method`` on retryable failures within its store's retry window.

    Raises:
        StoreUnavailableError: the server stayed unreachable for ``retry_s``.
        BusyError: the transaction lost to conflicts :data:`MAX_CONFLICT_ATTEMPTS` times.
    """

    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if _DEADLINE.get() is not None:
            return method(self, *args, **kwargs)
        policy = self.retry_policy
        breaker = self.breaker
        window = breaker.window(policy)
        start = time.monotonic()
        deadline = start + window
        token = _DEADLINE.set(deadline)
        attempts = conflicts = 0
        try:
            while True:
                attempts += 1
                try:
                    result = method(self, *args, **kwargs)
                    breaker.succeeded()
                    return result
                except RetryableBusy as exc:
                    conflicts += 1
                    if conflicts >= MAX_CONFLICT_ATTEMPTS:
                        raise BusyError(
                            f"{exc.message} (gave up after {conflicts} attempts)",
                            **exc.details,
                            attempts=conflicts,
                        ) from exc
                    delay = _delay(conflicts)
                    if time.monotonic() + delay > deadline:
                        raise BusyError(exc.message, **exc.details, attempts=conflicts) from exc
                except RetryableUnavailable as exc:
                    delay = _delay(attempts)
                    elapsed = time.monotonic() - start
                    if time.monotonic() + delay > deadline:
                        note = (
                            f"store_retry_s={policy.retry_s:g}"
                            if window == policy.retry_s
                            else f"shortened to {window:g} s: the server was already "
                            "unavailable for an earlier call"
                        )
                        failure = StoreUnavailableError(
                            f"{exc.message} (gave up after {attempts} attempts in "
                            f"{elapsed:.1f} s; {note})",
                            **exc.details,
                            attempts=attempts,
                            elapsed_s=round(elapsed, 3),
                        )
                        breaker.failed(failure)
                        raise failure from exc
                time.sleep(delay)
        finally:
            _DEADLINE.reset(token)

    functools.update_wrapper(wrapper, method)
    RETRIED.add(method.__qualname__)
    return wrapper


def _delay(attempt: int) -> float:
    """Exponential backoff with full jitter in its upper half."""
    base = min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** (attempt - 1))
    return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


class Watchdog:
    """Shuts down the socket of a connection whose attempt outlived its deadline.

    ``arm`` and ``disarm`` run under one lock with the firing, so a connection is only
    ever cut while its attempt still owns it (never after it went back to the pool).
    """

    TICK_S = 0.1

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, psycopg.Connection[Any]]] = {}
        self._fired: set[int] = set()
        self._next = 0
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        # A fork child has no watchdog thread and maybe a lock held by the parent's: renew.
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._armed.clear()
        self._fired.clear()
        self._thread = None
        self._pid = os.getpid()

    def arm(self, conn: psycopg.Connection[Any], timeout_s: float) -> int:
        """Watch ``conn`` for ``timeout_s`` seconds; return the token for :meth:`disarm`."""
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._armed.clear()
                self._thread = threading.Thread(
                    target=self._run, name="engramdb-pg-watchdog", daemon=True
                )
                self._thread.start()
            self._next += 1
            self._armed[self._next] = (time.monotonic() + timeout_s, conn)
            return self._next

    def disarm(self, token: int) -> bool:
        """Stop watching (the attempt is over); True when the deadline had cut it."""
        with self._lock:
            self._armed.pop(token, None)
            fired = token in self._fired
            self._fired.discard(token)
            return fired

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK_S)
            now = time.monotonic()
            with self._lock:
                late = [t for t, (deadline, _) in self._armed.items() if deadline <= now]
                for token in late:
                    _, conn = self._armed.pop(token)
                    self._fired.add(token)
                    cut(conn)


def cut(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down so a call blocked on it fails at once."""
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


WATCHDOG = Watchdog()
