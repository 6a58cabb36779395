"""Records that are questions: a flag beside their answer kinds, set here for those already
extracted.

Hybrid search ranks a record whose text is itself a question a little lower
(``question_penalty``, :mod:`engramdb.engine.answer_ranking`). Extraction now writes the
flag (``QUESTION`` in :mod:`engramdb.extract.answer_types`) into ``record_answer_kinds``
with the other kinds. Records extracted before this revision get it from their text here, in
one statement, instead of being queued for the whole NLP pass again: the rule is the text's
end, which SQL reads as well as Python (the same whitespace trimmed).
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0024"
down_revision = "0023"

# 16 is answer_types.QUESTION, kept literal: a revision must not change when the code does.
# Running it again changes nothing (rows that have the flag are left alone).
SQLITE = [
    """UPDATE record_answer_kinds SET kinds = kinds | 16
    WHERE (kinds & 16) = 0 AND EXISTS (
        SELECT 1 FROM records r
        WHERE r.namespace = record_answer_kinds.namespace
        AND r.id = record_answer_kinds.record_id
        AND rtrim(r.text, ' ' || char(9, 13, 10)) LIKE '%?')"""
]

POSTGRES = [
    """UPDATE record_answer_kinds k SET kinds = k.kinds | 16
    FROM records r
    WHERE (k.kinds & 16) = 0 AND r.namespace = k.namespace AND r.id = k.record_id
    AND rtrim(r.text, E' \\t\\r\\n') LIKE '%?'"""
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE, postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
