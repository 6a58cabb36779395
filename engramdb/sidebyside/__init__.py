"""Running an old and a new store side by side: dual writes, shadow reads with automatic
rollback, and reconciliation. These wrap the facades (``Memory`` or anything with its
verbs), so they sit at the facade level: they import the facades and the leaves, never the
engine or a store."""

from engramdb.sidebyside.dual import DualWriteMemory
from engramdb.sidebyside.queue import RetryQueue
from engramdb.sidebyside.reconcile import reconcile, run_every
from engramdb.sidebyside.shadow import ShadowReadMemory

__all__ = ["DualWriteMemory", "RetryQueue", "ShadowReadMemory", "reconcile", "run_every"]
