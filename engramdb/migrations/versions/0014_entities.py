"""Entities, relations and mentions: derived data extracted from record texts.

Every table here is rebuildable from the records (invariant 1): ``entity_queue`` lists the
records whose text has not been extracted yet (a record is queued in the transaction that
writes it), the extraction worker drains it, and a read of entities first drains what is
pending in its scope. Cleanup follows the records in the database itself, so every way a
record goes (delete, delete_all, forget, expiry, restore) takes its derived rows along:

* deleting a record deletes its queue row, its mentions and relation evidence, and every
  entity or relation left without evidence (foreign keys cascade to the relations and
  alias log of a deleted entity; an alias of a deleted canonical entity becomes canonical);
* changing a record's text queues it again (the worker replaces its derived rows).

SQLite queues inserts from the store's insert paths, not from a trigger: an INSERT trigger on
``records`` makes SQLite keep a statement journal per inserted row (see 0008). PostgreSQL
queues them with a statement-level trigger over the transition table (COPY included).
Existing records are queued by this revision, so an upgraded store extracts its history.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0014"
down_revision = "0013"

# Every statement may run again (a store re-stamped to an older revision is upgraded again):
# tables, indexes, functions and triggers are created if missing, and only records neither
# queued nor mentioned yet are queued.
BACKFILL = """INSERT INTO entity_queue(rid) SELECT r.rid FROM records r
    WHERE NOT EXISTS (SELECT 1 FROM entity_queue q WHERE q.rid = r.rid)
    AND NOT EXISTS (SELECT 1 FROM entity_mentions m
                    WHERE m.namespace = r.namespace AND m.record_id = r.id)
    ORDER BY r.rid"""

SQLITE = [
    """CREATE TABLE IF NOT EXISTS entity_queue (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        rid INTEGER NOT NULL,
        failed INTEGER NOT NULL DEFAULT 0,
        error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS entity_queue_rid ON entity_queue(rid)",
    """CREATE TABLE IF NOT EXISTS entities (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL,
        norm TEXT NOT NULL,
        type TEXT NOT NULL,
        canonical_id INTEGER REFERENCES entities(id) ON DELETE SET NULL,
        pinned INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS entities_scope_norm
        ON entities(namespace, user_id, norm, type)""",
    "CREATE INDEX IF NOT EXISTS entities_canonical ON entities(canonical_id)",
    """CREATE TABLE IF NOT EXISTS entity_mentions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        entity_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
        namespace TEXT NOT NULL,
        record_id TEXT NOT NULL,
        text TEXT NOT NULL,
        start INTEGER NOT NULL,
        end_pos INTEGER NOT NULL,
        sentence TEXT NOT NULL,
        confidence REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS entity_mentions_record ON entity_mentions(namespace, record_id)",
    "CREATE INDEX IF NOT EXISTS entity_mentions_entity ON entity_mentions(entity_id)",
    """CREATE TABLE IF NOT EXISTS relations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        source_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
        target_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
        type TEXT NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS relations_edge ON relations(source_id, target_id, type)",
    "CREATE INDEX IF NOT EXISTS relations_target ON relations(target_id)",
    """CREATE TABLE IF NOT EXISTS relation_evidence (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        relation_id INTEGER NOT NULL REFERENCES relations(id) ON DELETE CASCADE,
        namespace TEXT NOT NULL,
        record_id TEXT NOT NULL,
        sentence TEXT NOT NULL,
        confidence REAL NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS relation_evidence_record
        ON relation_evidence(namespace, record_id)""",
    "CREATE INDEX IF NOT EXISTS relation_evidence_relation ON relation_evidence(relation_id)",
    """CREATE TABLE IF NOT EXISTS entity_links (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        entity_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
        namespace TEXT NOT NULL,
        op TEXT NOT NULL,
        target_id INTEGER,
        target_name TEXT,
        reason TEXT NOT NULL DEFAULT '',
        at INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS entity_links_entity ON entity_links(entity_id)",
    """CREATE TRIGGER IF NOT EXISTS records_entities_update AFTER UPDATE OF text ON records
    WHEN OLD.text IS NOT NEW.text
    BEGIN
        INSERT INTO entity_queue(rid) VALUES (NEW.rid);
    END""",
    """CREATE TRIGGER IF NOT EXISTS records_entities_delete AFTER DELETE ON records
    BEGIN
        DELETE FROM entity_queue WHERE rid = OLD.rid;
        DELETE FROM entities WHERE id IN (
                SELECT entity_id FROM entity_mentions
                WHERE namespace = OLD.namespace AND record_id = OLD.id)
            AND NOT EXISTS (
                SELECT 1 FROM entity_mentions m
                WHERE m.entity_id = entities.id AND m.record_id <> OLD.id);
        DELETE FROM relations WHERE id IN (
                SELECT relation_id FROM relation_evidence
                WHERE namespace = OLD.namespace AND record_id = OLD.id)
            AND NOT EXISTS (
                SELECT 1 FROM relation_evidence v
                WHERE v.relation_id = relations.id AND v.record_id <> OLD.id);
        DELETE FROM relation_evidence WHERE namespace = OLD.namespace AND record_id = OLD.id;
        DELETE FROM entity_mentions WHERE namespace = OLD.namespace AND record_id = OLD.id;
    END""",
    BACKFILL,
]

POSTGRES = [
    """CREATE TABLE IF NOT EXISTS entity_queue (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        rid BIGINT NOT NULL,
        failed BOOLEAN NOT NULL DEFAULT false,
        error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS entity_queue_rid ON entity_queue(rid)",
    """CREATE TABLE IF NOT EXISTS entities (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        namespace TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        name TEXT NOT NULL,
        norm TEXT COLLATE "C" NOT NULL,
        type TEXT COLLATE "C" NOT NULL,
        canonical_id BIGINT REFERENCES entities(id) ON DELETE SET NULL,
        pinned BOOLEAN NOT NULL DEFAULT false,
        created_at BIGINT NOT NULL
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS entities_scope_norm
        ON entities(namespace, user_id, norm, type)""",
    "CREATE INDEX IF NOT EXISTS entities_canonical ON entities(canonical_id)",
    """CREATE TABLE IF NOT EXISTS entity_mentions (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        entity_id BIGINT NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
        namespace TEXT COLLATE "C" NOT NULL,
        record_id TEXT COLLATE "C" NOT NULL,
        text TEXT NOT NULL,
        start INTEGER NOT NULL,
        end_pos INTEGER NOT NULL,
        sentence TEXT NOT NULL,
        confidence DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS entity_mentions_record ON entity_mentions(namespace, record_id)",
    "CREATE INDEX IF NOT EXISTS entity_mentions_entity ON entity_mentions(entity_id)",
    """CREATE TABLE IF NOT EXISTS relations (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        namespace TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        source_id BIGINT NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
        target_id BIGINT NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
        type TEXT COLLATE "C" NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS relations_edge ON relations(source_id, target_id, type)",
    "CREATE INDEX IF NOT EXISTS relations_target ON relations(target_id)",
    """CREATE TABLE IF NOT EXISTS relation_evidence (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        relation_id BIGINT NOT NULL REFERENCES relations(id) ON DELETE CASCADE,
        namespace TEXT COLLATE "C" NOT NULL,
        record_id TEXT COLLATE "C" NOT NULL,
        sentence TEXT NOT NULL,
        confidence DOUBLE PRECISION NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS relation_evidence_record
        ON relation_evidence(namespace, record_id)""",
    "CREATE INDEX IF NOT EXISTS relation_evidence_relation ON relation_evidence(relation_id)",
    """CREATE TABLE IF NOT EXISTS entity_links (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        entity_id BIGINT NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
        namespace TEXT COLLATE "C" NOT NULL,
        op TEXT NOT NULL,
        target_id BIGINT,
        target_name TEXT,
        reason TEXT NOT NULL DEFAULT '',
        at BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS entity_links_entity ON entity_links(entity_id)",
    """CREATE OR REPLACE FUNCTION entity_queue_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO entity_queue(rid) SELECT rid FROM inserted_records ORDER BY rid;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE TRIGGER records_entities_insert AFTER INSERT ON records
    REFERENCING NEW TABLE AS inserted_records
    FOR EACH STATEMENT EXECUTE FUNCTION entity_queue_inserted()""",
    """CREATE OR REPLACE FUNCTION entity_queue_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO entity_queue(rid)
        SELECT n.rid FROM updated_new n JOIN updated_old o ON o.rid = n.rid
        WHERE o.text IS DISTINCT FROM n.text ORDER BY n.rid;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE TRIGGER records_entities_update AFTER UPDATE ON records
    REFERENCING OLD TABLE AS updated_old NEW TABLE AS updated_new
    FOR EACH STATEMENT EXECUTE FUNCTION entity_queue_updated()""",
    """CREATE OR REPLACE FUNCTION entity_records_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        ents BIGINT[];
        rels BIGINT[];
    BEGIN
        DELETE FROM entity_queue q USING deleted_records d WHERE q.rid = d.rid;
        WITH gone AS (
            DELETE FROM entity_mentions m USING deleted_records d
            WHERE m.namespace = d.namespace AND m.record_id = d.id
            RETURNING m.entity_id)
        SELECT array_agg(DISTINCT entity_id) INTO ents FROM gone;
        WITH gone AS (
            DELETE FROM relation_evidence v USING deleted_records d
            WHERE v.namespace = d.namespace AND v.record_id = d.id
            RETURNING v.relation_id)
        SELECT array_agg(DISTINCT relation_id) INTO rels FROM gone;
        IF rels IS NOT NULL THEN
            DELETE FROM relations r WHERE r.id = ANY(rels)
                AND NOT EXISTS (SELECT 1 FROM relation_evidence v WHERE v.relation_id = r.id);
        END IF;
        IF ents IS NOT NULL THEN
            DELETE FROM entities e WHERE e.id = ANY(ents)
                AND NOT EXISTS (SELECT 1 FROM entity_mentions m WHERE m.entity_id = e.id);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE TRIGGER records_entities_delete AFTER DELETE ON records
    REFERENCING OLD TABLE AS deleted_records
    FOR EACH STATEMENT EXECUTE FUNCTION entity_records_deleted()""",
    BACKFILL,
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE, postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
