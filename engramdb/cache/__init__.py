"""The optional Redis cache tier (``cache_url``): read-through, invalidated by the store.

See :mod:`engramdb.cache.tier` for the design (per-namespace write generation owned by the
store) and :mod:`engramdb.cache.client` for how Redis failures stay invisible to callers.
"""

from engramdb.cache.tier import Cache, NullCache, RedisCache, open_cache

__all__ = ["Cache", "NullCache", "RedisCache", "open_cache"]
