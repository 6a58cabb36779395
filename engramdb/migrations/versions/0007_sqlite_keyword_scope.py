"""SQLite's keyword index gains a ``scope`` column naming each chunk's user and thread.

A keyword search scoped to one user (or thread) used to rank every match of its words in
the file by BM25, join each to its record and only then drop the rest (~50 ms at 100k
records with ten common words, however few records the user has). With scope tokens in
the index, the search ANDs them into the MATCH and FTS5 intersects the word lists with
the scope's own short list: 2-8 ms on the same file. FTS5 tables cannot gain a column, so the
table is rebuilt from its stored text (~1 s per 100k chunks). PostgreSQL is unchanged:
its keyword search reads the (namespace, fts) GIN index and its chunks carry the user.
"""

import hashlib

from alembic import op

from engramdb.migrations.steps import forward_only

revision = "0007"
down_revision = "0006"


def _token(namespace: str, field: str, value: str) -> str:
    key = f"{field}\x1f{namespace}\x1f{value}".encode()
    return "q" + hashlib.blake2b(key, digest_size=8).hexdigest() + "q"


def _scope(namespace: str, user_id: str, thread_id: str) -> str:
    # Mirrors engramdb.stores.sqlite.keys.scope_text (kept literal: a migration must not
    # change when the code does).
    user = _token(namespace, "user_id", user_id)
    return f"{user} {_token(namespace, 'thread_id', thread_id)}" if thread_id else user


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    raw = bind.connection.driver_connection
    raw.create_function("engram_scope_0007", 3, _scope, deterministic=True)
    op.execute(
        """CREATE VIRTUAL TABLE chunks_fts_0007 USING fts5(
        body, scope, tokenize = 'porter unicode61 remove_diacritics 2')"""
    )
    # A keyword row without a chunk (which doctor reports) keeps an empty scope.
    op.execute(
        "INSERT INTO chunks_fts_0007(rowid, body, scope) "
        "SELECT f.rowid, f.body, "
        "coalesce(engram_scope_0007(r.namespace, r.user_id, r.thread_id), '') "
        "FROM chunks_fts f LEFT JOIN chunks c ON c.id = f.rowid "
        "LEFT JOIN records r ON r.rid = c.rid ORDER BY f.rowid"
    )
    op.execute("DROP TABLE chunks_fts")
    op.execute("ALTER TABLE chunks_fts_0007 RENAME TO chunks_fts")


def downgrade() -> None:
    forward_only()
