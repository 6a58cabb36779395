"""Schema migrations (Alembic), shared by every SQL store.

``SCHEMA_REVISIONS`` lists every revision in order; a test checks it against Alembic's own
script directory, so opening a store can compare versions without importing Alembic.
"""

from __future__ import annotations

from pathlib import Path

SCHEMA_REVISIONS = [
    "0001",
    "0002",
    "0003",
    "0004",
    "0005",
    "0006",
    "0007",
    "0008",
    "0009",
    "0010",
    "0011",
    "0012",
    "0013",
    "0014",
    "0015",
    "0016",
    "0017",
    "0021",
    "0022",
    "0023",
    "0024",
    "0025",
    "0026",
]
SCHEMA_HEAD = SCHEMA_REVISIONS[-1]

#: The Alembic script folder (this package), for both stores' schema modules.
SCRIPT_LOCATION = str(Path(__file__).resolve().parent)
