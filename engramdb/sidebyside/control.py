"""The routing control file: how an operator (``engramdb read-from-new``) changes a running
application's ``read_from_new`` and sees its rollbacks.

The setting lives in the application's process; the file is the one place both sides reach
without a network route. The operator's tool writes ``{"read_from_new": n}``; the
application notices a changed file on its next read (one ``stat``) and applies it; its own
rollback writes ``{"read_from_new": 0, "rolled_back": true, "reason": …}`` back. Writes are
atomic (a temporary file renamed over the old one), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engramdb.errors import ValidationError


class RoutingControl:
    """The control file at ``path`` (absent until first written)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int] | None = None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def read(self) -> dict[str, Any] | None:
        """The file's content, or None when there is none.

        Raises:
            ValidationError: the file is not a JSON object with an integer read_from_new.
        """
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:
            raise ValidationError(f"routing control {self.path}: unreadable ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("read_from_new"), int):
            raise ValidationError(
                f'routing control {self.path}: expected {{"read_from_new": 0..100}}',
                field="read_from_new",
            )
        return data

    def changed(self) -> dict[str, Any] | None:
        """The content when the file changed since last seen (or written here), else None."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return None
        self._seen = stamp
        return self.read()

    def write(self, read_from_new: int, **extra: Any) -> None:
        """Replace the file atomically with this state."""
        data = {
            "read_from_new": read_from_new,
            "updated_at": datetime.now(UTC).isoformat(),
            **extra,
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        self._seen = self._stamp()
