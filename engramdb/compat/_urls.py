"""Where the compat adapters find their store: the environment the teams already set."""

from __future__ import annotations

import os

from engramdb.errors import ValidationError

# In this order: engramdb's own variable, then the ones the teams' deployments set.
URL_VARIABLES = ("ENGRAM_URL", "POSTGRES_DSN", "DATABASE_URL")


def url_from_env(variables: tuple[str, ...] = URL_VARIABLES) -> str:
    """The first of ``variables`` that is set (SQLAlchemy spellings such as
    ``postgresql+asyncpg://`` are accepted by the store opener).

    Raises:
        ValidationError: none is set; the message names them.
    """
    for name in variables:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    raise ValidationError(
        f"no store configured: set one of {', '.join(variables)}", field=variables[0]
    )
