"""The one exception tree of engramdb, and the table that maps it to every surface.

::

    EngramError
     ├── ValidationError (ValueError)        bad input: 422, exit 2
     │    ├── LimitExceededError             a size or count limit: 413, exit 2
     │    ├── UnsupportedMediaTypeError      an upload of the wrong content type: 415, exit 2
     │    └── NotSupportedError              the store lacks the capability asked for: 422, exit 2
     ├── NotFoundError (LookupError)         404, exit 3
     ├── ConflictError                       stale version / id reused with other text: 409, exit 4
     ├── EmbedderMismatchError               store built with another embedder: 409, exit 5
     ├── EmbeddingError                      the embedder failed or returned garbage: 502, exit 6
     ├── ExtractionError                     the entity extractor is missing or failed: 503, exit 15
     ├── SchemaError                         store schema out of date / too new: 409, exit 7
     │    └── SchemaTooNewError
     ├── RateLimitedError                    a key's rate or concurrency limit: 429, exit 12
     ├── OverloadedError                     the service's queue for the call is full: 503, exit 13
     ├── QueryTimeoutError                   a read ran past its time budget: 504, exit 14
     ├── StoreError                          the storage layer failed: 503, exit 8
     │    ├── BusyError                      lock not acquired within busy_timeout: 503, exit 8
     │    └── StoreUnavailableError          server unreachable within store_retry_s: 503, exit 8
     │         └── CommitUnknownError        connection lost after COMMIT: outcome unknown
     ├── WrongContextError (RuntimeError)    sync call made on an event-loop thread: 500, exit 9
     ├── AuthenticationError                 no service key, or not a valid one: 401, exit 10
     ├── PermissionDeniedError               the key may not do this (namespace, read-only,
     │                                        admin route): 403, exit 11
     └── ResponseError                       (client) unreadable answer: 502, exit 1

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


class UnsupportedMediaTypeError(ValidationError):
    """A request body of a content type the route does not take (e.g. a text/plain upload).

    ``details``: ``content_type`` (what was sent) and ``expected`` (what the route takes).
    """

    code = "unsupported_media_type"


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


class RateLimitedError(EngramError):
    """An API key made calls faster, or more at once, than its limits allow.

    ``details``: ``limit`` (the setting) and ``retry_after`` (seconds; REST sends it as the
    ``Retry-After`` header).
    """

    code = "rate_limited"


class OverloadedError(EngramError):
    """The service's pool for this kind of call is busy and its queue is full; retry later.

    ``details``: ``pool`` (``heavy`` or ``light``), ``limit`` and ``retry_after`` (seconds).
    """

    code = "overloaded"


class QueryTimeoutError(EngramError):
    """A search, list or count ran past ``search_timeout_ms`` and was stopped.

    ``details``: ``limit`` (``search_timeout_ms``) and ``timeout_ms``.
    """

    code = "query_timeout"


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


class AuthenticationError(EngramError):
    """The service was called without a key, or with one it does not know (or revoked).

    REST answers 401 with ``WWW-Authenticate: Bearer``; the message never repeats the key.
    """

    code = "authentication_failed"


class PermissionDeniedError(EngramError):
    """The key is valid but may not make this call: another namespace, a write with a
    read-only key, or an admin route with a namespace key (REST: 403)."""

    code = "permission_denied"


class ResponseError(EngramError):
    """A service answered with a body the client cannot read (not the documented shape).

    The fault is the service's (or something between), not the caller's: 502, exit 1.
    """

    code = "bad_response"


# One table: error class -> (HTTP status, CLI exit code). An error resolves to the entry of
# the nearest class in its hierarchy (its ``__mro__``), so the order of entries is free and a
# new subclass inherits its parent's row until it is given one of its own.
ERROR_TABLE: dict[type[EngramError], tuple[int, int]] = {
    EngramError: (500, 1),
    ValidationError: (422, 2),
    LimitExceededError: (413, 2),
    NotSupportedError: (422, 2),
    UnsupportedMediaTypeError: (415, 2),
    RateLimitedError: (429, 12),
    OverloadedError: (503, 13),
    QueryTimeoutError: (504, 14),
    NotFoundError: (404, 3),
    ConflictError: (409, 4),
    QuotaExceededError: (409, 4),
    EmbedderMismatchError: (409, 5),
    EmbeddingError: (502, 6),
    ExtractionError: (503, 15),
    SchemaError: (409, 7),
    SchemaTooNewError: (409, 7),
    StoreError: (503, 8),
    BusyError: (503, 8),
    StoreUnavailableError: (503, 8),
    CommitUnknownError: (503, 8),
    WrongContextError: (500, 9),
    AuthenticationError: (401, 10),
    PermissionDeniedError: (403, 11),
    ResponseError: (502, 1),
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


def error_from_body(status: int, body: object) -> EngramError:
    """Rebuild the error a service answered with (``{"error", "message", "details"}``).

    The ``error`` code names the class (every class in ERROR_TABLE has its own code); a code
    this version does not know falls back to the most general class with the same status,
    so a client older than its server still raises the right family.
    """
    fields = body if isinstance(body, dict) else {}
    code = fields.get("error")
    message = fields.get("message")
    if not isinstance(message, str) or not message:
        message = f"the service answered {status} without an error message"
    details = fields.get("details")
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        cls = _BY_STATUS.get(status, EngramError)
    exc = cls(message)
    exc.details = dict(details) if isinstance(details, dict) else {}
    if cls is EngramError and isinstance(code, str):
        exc.details.setdefault("error", code)
    exc.details.setdefault("status", status)
    return exc


_BY_CODE: dict[str, type[EngramError]] = {cls.code: cls for cls in ERROR_TABLE}
_BY_STATUS: dict[int, type[EngramError]] = {}
for _cls, (_status, _exit) in ERROR_TABLE.items():
    # an unknown code of a status becomes that status's most general class (fewest bases)
    _known = _BY_STATUS.get(_status)
    if _known is None or len(_cls.__mro__) < len(_known.__mro__):
        _BY_STATUS[_status] = _cls
# An unknown 503 is read as the storage layer's (retryable) failure: overload and extraction
# failures carry codes every client of this version knows.
_BY_STATUS[503] = StoreError
