"""The one exception tree of engramdb, and the table that maps it to every surface.

::

    EngramError
     ├── ValidationError (ValueError)        bad input: 422, exit 2
     │    ├── LimitExceededError             a size or count limit: 413, exit 2
     │    └── NotSupportedError              the store lacks the capability asked for: 422, exit 2
     ├── NotFoundError (LookupError)         404, exit 3
     ├── ConflictError                       stale version / id reused with other text: 409, exit 4
     ├── EmbedderMismatchError               store built with another embedder: 409, exit 5
     ├── EmbeddingError                      the embedder failed or returned garbage: 502, exit 6
     ├── ExtractionError                     the entity extractor is missing or failed: 503, exit 10
     ├── SchemaError                         store schema out of date / too new: 409, exit 7
     │    └── SchemaTooNewError
     ├── StoreError                          the storage layer failed: 503, exit 8
     │    ├── BusyError                      lock not acquired within busy_timeout: 503, exit 8
     │    └── StoreUnavailableError          server unreachable within store_retry_s: 503, exit 8
     │         └── CommitUnknownError        connection lost after COMMIT: outcome unknown
     └── WrongContextError (RuntimeError)    sync call made on an event-loop thread: 500, exit 9

Every error carries a message naming what was wrong and a ``details`` dict that the
REST layer returns as ``{"error", "message", "details"}``.
"""

from __future__ import annotations

from typing import Any


class EngramError(Exception):
    """Root of every error engramdb raises on purpose."""

    code = "engram_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON error body used by REST and ``--json`` CLI output."""
        return {"error": self.code, "message": self.message, "details": self.details}


class ValidationError(EngramError, ValueError):
    """An argument, record field or filter is invalid."""

    code = "validation_error"


class LimitExceededError(ValidationError):
    """A configured limit (text size, metadata size, batch size, top_k...) was exceeded."""

    code = "limit_exceeded"


class NotSupportedError(ValidationError):
    """The store does not implement the capability the call needs (e.g. bulk loading).

    ``details``: ``backend`` and ``capability`` (the protocol it lacks).
    """

    code = "not_supported"


class NotFoundError(EngramError, LookupError):
    """The record (or thread, or backup file) does not exist in this namespace."""

    code = "not_found"


class ConflictError(EngramError):
    """A compare-and-set lost (stale expected_version) or an id was reused with other text."""

    code = "conflict"


class QuotaExceededError(ConflictError):
    """The write would take a namespace past ``namespace_max_records``; nothing was written.

    ``details``: ``namespace``, ``limit``, ``records`` (live before the write) and
    ``adding`` (new records the write would have added, duplicates not counted).
    """

    code = "quota_exceeded"


class EmbedderMismatchError(EngramError):
    """The store was built with another embedder (name or dimension)."""

    code = "embedder_mismatch"


class EmbeddingError(EngramError):
    """The embedder failed, timed out, or returned vectors of the wrong shape or non-finite."""

    code = "embedding_error"


class ExtractionError(EngramError):
    """The entity extractor (spaCy and its model) is not installed or failed.

    A record is never lost to it: the record is stored, its extraction is parked and
    ``doctor --repair`` retries it.
    """

    code = "extraction_error"


class SchemaError(EngramError):
    """The store's schema is not at the version this code expects."""

    code = "schema_error"


class SchemaTooNewError(SchemaError):
    """The store was written by a newer engramdb; refusing to touch it."""

    code = "schema_too_new"


class StoreError(EngramError):
    """The storage layer failed (I/O error, corruption, unavailable server)."""

    code = "store_error"


class BusyError(StoreError):
    """The database stayed locked by another writer longer than busy_timeout."""

    code = "busy"


class StoreUnavailableError(StoreError):
    """The database server could not be reached (or answered) within the retry window.

    The message names the server (host:port, never the password) and what was being done.
    Nothing was committed: the call can be retried once the server is back.
    """

    code = "store_unavailable"


class CommitUnknownError(StoreUnavailableError):
    """The connection was lost after COMMIT was sent: the write may or may not be applied.

    ``details["outcome"]`` is ``"unknown"``; for adds ``details["ids"]`` lists the record
    ids of the batch. Retrying the add with those ids (``add(..., id=…)``) is safe: an add
    whose id exists with the same text returns the existing record instead of a copy.
    """

    code = "commit_unknown"


class WrongContextError(EngramError, RuntimeError):
    """A blocking sync method was called on the thread that runs an event loop."""

    code = "wrong_context"


# One table: error class -> (HTTP status, CLI exit code). An error resolves to the entry of
# the nearest class in its hierarchy (its ``__mro__``), so the order of entries is free and a
# new subclass inherits its parent's row until it is given one of its own.
ERROR_TABLE: dict[type[EngramError], tuple[int, int]] = {
    EngramError: (500, 1),
    ValidationError: (422, 2),
    LimitExceededError: (413, 2),
    NotSupportedError: (422, 2),
    NotFoundError: (404, 3),
    ConflictError: (409, 4),
    QuotaExceededError: (409, 4),
    EmbedderMismatchError: (409, 5),
    EmbeddingError: (502, 6),
    ExtractionError: (503, 10),
    SchemaError: (409, 7),
    SchemaTooNewError: (409, 7),
    StoreError: (503, 8),
    BusyError: (503, 8),
    StoreUnavailableError: (503, 8),
    CommitUnknownError: (503, 8),
    WrongContextError: (500, 9),
}


def _entry(exc: BaseException) -> tuple[int, int]:
    for cls in type(exc).__mro__:
        entry = ERROR_TABLE.get(cls)
        if entry is not None:
            return entry
    return 500, 1


def status_for(exc: EngramError) -> int:
    """Return the HTTP status for an engramdb error (its nearest class in the table)."""
    return _entry(exc)[0]


def exit_code_for(exc: EngramError) -> int:
    """Return the CLI exit code for an engramdb error (its nearest class in the table)."""
    return _entry(exc)[1]
