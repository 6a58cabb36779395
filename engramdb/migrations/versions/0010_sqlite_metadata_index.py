"""SQLite gains an index of top-level scalar metadata values (``record_meta``).

A filter such as ``{"metadata.session": "s12"}`` opened every record's metadata JSON: at
100k records, counting or searching a value few records have read the whole namespace
(~146 ms for a search, whatever the value). The table holds one row per (namespace, key,
value, record) for each top-level key whose value is a number or a string of at most 200
characters (longer texts are not worth a copy in an index; stored as SQLite text, integer
or real, so ``"1"`` and ``1`` stay distinct while ``1`` and ``1.0``
meet, as in the filter language). Booleans, nulls, lists and nested objects are not
indexed; filters on them, and on dotted paths, test the JSON as before. As with
``record_tags`` (0008): the store writes the rows of records it inserts, triggers follow
updates and deletes, and records without metadata (``'{}'``) are skipped.

PostgreSQL is unchanged here: its metadata equality is a JSONB containment test that its
GIN index answers.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0010"
down_revision = "0009"

# Kept literal (a migration must not change when the code does); the store mirrors the
# row selection (``_META_INDEXED``) to write and check the table.
SQLITE = [
    """CREATE TABLE record_meta (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value NOT NULL,
        rid INTEGER NOT NULL,
        PRIMARY KEY (namespace, key, value, rid)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER records_meta_delete AFTER DELETE ON records WHEN OLD.metadata <> '{}'
    BEGIN
        DELETE FROM record_meta WHERE namespace = OLD.namespace AND rid = OLD.rid
            AND (key, value) IN (
                SELECT key, value FROM json_each(OLD.metadata)
                WHERE type IN ('integer', 'real') OR (type = 'text' AND length(value) <= 200));
    END""",
    """CREATE TRIGGER records_meta_update AFTER UPDATE OF metadata, namespace ON records
    WHEN OLD.metadata IS NOT NEW.metadata OR OLD.namespace IS NOT NEW.namespace
    BEGIN
        DELETE FROM record_meta WHERE namespace = OLD.namespace AND rid = OLD.rid
            AND (key, value) IN (
                SELECT key, value FROM json_each(OLD.metadata)
                WHERE type IN ('integer', 'real') OR (type = 'text' AND length(value) <= 200));
        INSERT OR IGNORE INTO record_meta(namespace, key, value, rid)
        SELECT NEW.namespace, key, value, NEW.rid FROM json_each(NEW.metadata)
        WHERE type IN ('integer', 'real') OR (type = 'text' AND length(value) <= 200);
    END""",
    """INSERT OR IGNORE INTO record_meta(namespace, key, value, rid)
    SELECT r.namespace, j.key, j.value, r.rid FROM records r, json_each(r.metadata) j
    WHERE r.metadata <> '{}'
      AND (j.type IN ('integer', 'real') OR (j.type = 'text' AND length(j.value) <= 200))""",
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE)


def downgrade() -> None:
    forward_only()
