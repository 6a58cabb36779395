"""What most revisions do: run a list of statements for the dialect at hand.

Revisions keep their DDL literal (a migration must not change when the code does); only
this dispatch and the forward-only refusal are shared.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op


def run_statements(sqlite: Sequence[str] = (), postgres: Sequence[str] = ()) -> None:
    """Execute ``postgres`` on PostgreSQL, ``sqlite`` on SQLite, in order."""
    statements = postgres if op.get_bind().dialect.name == "postgresql" else sqlite
    for statement in statements:
        op.execute(statement)


def forward_only() -> None:
    """The ``downgrade`` of every revision: engramdb schemas only move forward."""
    raise NotImplementedError("engramdb schemas are upgraded forward only; restore a backup")
