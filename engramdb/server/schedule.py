"""The service's scheduled consolidation: every ``consolidate_interval_s``, each namespace.

Off by default (``consolidate_interval_s = 0``): consolidation merges and archives records,
which an operator should choose to have happen unattended (``engramdb consolidate
--dry-run`` shows what it would do). When on, the loop runs in the app's lifespan beside
the requests, one namespace at a time through ``AsyncMemory`` (the blocking work runs in
its thread pool, never on the event loop). With several worker processes each runs its
own loop; passes may overlap safely, since every change is checked against the version
it was planned from (a record changed meanwhile is skipped, not clobbered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from engramdb._async_memory import AsyncMemory
from engramdb.errors import EngramError

log = logging.getLogger("engramdb.server.schedule")


async def consolidate_all(mem: AsyncMemory) -> dict[str, int]:
    """One pass over every namespace; return, per namespace, how many records it changed."""
    changed: dict[str, int] = {}
    for ns in sorted(await mem.namespaces()):
        try:
            r = await mem.with_namespace(ns).consolidate()
        except EngramError as exc:
            log.warning("scheduled consolidation of %r failed: %s", ns, exc.message)
            continue
        changed[ns] = (
            sum(len(m.merged_ids) for m in r.merges)
            + len(r.expired)
            + len(r.archived)
            + len(r.summaries)
        )
        log.info(
            "consolidated %r: %d merges, %d expired, %d archived, %d summaries in %.2fs",
            ns,
            len(r.merges),
            len(r.expired),
            len(r.archived),
            len(r.summaries),
            r.seconds,
        )
    return changed


async def consolidation_loop(mem: AsyncMemory, interval_s: float) -> None:
    """Sleep ``interval_s``, consolidate every namespace, repeat until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await consolidate_all(mem)
        except EngramError as exc:  # the store is down: try again next time
            log.warning("scheduled consolidation failed: %s", exc.message)


@asynccontextmanager
async def scheduled_consolidation(mem: AsyncMemory, interval_s: float) -> AsyncIterator[None]:
    """Run :func:`consolidation_loop` for the duration of the block (not at all when 0)."""
    if interval_s <= 0:
        yield
        return
    task = asyncio.create_task(consolidation_loop(mem, interval_s), name="consolidation")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
