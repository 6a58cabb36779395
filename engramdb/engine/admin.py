"""Whole-store calls: erasure, health, stats, integrity, backup, transfer, re-embedding.

Most of them need a store role beyond the record protocol (:class:`Maintenance` or
:class:`Transfer`); a store without it answers with a ``NotSupportedError`` that names the
role and the call, never an ``AttributeError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engramdb.cache import Cache
from engramdb.config import Settings
from engramdb.embedders.base import Embedder, resolve_embedder
from engramdb.engine import validation as v
from engramdb.engine.encoder import Encoder
from engramdb.engine.transfer import export_jsonl, import_jsonl
from engramdb.engine.transfer import reembed as reembed_chunks
from engramdb.errors import EngramError, NotSupportedError, ValidationError
from engramdb.query.filters import Node
from engramdb.stores.base import Maintenance, Store, Transfer


class Admin:
    """The calls that concern a whole store (or a whole subject) rather than records."""

    def __init__(self, settings: Settings, store: Store, cache: Cache, encoder: Encoder) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache
        self.encoder = encoder

    def forget(
        self,
        namespace: str,
        user_id: str | None,
        thread_id: str | None,
        everything: bool,
        compact: bool = False,
    ) -> dict[str, int]:
        """Erase a subject for good (records, history, events, slots)."""
        v.check_namespace(namespace)
        user = v.check_scope(user_id, "user_id")
        thread = v.check_scope(thread_id, "thread_id")
        for name, flag in (("namespace", everything), ("compact", compact)):
            if not isinstance(flag, bool):
                raise ValidationError(
                    f"{name} must be true or false, not {type(flag).__name__}", field=name
                )
        if user is None and thread is None and not everything:
            raise ValidationError("forget needs user_id, thread_id, or namespace=True")
        return self.store.forget(namespace, user, thread, everything, compact)

    def health(self) -> dict[str, Any]:
        """Check each component, each with its ``latency_ms``: the store answers, the embedder
        embeds, the cache (when configured) answers a ping.

        ``status`` is ``ok`` when the store and the embedder are: a failing cache only costs
        misses, so it shows in its own entry without making the whole degraded.
        """
        out: dict[str, Any] = {"store": _timed(self.store.health)}

        def embed() -> dict[str, Any]:
            try:
                self.encoder.embed(["health check"], query=True)
            except EngramError as exc:
                return {"status": "error", "message": exc.message}
            embedder = self.encoder.embedder
            return {"status": "ok", "name": embedder.name, "dim": embedder.dim}

        out["embedder"] = _timed(embed)
        out["cache"] = _timed(self.cache.health)
        vital = (out["store"], out["embedder"])
        out["status"] = "ok" if all(c["status"] == "ok" for c in vital) else "degraded"
        return out

    def maintenance(self, doing: str) -> Maintenance:
        """The store as :class:`Maintenance`, or a clear error when it has no such role."""
        if not isinstance(self.store, Maintenance):
            raise _unsupported(self.store, "Maintenance", doing)
        return self.store

    def transfer(self, doing: str) -> Transfer:
        """The store as :class:`Transfer`, or a clear error when it has no such role."""
        if not isinstance(self.store, Transfer):
            raise _unsupported(self.store, "Transfer", doing)
        return self.store

    def namespaces(self) -> dict[str, int]:
        """Return every namespace with its record count."""
        return self.store.namespaces()

    def stats(self, namespace: str) -> dict[str, Any]:
        """Counts and sizes of one namespace and of the whole store, with embedder and cache."""
        store = self.maintenance("stats")
        embedder = self.encoder.embedder
        return {
            "namespace": namespace,
            "namespace_stats": store.stats(namespace),
            "store": store.stats(),
            "embedder": {"name": embedder.name, "dim": embedder.dim},
            "cache": self.cache.stats(),
        }

    def doctor(self, repair: bool) -> dict[str, Any]:
        """Check integrity and that every derived index agrees with the tables."""
        return self.maintenance("doctor").doctor(repair)

    def backup(self, path: Path) -> None:
        """Write a consistent online copy of the whole store to ``path``."""
        self.maintenance("backup").backup(path)

    def restore(self, path: Path) -> None:
        """Replace the store's content with a backup."""
        self.maintenance("restore").restore(path)

    def last_write_lsn(self) -> str | None:
        """The store's position after this process's last write (read-your-writes)."""
        return self.store.last_write_lsn()

    def export(
        self,
        path: str | Path,
        namespace: str | None,
        node: Node | None,
        vectors: bool,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write records (with history), events and slots as versioned JSONL; return records."""
        store = self.transfer("export")
        return export_jsonl(self.encoder, store, Path(path), namespace, node, vectors, progress)

    def import_(
        self,
        path: str | Path,
        namespace: str | None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Read an export back (idempotent: same ids, same history)."""
        store = self.transfer("import")
        return import_jsonl(self.encoder, store, Path(path), namespace, progress)

    def reembed(
        self,
        embedder: str | Embedder,
        batch: int = 256,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Re-embed every chunk with another embedder (resumable), then switch to it.

        ``embedder`` is a settings name (``minilm``, ``hash``) or an embedder object; a
        name is resolved here, so loading its model happens where the call runs.

        Raises:
            ValidationError: an unknown embedder name.
            NotSupportedError: the store cannot re-embed.
        """
        target = resolve_embedder(embedder, self.settings)
        count = reembed_chunks(self.maintenance("reembed"), target, batch, progress)
        self.encoder.embedder = target
        return count


def _unsupported(store: Store, role: str, doing: str) -> NotSupportedError:
    return NotSupportedError(
        f"the {store.backend} store cannot {doing}: it does not implement {role}",
        backend=store.backend,
        capability=role,
    )


def _timed(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one health check and add how long it took, in milliseconds."""
    start = time.perf_counter()
    report = dict(check())
    report["latency_ms"] = round((time.perf_counter() - start) * 1000, 3)
    return report
