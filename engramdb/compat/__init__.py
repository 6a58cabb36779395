"""The seeds' own APIs over engramdb: teams switch by changing an import line.

* MemoryManager v2 style: :func:`create_production_memory_manager`,
  :func:`create_dev_memory_manager`, the manager's ``a…`` verbs, and the models
  :class:`MemoryRecord` and :class:`AuditEvent` (their own, not ``engramdb.MemoryRecord``);
* ChromaService style: :class:`MemoryService`;
* backend factory style: :class:`MemoryManager` with ``_sync`` twins.

Example (the only line a team changes)::

    from engramdb.compat import AuditEvent, MemoryRecord, create_production_memory_manager
"""

from engramdb.compat.backend_factory import MemoryManager
from engramdb.compat.chroma_service import MemoryService
from engramdb.compat.manager_v2 import (
    MemoryManagerV2,
    create_dev_memory_manager,
    create_production_memory_manager,
)
from engramdb.compat.models import (
    AuditEvent,
    MemoryRecord,
    RetrievedMemory,
    ThreadSnapshot,
    WriteResult,
)

__all__ = [
    "AuditEvent",
    "MemoryManager",
    "MemoryManagerV2",
    "MemoryRecord",
    "MemoryService",
    "RetrievedMemory",
    "ThreadSnapshot",
    "WriteResult",
    "create_dev_memory_manager",
    "create_production_memory_manager",
]
