"""SQLite keeps chunk vectors in a table of their own, ``chunk_vectors``.

Searches read vectors from the vector index's sidecar, never from SQL, but they locate
their candidates by chunk id: with the vector inline a chunk row took about 1.6 kB, so each
candidate cost a page read, and at 100k records the ``chunks`` table (164 MB) could not stay
in the page cache. Without it the table is a few MB. ``chunk_vectors`` rows are deleted with
their chunk by the foreign key's cascade. The copy and the column drop rewrite the table once;
the file shrinks only after ``VACUUM``. PostgreSQL: nothing to do (its exact scans read the
vectors from the chunk rows, see 0003).
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0021"
down_revision = "0017"

SQLITE = [
    """CREATE TABLE chunk_vectors (
        chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
        vector BLOB NOT NULL
    )""",
    "INSERT INTO chunk_vectors(chunk_id, vector) SELECT id, vector FROM chunks ORDER BY id",
    "ALTER TABLE chunks DROP COLUMN vector",
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE)


def downgrade() -> None:
    forward_only()
