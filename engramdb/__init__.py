"""engramdb: long-term memory for AI agents (semantic, episodic and working memory)."""

from engramdb._async_memory import AsyncMemory
from engramdb.config import Settings
from engramdb.embedders import Embedder, HashEmbedder, MiniLMEmbedder
from engramdb.errors import (
    AuthenticationError,
    BusyError,
    CommitUnknownError,
    ConflictError,
    EmbedderMismatchError,
    EmbeddingError,
    EngramError,
    LimitExceededError,
    NotFoundError,
    NotSupportedError,
    PermissionDeniedError,
    QuotaExceededError,
    SchemaError,
    SchemaTooNewError,
    StoreError,
    StoreUnavailableError,
    ValidationError,
    WrongContextError,
)
from engramdb.memory import Memory
from engramdb.models import (
    AddResult,
    Event,
    HistoryEntry,
    MemoryRecord,
    RecordPage,
    ScoreParts,
    SearchHit,
    SearchPage,
    Slots,
    Snapshot,
)

__version__ = "0.1.0"

__all__ = [
    "AddResult",
    "AsyncMemory",
    "AuthenticationError",
    "BusyError",
    "CommitUnknownError",
    "ConflictError",
    "QuotaExceededError",
    "Embedder",
    "EmbedderMismatchError",
    "EmbeddingError",
    "EngramError",
    "Event",
    "HashEmbedder",
    "HistoryEntry",
    "LimitExceededError",
    "Memory",
    "MemoryRecord",
    "MiniLMEmbedder",
    "NotFoundError",
    "NotSupportedError",
    "PermissionDeniedError",
    "RecordPage",
    "SchemaError",
    "SchemaTooNewError",
    "ScoreParts",
    "SearchHit",
    "SearchPage",
    "Settings",
    "Slots",
    "Snapshot",
    "StoreError",
    "StoreUnavailableError",
    "ValidationError",
    "WrongContextError",
    "__version__",
]
