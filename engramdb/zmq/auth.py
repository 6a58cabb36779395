"""The one place the ZeroMQ endpoint asks whether a key may make a call.

``authorize(api_key, namespace, op)`` returns when the call may go on and raises
``AuthenticationError`` (no key, or a key the service does not know) or
``PermissionDeniedError`` (another namespace, a write with a read-only key) when it may not.
The endpoint replies ``ok: false`` with that error's code and keeps serving.

Today it lets every call through: the service has no keys yet. The endpoint also forwards
the key as ``Authorization: Bearer`` to the REST app it dispatches into, so whatever the
REST app checks applies to ZeroMQ calls as soon as it checks it.
"""

from __future__ import annotations

from collections.abc import Callable

Authorize = Callable[[str | None, str, str], None]


def authorize(api_key: str | None, namespace: str, op: str) -> None:
    """Allow every call (no keys yet); the signature is the one the key store will fill."""
    return None
