"""Compatibility path for :mod:`engramdb.stores.postgres.replica` (the README once named it)."""

from engramdb.stores.postgres.replica import ReplicaRouter, parse_lsn, read_at_least

__all__ = ["ReplicaRouter", "parse_lsn", "read_at_least"]
