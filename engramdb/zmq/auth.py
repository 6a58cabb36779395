"""The one place the ZeroMQ endpoint asks whether a key may make a call.

``authorize(api_key, namespace, op)`` returns when the call may go on and raises
``AuthenticationError`` (no key, or a key the service does not know) or
``PermissionDeniedError`` (another namespace, a write with a read-only key) when it may not.
The endpoint replies ``ok: false`` with that error's code and keeps serving.

The service's keys are checked by the REST app the endpoint dispatches into: the frame's
key goes to it as ``Authorization: Bearer``, so ZeroMQ calls meet the same keys, tenancy
and read-only rules as REST (``tests/client/test_zmq_endpoint.py``). This hook is an extra
gate in front of that, for a deployment that wants a stricter rule on this socket.
"""

from __future__ import annotations

from collections.abc import Callable

Authorize = Callable[[str | None, str, str], None]


def authorize(api_key: str | None, namespace: str, op: str) -> None:
    """Add no rule of its own: the REST app behind the endpoint checks every key."""
    return None
