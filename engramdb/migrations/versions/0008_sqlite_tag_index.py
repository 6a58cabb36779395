"""SQLite gains an index of record tags (``record_tags``), kept by triggers.

A filter on tags used to open every record's JSON ``tags`` array with ``json_each``: at 100k
records, listing or counting one tag read the whole namespace (36-58 ms) and a search
filtered to a tag nobody has took ~160 ms, however few records carried it. The table
holds one row per (namespace, tag, record). The store writes the rows of records it inserts;
triggers on ``records`` follow every update and delete of tags (update, delete, forget,
expiry), and skip records without tags (``'[]'``). No INSERT trigger: a table with one makes
SQLite keep a statement journal for each row inserted (~30% of batch ingest). A migration
that rebuilds ``records`` must recreate these triggers.

PostgreSQL is unchanged here: its tag filter (``tags @> ...``) is a JSONB containment test.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0008"
down_revision = "0007"

# Kept literal (a migration must not change when the code does); the store's doctor
# mirrors the backfill to rebuild the table.
SQLITE = [
    """CREATE TABLE record_tags (
        namespace TEXT NOT NULL,
        tag TEXT NOT NULL,
        rid INTEGER NOT NULL,
        PRIMARY KEY (namespace, tag, rid)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER records_tags_delete AFTER DELETE ON records WHEN OLD.tags <> '[]'
    BEGIN
        DELETE FROM record_tags WHERE namespace = OLD.namespace AND rid = OLD.rid
            AND tag IN (SELECT value FROM json_each(OLD.tags));
    END""",
    """CREATE TRIGGER records_tags_update AFTER UPDATE OF tags, namespace ON records
    WHEN OLD.tags IS NOT NEW.tags OR OLD.namespace IS NOT NEW.namespace
    BEGIN
        DELETE FROM record_tags WHERE namespace = OLD.namespace AND rid = OLD.rid
            AND tag IN (SELECT value FROM json_each(OLD.tags));
        INSERT INTO record_tags(namespace, tag, rid)
        SELECT DISTINCT NEW.namespace, value, NEW.rid FROM json_each(NEW.tags);
    END""",
    """INSERT INTO record_tags(namespace, tag, rid)
    SELECT DISTINCT r.namespace, j.value, r.rid FROM records r, json_each(r.tags) j
    WHERE r.tags <> '[]'""",
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE)


def downgrade() -> None:
    forward_only()
