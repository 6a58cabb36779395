"""The filter language: parsed once into a tree, validated, compiled per dialect by each store.

A leaf layer: it imports nothing above :mod:`engramdb.errors` and :mod:`engramdb.timeutil`,
so the engine and every store can use it.
"""

from engramdb.query.filters import (
    Bool,
    Cmp,
    Live,
    Node,
    ValidAt,
    is_live_only,
    live_now,
    parse,
    required_equalities,
    required_leaves,
    required_tags,
    top_level_key,
)

__all__ = [
    "Bool",
    "Cmp",
    "Live",
    "Node",
    "ValidAt",
    "is_live_only",
    "live_now",
    "parse",
    "required_equalities",
    "required_leaves",
    "required_tags",
    "top_level_key",
]
