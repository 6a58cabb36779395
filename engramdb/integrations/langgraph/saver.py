"""``EngramSaver``: LangGraph's checkpointer on engramdb's store (SQLite or PostgreSQL).

A checkpoint is saved as the serializer's bytes of the checkpoint with its primitive channel
values inline, and one blob per (channel, version) for every other value (what PostgreSQL's
own saver does): a channel that did not change is not written again, and a thread of many
steps stores each large value once. Pending writes are rows of their own. Every call is one
transaction of engramdb's store, in the namespace of the ``Memory`` it was given.

Capabilities (``langgraph-checkpoint-conformance``): the base ones (put, put_writes,
get_tuple, list, delete_thread) and ``delete_for_runs``, ``copy_thread`` and ``prune``
(``keep_latest`` and ``delete``). ``prune`` refuses threads that use a DeltaChannel (their
state needs the checkpoints between the newest and its last snapshot), as LangGraph's
PostgreSQL saver does.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from engramdb._async_memory import AsyncMemory
from engramdb._facade import call_async
from engramdb.config import Settings
from engramdb.embedders.base import Embedder
from engramdb.errors import ValidationError
from engramdb.integrations.langgraph.opening import open_memory
from engramdb.memory import Memory
from engramdb.models import CheckpointBlob, CheckpointRow, CheckpointWrite

_INLINE = (str, int, float, bool)


class EngramSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer keeping threads in engramdb (sync and async).

    Args:
        url_or_memory: a store URL (opened here and closed by :meth:`close`), or a
            ``Memory``/``AsyncMemory`` to share (its namespace holds the checkpoints).
        namespace: the engramdb namespace (default: the Memory's, or the settings').
        serde: LangGraph's serializer (default: LangGraph's ``JsonPlusSerializer``).

    Example::

        saver = EngramSaver("sqlite:///agent.db")
        graph = builder.compile(checkpointer=saver)
        graph.invoke({"messages": [...]}, {"configurable": {"thread_id": "t1"}})
    """

    def __init__(
        self,
        url_or_memory: str | Memory | AsyncMemory,
        *,
        namespace: str | None = None,
        serde: SerializerProtocol | None = None,
        embedder: str | Embedder | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.memory, self._owned = open_memory(
            url_or_memory, namespace=namespace, embedder=embedder, settings=settings
        )
        self._tables = self.memory.checkpoints

    def close(self) -> None:
        """Close the store if this saver opened it (a shared Memory stays open)."""
        if self._owned:
            self.memory.close()

    def __enter__(self) -> EngramSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sync

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Return the checkpoint named by ``config`` (the thread's newest without an id)."""
        c = _configurable(config)
        row = self._tables.get(
            str(c["thread_id"]), str(c.get("checkpoint_ns", "")), get_checkpoint_id(config)
        )
        return None if row is None else self._tuple(row)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Yield checkpoints newest first: of a thread (``config``), or of every thread."""
        c = _configurable(config) if config else {}
        rows = self._tables.list(
            thread_id=None if c.get("thread_id") is None else str(c["thread_id"]),
            checkpoint_ns=c.get("checkpoint_ns"),
            checkpoint_id=get_checkpoint_id(config) if config else None,
            before=get_checkpoint_id(before) if before else None,
            metadata=filter,
            limit=limit,
        )
        for row in rows:
            yield self._tuple(row)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save a checkpoint and the channel values it changed; return its config."""
        c = _configurable(config)
        thread_id, checkpoint_ns = str(c["thread_id"]), str(c.get("checkpoint_ns", ""))
        inline = dict(checkpoint["channel_values"])
        stored: dict[str, Any] = {}
        for channel, value in checkpoint["channel_values"].items():
            if value is not None and not isinstance(value, _INLINE):
                stored[channel] = inline.pop(channel)
        blobs = []
        for channel, version in new_versions.items():
            if channel in stored:
                kind, data = self.serde.dumps_typed(stored[channel])
                blobs.append(CheckpointBlob(channel, str(version), kind, data))
            elif channel not in inline:
                blobs.append(CheckpointBlob(channel, str(version), "empty", None))
        kind, data = self.serde.dumps_typed({**checkpoint, "channel_values": inline})
        row = CheckpointRow(
            thread_id,
            checkpoint_ns,
            checkpoint["id"],
            c.get("checkpoint_id"),
            kind,
            data,
            cast(dict[str, Any], get_serializable_checkpoint_metadata(config, metadata)),
            {ch: str(v) for ch, v in checkpoint["channel_versions"].items()},
        )
        self._tables.put(row, blobs)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Save a task's pending writes against the checkpoint of ``config``."""
        c = _configurable(config)
        rows = []
        for idx, (channel, value) in enumerate(writes):
            kind, data = self.serde.dumps_typed(value)
            rows.append(
                CheckpointWrite(
                    task_id, task_path, WRITES_IDX_MAP.get(channel, idx), channel, kind, data
                )
            )
        self._tables.put_writes(
            str(c["thread_id"]),
            str(c.get("checkpoint_ns", "")),
            str(c["checkpoint_id"]),
            rows,
            # Special channels (errors, interrupts) replace; the rest keep the first write.
            replace=all(w[0] in WRITES_IDX_MAP for w in writes),
        )

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of a thread."""
        self._tables.delete_threads([str(thread_id)])

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) of the given runs."""
        self._tables.delete_runs([str(r) for r in run_ids])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, channel value and write of a thread to another."""
        self._tables.copy_thread(str(source_thread_id), str(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: ``keep_latest`` (per checkpoint namespace) or ``delete``."""
        ids = [str(t) for t in thread_ids]
        if strategy == "keep_latest":
            self._tables.prune(ids)
        elif strategy == "delete":
            self._tables.delete_threads(ids)
        else:
            raise ValidationError(
                f"unknown prune strategy {strategy!r}: keep_latest or delete", field="strategy"
            )

    def get_next_version(self, current: str | None, channel: None) -> str:
        """A version that sorts after ``current`` (zero-padded counter, random tiebreak)."""
        if current is None:
            n = 0
        elif isinstance(current, int):
            n = current
        else:
            n = int(current.split(".")[0])
        return f"{n + 1:032}.{random.random():016}"

    # ------------------------------------------------------------------ async (in the pool)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async :meth:`get_tuple` (runs in engramdb's shared thread pool)."""
        return await call_async("aget_tuple", self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async :meth:`list`."""
        tuples = await call_async(
            "alist",
            lambda: [*self.list(config, filter=filter, before=before, limit=limit)],
        )
        for t in tuples:
            yield t

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async :meth:`put`."""
        return await call_async("aput", self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async :meth:`put_writes`."""
        await call_async("aput_writes", self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async :meth:`delete_thread`."""
        await call_async("adelete_thread", self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async :meth:`delete_for_runs`."""
        await call_async("adelete_for_runs", self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async :meth:`copy_thread`."""
        await call_async("acopy_thread", self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async :meth:`prune`."""
        await call_async("aprune", lambda: self.prune(thread_ids, strategy=strategy))

    # ------------------------------------------------------------------ rows -> tuples

    def _tuple(self, row: CheckpointRow) -> CheckpointTuple:
        checkpoint = self.serde.loads_typed((row.type, row.checkpoint))
        values = dict(checkpoint.get("channel_values") or {})
        for b in row.blobs:
            if b.type != "empty" and b.blob is not None:
                values[b.channel] = self.serde.loads_typed((b.type, b.blob))
        writes = sorted(row.writes, key=lambda w: writes_sort_key(w.task_path, w.task_id, w.idx))
        scope = {"thread_id": row.thread_id, "checkpoint_ns": row.checkpoint_ns}
        return CheckpointTuple(
            {"configurable": {**scope, "checkpoint_id": row.checkpoint_id}},
            cast(Checkpoint, {**checkpoint, "channel_values": values}),
            cast(CheckpointMetadata, row.metadata),
            {"configurable": {**scope, "checkpoint_id": row.parent_id}} if row.parent_id else None,
            [(w.task_id, w.channel, self.serde.loads_typed((w.type, w.blob))) for w in writes],
        )


def _configurable(config: RunnableConfig) -> dict[str, Any]:
    c = config.get("configurable") if isinstance(config, dict) else None
    if not isinstance(c, dict) or ("thread_id" not in c and "checkpoint_id" not in c):
        raise ValidationError(
            "config must hold configurable.thread_id (LangGraph's thread key)", field="config"
        )
    return c
