"""``sql:<SQLAlchemy URL>``: a legacy table (or query) in any database SQLAlchemy reaches.

The mapping names a ``table`` (read with ``SELECT * FROM table ORDER BY <id column>``, the
table and column reflected, so no caller string is spliced into SQL) or a ``query`` (run
as given, read-only by intent: it should carry its own ``ORDER BY`` so that a resumed run
sees the same order). Rows stream through a server-side cursor where the driver has one.
``postgresql://`` URLs use psycopg 3 (the driver engramdb already depends on).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from typing import Any

from engramdb.config import url_without_password
from engramdb.errors import ValidationError
from engramdb.ops.sources.base import EmbeddingModel, SourceItem


class SQLSource:
    """Rows of one table or query, read through SQLAlchemy."""

    kind = "sql"

    def __init__(self, url: str, mapping: dict[str, Any] | None) -> None:
        import sqlalchemy as sa

        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        if not mapping or not (mapping.get("table") or mapping.get("query")):
            raise ValidationError(
                "a sql: source needs a mapping file naming a 'table' or a 'query'",
                field="mapping",
            )
        try:
            self._engine = sa.create_engine(url)
            self._engine.connect().close()
        except Exception as exc:
            raise ValidationError(
                f"cannot open the SQL source {url_without_password(url)!r}: {type(exc).__name__}",
                field="source",
            ) from exc
        self._id_column = mapping.get("id") if isinstance(mapping.get("id"), str) else None
        self._table: Any = None
        if mapping.get("table"):
            self.collection = str(mapping["table"])
            self._stmt = self._table_select(sa, self.collection)
        else:
            self.collection = str(mapping.get("collection") or "query")
            self._stmt = sa.text(str(mapping["query"]))

    def _table_select(self, sa: Any, name: str) -> Any:
        schema, _, table_name = name.rpartition(".")
        meta = sa.MetaData()
        try:
            table = sa.Table(table_name, meta, schema=schema or None, autoload_with=self._engine)
        except sa.exc.NoSuchTableError as exc:
            raise ValidationError(f"the SQL source has no table {name!r}", field="table") from exc
        order = (
            [table.c[self._id_column]]
            if self._id_column and self._id_column in table.c
            else list(table.primary_key.columns) or list(table.c)
        )
        self._table = table
        return sa.select(table).order_by(*order)

    def builtin_mapping(self) -> dict[str, Any] | None:
        """None: a table's columns mean what the mapping says."""
        return None

    def embedding_model(self) -> EmbeddingModel | None:
        """Unknown unless the mapping states it."""
        return None

    def count(self) -> int | None:
        """The number of rows the table or query yields."""
        import sqlalchemy as sa

        with self._engine.connect() as conn:
            sub = self._stmt.subquery() if hasattr(self._stmt, "subquery") else None
            if sub is None:
                sub = sa.text(str(self._stmt)).columns().subquery()
            return int(conn.execute(sa.select(sa.func.count()).select_from(sub)).scalar_one())

    def read_batches(self, size: int) -> Iterator[list[SourceItem]]:
        """Stream the rows ``size`` at a time."""
        index = 0
        with self._engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(self._stmt)
            keys = list(result.keys())
            while rows := result.fetchmany(size):
                batch = []
                for row in rows:
                    fields = {k: _plain(v) for k, v in zip(keys, row, strict=True)}
                    fields["$index"] = index
                    sid = fields.get(self._id_column) if self._id_column else None
                    batch.append(
                        SourceItem(str(index if sid is None else sid), self.collection, fields)
                    )
                    index += 1
                yield batch

    def close(self) -> None:
        """Dispose of the connection pool."""
        self._engine.dispose()

    # --- writing (the legacy side of dual write and shadow reads) ------------------------

    def _writable(self) -> Any:
        if self._table is None or not self._id_column or self._id_column not in self._table.c:
            raise ValidationError(
                "writing to a sql: source needs a mapping with a 'table' and an 'id' column "
                "of that table",
                field="mapping",
            )
        return self._table

    def put(self, collection: str, items: list[SourceItem]) -> None:
        """Replace the rows of these ids with the items' fields (columns the table has;
        the id column takes the source id), in one transaction."""
        table = self._writable()
        id_column = str(self._id_column)
        idc = table.c[id_column]
        rows = []
        for item in items:
            row = {k: v for k, v in item.fields.items() if k in table.c and not k.startswith("$")}
            row[id_column] = item.source_id
            rows.append(row)
        with self._engine.begin() as conn:
            conn.execute(table.delete().where(idc.in_([i.source_id for i in items])))
            for row in rows:
                conn.execute(table.insert().values(**row))

    def remove(self, collection: str, source_ids: list[str]) -> None:
        """Delete the rows of these ids."""
        table = self._writable()
        with self._engine.begin() as conn:
            conn.execute(table.delete().where(table.c[self._id_column].in_(source_ids)))

    def fetch(self, collection: str, source_ids: list[str]) -> list[SourceItem]:
        """The rows of these ids, as items."""
        table = self._writable()
        stmt = table.select().where(table.c[self._id_column].in_(source_ids))
        with self._engine.connect() as conn:
            result = conn.execute(stmt)
            keys = list(result.keys())
            out = []
            for row in result:
                fields = {k: _plain(v) for k, v in zip(keys, row, strict=True)}
                out.append(SourceItem(str(fields[self._id_column]), self.collection, fields))
        return out

    def source_ids(self, collection: str) -> list[str]:
        """Every id of the table."""
        table = self._writable()
        with self._engine.connect() as conn:
            return [
                str(r[0])
                for r in conn.execute(table.select().with_only_columns(table.c[self._id_column]))
            ]

    def count_where(self, collection: str, where: dict[str, Any] | None) -> int:
        """How many rows have these column values."""
        import sqlalchemy as sa

        table = self._writable()
        stmt = sa.select(sa.func.count()).select_from(table)
        for key, value in (where or {}).items():
            if key not in table.c:
                raise ValidationError(f"the table has no column {key!r}", field=key)
            stmt = stmt.where(table.c[key] == value)
        with self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())


def _plain(value: Any) -> Any:
    """A column value as JSON can hold it (times stay datetimes for the date parser)."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    return value
