"""Compatibility path for :mod:`engramdb.ops.migrate` (the README once named it).

Migration drives stores, not records, so it lives in :mod:`engramdb.ops`, beside the facade.
The import is deferred to the first attribute read so that the engine never loads an upper
layer unless an old caller asks for it by this name.
"""

from typing import Any

_NAMES = ("migrate_store", "source_record_count", "verify")


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        from engramdb.ops import migrate

        return getattr(migrate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
