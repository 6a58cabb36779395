"""SQLite keeps chunk vectors in a table of their own, ``chunk_vectors``.

Searches read vectors from the vector index's sidecar, never from SQL, but they locate
their candidates by chunk id: with the vector inline a chunk row took about 1.6 kB, so each
candidate cost a page read, and at 100k records the ``chunks`` table (164 MB) could not stay
in the page cache. Without it the table is a few MB. ``chunk_vectors`` rows are deleted with
their chunk by the foreign key's cascade. The copy and the column drop rewrite the table once;
the file shrinks only after ``VACUUM``. PostgreSQL: nothing to do (its exact scans read the
vectors from the chunk rows, see 0003).
"""

from alembic import op
from sqlalchemy import text

from engramdb.migrations.steps import forward_only

revision = "0021"
down_revision = "0017"

SQLITE = [
    """CREATE TABLE IF NOT EXISTS chunk_vectors (
        chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
        vector BLOB NOT NULL
    )""",
    "INSERT INTO chunk_vectors(chunk_id, vector) SELECT id, vector FROM chunks ORDER BY id",
    "ALTER TABLE chunks DROP COLUMN vector",
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    columns = {row[1] for row in bind.execute(text("PRAGMA table_info(chunks)"))}
    if "vector" not in columns:  # already moved (a file relabelled to an older revision)
        op.execute(SQLITE[0])
        return
    for statement in SQLITE:
        op.execute(statement)


def downgrade() -> None:
    forward_only()
