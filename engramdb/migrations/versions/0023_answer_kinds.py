"""The kinds of answer each record's text holds: derived data written by extraction.

``record_answer_kinds`` keeps, per extracted record, the flags of
:mod:`engramdb.extract.answer_types` (a person, a place, a time, a number), which hybrid
search reads for the candidates a question's kind could lift into the page. Like every
table of 0014 it is rebuildable from the records: the extraction worker writes a record's
row with its mentions (a row of 0 when its text holds none of the kinds), and deleting a
record deletes its row in the same transaction, by trigger, whatever deleted it.

Records extracted before this revision have no row: they are queued again here, so an
upgraded store learns their kinds off the write path, as it learned their entities.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0023"
down_revision = "0022"

# Every statement may run again: created if missing; only records neither queued nor
# extracted since this revision are queued.
BACKFILL = """INSERT INTO entity_queue(rid) SELECT r.rid FROM records r
    WHERE NOT EXISTS (SELECT 1 FROM entity_queue q WHERE q.rid = r.rid)
    AND NOT EXISTS (SELECT 1 FROM record_answer_kinds k
        WHERE k.namespace = r.namespace AND k.record_id = r.id)"""

SQLITE = [
    """CREATE TABLE IF NOT EXISTS record_answer_kinds (
        namespace TEXT NOT NULL,
        record_id TEXT NOT NULL,
        kinds INTEGER NOT NULL,
        PRIMARY KEY (namespace, record_id)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS records_answer_kinds_delete AFTER DELETE ON records
    BEGIN
        DELETE FROM record_answer_kinds WHERE namespace = OLD.namespace AND record_id = OLD.id;
    END""",
    BACKFILL,
]

POSTGRES = [
    """CREATE TABLE IF NOT EXISTS record_answer_kinds (
        namespace TEXT COLLATE "C" NOT NULL,
        record_id TEXT COLLATE "C" NOT NULL,
        kinds INTEGER NOT NULL,
        PRIMARY KEY (namespace, record_id)
    )""",
    """CREATE OR REPLACE FUNCTION answer_kinds_records_deleted() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM record_answer_kinds k USING deleted_records d
        WHERE k.namespace = d.namespace AND k.record_id = d.id;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE TRIGGER records_answer_kinds_delete AFTER DELETE ON records
    REFERENCING OLD TABLE AS deleted_records
    FOR EACH STATEMENT EXECUTE FUNCTION answer_kinds_records_deleted()""",
    BACKFILL,
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE, postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
