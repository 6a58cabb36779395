"""Stores: the system of record, one package per backend behind the protocols of ``base``.

:func:`open_store` and :func:`parse_store_url` are the only way from a URL to a store.
Nothing here imports the engine, the facades or a surface (a test checks it).
"""

from engramdb.stores.base import BulkLoader, Checkpoints, Maintenance, Store, Transfer
from engramdb.stores.opener import StoreURL, open_store, parse_store_url

__all__ = [
    "BulkLoader",
    "Checkpoints",
    "Maintenance",
    "Store",
    "StoreURL",
    "Transfer",
    "open_store",
    "parse_store_url",
]
