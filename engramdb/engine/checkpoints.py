"""Thread checkpoints of agent frameworks, scoped to one namespace and checked at the door.

What LangGraph's checkpointer (``engramdb.integrations.langgraph.EngramSaver``) needs of a
store: checkpoints, channel blobs and pending writes, kept opaque (the framework's serializer
writes the bytes). Reached from the facades as ``Memory.checkpoints``, so it adds one
accessor to their API instead of a verb per operation. The store holds the rows through its
:class:`~engramdb.stores.base.Checkpoints` role, in its own transactions.
"""

from __future__ import annotations

import builtins
from typing import Any

from engramdb.errors import ValidationError
from engramdb.models import CheckpointBlob, CheckpointRow, CheckpointWrite
from engramdb.stores.base import Checkpoints

MAX_KEY_CHARS = 1024


def check_key(value: Any, field: str, *, empty: bool = False) -> str:
    """Return ``value`` if it is a string fit to be a key column (thread, namespace, id)."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {type(value).__name__}", field=field)
    if not value and not empty:
        raise ValidationError(f"{field} is empty", field=field)
    if len(value) > MAX_KEY_CHARS or "\x00" in value:
        raise ValidationError(
            f"{field} must be at most {MAX_KEY_CHARS} characters without NUL", field=field
        )
    return value


def _check_keys(values: Any, field: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, list | tuple | set | frozenset):
        raise ValidationError(f"{field} must be a list of strings", field=field)
    return [check_key(v, field) for v in values]


class ThreadCheckpoints:
    """The checkpoint tables of one namespace (see module docstring)."""

    def __init__(self, store: Checkpoints, namespace: str) -> None:
        self._store = store
        self.namespace = namespace

    def put(self, row: CheckpointRow, blobs: list[CheckpointBlob]) -> None:
        """Save a checkpoint and the channel values it introduces, in one transaction."""
        check_key(row.thread_id, "thread_id")
        check_key(row.checkpoint_ns, "checkpoint_ns", empty=True)
        check_key(row.checkpoint_id, "checkpoint_id")
        if row.parent_id is not None:
            check_key(row.parent_id, "parent_checkpoint_id")
        self._store.put_checkpoint(self.namespace, row, blobs)

    def put_writes(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        writes: list[CheckpointWrite],
        *,
        replace: bool,
    ) -> None:
        """Save a task's pending writes against a checkpoint."""
        check_key(thread_id, "thread_id")
        check_key(checkpoint_ns, "checkpoint_ns", empty=True)
        check_key(checkpoint_id, "checkpoint_id")
        if writes:
            self._store.put_checkpoint_writes(
                self.namespace, thread_id, checkpoint_ns, checkpoint_id, writes, replace
            )

    def get(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRow | None:
        """Return a checkpoint, or the thread's newest when ``checkpoint_id`` is None."""
        check_key(thread_id, "thread_id")
        check_key(checkpoint_ns, "checkpoint_ns", empty=True)
        if checkpoint_id is not None:
            check_key(checkpoint_id, "checkpoint_id")
        return self._store.get_checkpoint(self.namespace, thread_id, checkpoint_ns, checkpoint_id)

    def list(
        self,
        *,
        thread_id: str | None = None,
        checkpoint_ns: str | None = None,
        checkpoint_id: str | None = None,
        before: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> list[CheckpointRow]:
        """Return matching checkpoints, newest first (``metadata``: top-level equality)."""
        if thread_id is not None:
            check_key(thread_id, "thread_id")
        if checkpoint_ns is not None:
            check_key(checkpoint_ns, "checkpoint_ns", empty=True)
        for value, field in ((checkpoint_id, "checkpoint_id"), (before, "before")):
            if value is not None:
                check_key(value, field)
        if metadata is not None and not isinstance(metadata, dict):
            raise ValidationError("filter must be an object of metadata values", field="filter")
        if metadata:
            for key in metadata:
                check_key(key, "filter key")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValidationError("limit must be a non-negative integer", field="limit")
        return self._store.list_checkpoints(
            self.namespace, thread_id, checkpoint_ns, checkpoint_id, before, metadata, limit
        )

    def delete_threads(self, thread_ids: builtins.list[str]) -> int:
        """Delete every checkpoint, blob and write of the threads."""
        ids = _check_keys(thread_ids, "thread_ids")
        return self._store.delete_checkpoint_threads(self.namespace, ids) if ids else 0

    def delete_runs(self, run_ids: builtins.list[str]) -> int:
        """Delete the checkpoints (and their writes) whose metadata names one of the runs."""
        ids = _check_keys(run_ids, "run_ids")
        return self._store.delete_checkpoint_runs(self.namespace, ids) if ids else 0

    def copy_thread(self, source: str, target: str) -> int:
        """Copy every checkpoint, blob and write of ``source`` to ``target``."""
        check_key(source, "source_thread_id")
        check_key(target, "target_thread_id")
        if source == target:
            raise ValidationError("cannot copy a thread onto itself", field="target_thread_id")
        return self._store.copy_checkpoint_thread(self.namespace, source, target)

    def prune(self, thread_ids: builtins.list[str]) -> int:
        """Keep only the newest checkpoint of each (thread, checkpoint namespace)."""
        ids = _check_keys(thread_ids, "thread_ids")
        return self._store.prune_checkpoints(self.namespace, ids) if ids else 0
