"""Thread checkpoint rows as export lines and back, and the SQL both stores share.

An export carries the three tables of migration 0013 row by row, as lines of kind
``checkpoint`` with a ``table`` (``checkpoint``, ``blob`` or ``write``) and the row's
columns: bytes as base64 text, metadata and channel versions as JSON values. An import
inserts them with ``ON CONFLICT DO NOTHING`` (the tables' unique keys), so it is idempotent
and never replaces a row the target already holds. The rows are the framework's own bytes:
nothing here decodes them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

# line ``table`` -> (SQL table, columns in order)
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "blob": (
        "thread_checkpoint_blobs",
        ("namespace", "thread_id", "checkpoint_ns", "channel", "version", "type", "blob"),
    ),
    "checkpoint": (
        "thread_checkpoints",
        (
            "namespace",
            "thread_id",
            "checkpoint_ns",
            "checkpoint_id",
            "parent_id",
            "type",
            "checkpoint",
            "metadata",
            "versions",
            "run_id",
            "created_at",
        ),
    ),
    "write": (
        "thread_checkpoint_writes",
        (
            "namespace",
            "thread_id",
            "checkpoint_ns",
            "checkpoint_id",
            "task_id",
            "idx",
            "task_path",
            "channel",
            "type",
            "blob",
        ),
    ),
}
BYTES = frozenset({"checkpoint", "blob"})
JSON = frozenset({"metadata", "versions"})
INTS = frozenset({"idx", "created_at"})
NULLABLE = frozenset({"parent_id", "run_id", "blob"})

Fetch = Callable[[str, list[Any]], list[tuple[Any, ...]]]
ExecMany = Callable[[str, list[tuple[Any, ...]]], Any]


def exported_checkpoints(fetch: Fetch, ph: str, namespace: str | None) -> Iterator[dict[str, Any]]:
    """Yield the export lines of every checkpoint row (of one namespace, or all).

    ``fetch(sql, args)`` runs a statement on the caller's snapshot; ``ph`` is the dialect's
    placeholder (``?`` or ``%s``).
    """
    where, args = (f"WHERE namespace = {ph}", [namespace]) if namespace is not None else ("", [])
    for table, (sql_table, cols) in TABLES.items():
        order = ", ".join(cols[:5])
        for row in fetch(
            f"SELECT {', '.join(cols)} FROM {sql_table} {where} ORDER BY {order}", args
        ):
            line: dict[str, Any] = {"kind": "checkpoint", "table": table}
            for col, value in zip(cols, row, strict=True):
                if col in BYTES and value is not None:
                    value = base64.b64encode(bytes(value)).decode("ascii")
                elif col in JSON and isinstance(value, str):
                    value = json.loads(value)
                line[col] = value
            yield line


def import_checkpoints(
    lines: list[dict[str, Any]], executemany: ExecMany, ph: str, json_cast: str = ""
) -> int:
    """Insert checked checkpoint lines (see :func:`row_values`); return how many were new
    rows offered (duplicates are skipped by the tables' unique keys).

    ``json_cast`` follows a JSON column's placeholder (``::jsonb`` on PostgreSQL).
    """
    offered = 0
    for table, (sql_table, cols) in TABLES.items():
        rows = [row_values(line) for line in lines if line["table"] == table]
        if not rows:
            continue
        marks = ", ".join(ph + (json_cast if c in JSON else "") for c in cols)
        executemany(
            f"INSERT INTO {sql_table} ({', '.join(cols)}) VALUES ({marks}) ON CONFLICT DO NOTHING",
            rows,
        )
        offered += len(rows)
    return offered


def row_values(line: dict[str, Any]) -> tuple[Any, ...]:
    """The column values of a checked line, in :data:`TABLES` order."""
    out: list[Any] = []
    for col in TABLES[line["table"]][1]:
        value = line[col]
        if col in BYTES and value is not None:
            value = base64.b64decode(value)
        elif col in JSON:
            value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        out.append(value)
    return tuple(out)


def check_line(line: dict[str, Any], namespace: str) -> dict[str, Any]:
    """A checkpoint export line with its types checked and ``namespace`` set; raises
    ``ValueError`` naming the first bad column."""
    table = line.get("table")
    if table not in TABLES:
        raise ValueError(f"table {table!r} is not one of {', '.join(TABLES)}")
    out: dict[str, Any] = {"kind": "checkpoint", "table": table}
    for col in TABLES[table][1]:
        value = namespace if col == "namespace" else line.get(col)
        if value is None and col in NULLABLE:
            pass
        elif col in INTS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{col} must be an integer")
        elif col in JSON:
            if not isinstance(value, dict):
                raise ValueError(f"{col} must be an object")
        elif not isinstance(value, str) or "\x00" in value:
            raise ValueError(f"{col} must be a string without NUL")
        elif col in BYTES:
            try:
                base64.b64decode(value, validate=True)
            except ValueError as exc:
                raise ValueError(f"{col} must be base64") from exc
        out[col] = value
    return out


def list_filters(
    alias: str,
    ph: str,
    namespace: str,
    thread_id: str | None,
    checkpoint_ns: str | None,
    checkpoint_id: str | None,
    before: str | None,
) -> tuple[list[str], list[Any]]:
    """The WHERE clauses and arguments of a checkpoint listing's plain filters (``alias``
    prefixes the columns, ``ph`` is the driver's placeholder); metadata is dialect SQL."""
    where = [f"{alias}namespace = {ph}"]
    args: list[Any] = [namespace]
    for column, value in (
        ("thread_id", thread_id),
        ("checkpoint_ns", checkpoint_ns),
        ("checkpoint_id", checkpoint_id),
    ):
        if value is not None:
            where.append(f"{alias}{column} = {ph}")
            args.append(value)
    if before is not None:
        where.append(f"{alias}checkpoint_id < {ph}")
        args.append(before)
    return where, args


# A thread's newest checkpoints, newest first (ids order a thread's); ``{p}``: placeholder.
LATEST_SQL = (
    "SELECT checkpoint_ns, checkpoint_id, parent_id, metadata, created_at "
    "FROM thread_checkpoints WHERE namespace = {p} AND thread_id = {p} "
    "ORDER BY checkpoint_id DESC, checkpoint_ns LIMIT {p}"
)
