"""Rewrite the README's settings table from ``engramdb.Settings`` (run after adding a setting).

Why: tests/test_docs.py fails when the table and the code disagree; this makes the fix one
command instead of hand-editing a table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from engramdb import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def table() -> str:
    """Return the markdown table of every setting, its variable, default and description."""
    lines = ["| Setting | Variable | Default | Meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        lines.append(
            f"| `{name}` | `ENGRAM_{name.upper()}` | `{field.default}` | {field.description} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Replace the table between the README markers; return the exit status."""
    text = README.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{table()}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
