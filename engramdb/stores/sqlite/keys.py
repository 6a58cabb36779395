"""The keys SQLite derives from a record: its dedup digest and its keyword scope tokens.

Both are registered as SQL functions (``engram_dedup``, ``engram_scope``) on every
connection, so that ``doctor`` can check and recompute them in SQL; migrations 0006 and 0007
keep their own literal copies (a migration must not change when this module does).
"""

from __future__ import annotations

import hashlib

from engramdb.stores.prepared import PreparedRecord

# The scope fields a keyword search turns into tokens, and that let a filtered read start
# from the scope's own index instead of a tag or metadata value's.
SCOPE_FIELDS = frozenset({"user_id", "thread_id"})


def dedup_digest(user_id: str, agent_id: str, thread_id: str, type_: str, chash: str) -> bytes:
    """The 16-byte key of the dedup index: what makes two records "the same" (scope, type,
    normalised text), hashed.

    The unique index ``records_dedup`` is on ``(namespace, dedup)`` instead of the six
    columns (migration 0006): its entries shrink from ~110 to ~35 bytes, and an index in
    random order dirties one page per insert until every page is dirty, so a batch of 1,000
    into a 100k-record file wrote 805 of its pages to the WAL before, ~400 after. The fields
    are joined with U+001F, which none of them can contain (scopes and types refuse control
    characters; the content hash is hex). Registered as the SQL function ``engram_dedup``
    on every connection, for ``doctor`` and migration 0006 (which keeps its own copy).
    """
    key = "\x1f".join((user_id, agent_id, thread_id, type_, chash)).encode("utf-8")
    return hashlib.blake2b(key, digest_size=16).digest()


def dedup_of(it: PreparedRecord) -> bytes:
    """The dedup key of a prepared record."""
    return dedup_digest(it.user_id, it.agent_id, it.thread_id, it.type, it.content_hash)


def scope_token(namespace: str, field: str, value: str) -> str:
    """The keyword-index token naming one scope of a chunk: ``q`` + 16 hex digits + ``q``.

    ``field`` is ``user_id`` or ``thread_id``. The tokens sit in the ``scope`` column of
    ``chunks_fts`` (migration 0007), and a keyword search whose filter requires a user or a
    thread ANDs the token into its MATCH, so FTS5 intersects the query's words with that
    scope's short list instead of ranking every match in the file and dropping the rest
    afterwards (docs/tuning.md). The ``q``
    ends keep the Porter stemmer off it; a collision (2^-64) would only
    add candidates, which the search's filter still removes.
    """
    key = f"{field}\x1f{namespace}\x1f{value}".encode()
    return "q" + hashlib.blake2b(key, digest_size=8).hexdigest() + "q"


def scope_text(namespace: str, user_id: str, thread_id: str) -> str:
    """The ``scope`` column of a chunk: its user's token, and its thread's when it has one.

    Registered as the SQL function ``engram_scope`` on every connection, for ``doctor``
    (migration 0007 keeps its own copy).
    """
    user = scope_token(namespace, "user_id", user_id)
    return f"{user} {scope_token(namespace, 'thread_id', thread_id)}" if thread_id else user
