"""SQLite rewrites ``chunks`` into pages of its own size.

0021 dropped the inline vector column with ``ALTER TABLE ... DROP COLUMN``, which shortens
each row where it stands: an upgraded file kept every page the table had (about two rows per
4 kB page, 164 MB at 100k records for 1 MB of rows), so a search locating its candidates by
chunk id still read a page per candidate, which 0021 meant to end. Here the table is copied
into a new one in id order (about 130 rows a page), the old one dropped (its pages join the
free list for later writes; ``forget --compact`` returns them to the disk) and the copy renamed.

What must not change: chunk ids and their ``sqlite_sequence`` high-water mark (ids are never
reused: the derived indexes catch up by it), the foreign keys both ways (``chunk_vectors``
rows are still deleted with their chunk, chunks with their record) and the ``chunks_rid``
index. Alembic's connection does not enforce foreign keys, so dropping the old table deletes
no vector. PostgreSQL: nothing to do.
"""

from alembic import op
from sqlalchemy import text

from engramdb.migrations.steps import forward_only

revision = "0022"
down_revision = "0021"

SQLITE = [
    """CREATE TABLE chunks_repacked (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rid INTEGER NOT NULL REFERENCES records(rid) ON DELETE CASCADE,
        ord INTEGER NOT NULL,
        start INTEGER NOT NULL,
        end INTEGER NOT NULL)""",
    "INSERT INTO chunks_repacked(id, rid, ord, start, end) "
    "SELECT id, rid, ord, start, end FROM chunks ORDER BY id",
    "DROP TABLE chunks",
    "ALTER TABLE chunks_repacked RENAME TO chunks",
    "CREATE INDEX chunks_rid ON chunks(rid)",
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    if bind.execute(text("PRAGMA foreign_keys")).scalar():
        raise RuntimeError("0022 must run with foreign keys off (dropping chunks would cascade)")
    seq = bind.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'")).scalar()
    for statement in SQLITE:
        op.execute(statement)
    if seq is not None:
        # The copy's counter is its highest id; the table's is at least that (deleted chunks).
        op.execute(text("DELETE FROM sqlite_sequence WHERE name = 'chunks'"))
        op.execute(
            text("INSERT INTO sqlite_sequence(name, seq) VALUES ('chunks', :seq)").bindparams(
                seq=int(seq)
            )
        )


def downgrade() -> None:
    forward_only()
