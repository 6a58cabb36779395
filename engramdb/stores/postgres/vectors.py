"""Vectors on PostgreSQL: how they travel (binary and text forms) and the indexes over them.

Chunk vectors live in a pgvector ``vector(dim)`` column. They are sent in pgvector's own
binary form where a statement takes many of them (:class:`BinaryVectors`), in its text form
elsewhere (:func:`vector_text`). The derived indexes over them (:class:`VectorIndexes`) are
the HNSW graph for large scopes, one btree for a user's scope, and one holding each chunk's
sign bits (:data:`BITS_INDEX`); every place that drops or (re)builds them uses the same
statements.
"""

from __future__ import annotations

import functools
import json
import struct
from typing import Any

import numpy as np
import psycopg
from psycopg.adapt import Dumper, PyFormat
from psycopg.pq import Format
from psycopg.types import TypeInfo

from engramdb.errors import StoreError, ValidationError

# The HNSW graph is built over half-precision copies of the vectors (an expression index on
# ``embedding::halfvec(dim)``); the column and every returned score stay float32. Inserts
# and the build are faster and the graph smaller at the same recall (docs/tuning.md).
# It also lifts pgvector's HNSW limit from 2,000 dimensions
# (vector) to 4,000 (halfvec). Needs pgvector 0.7 or later.
HNSW_MAX_DIM = 4000
# The chunk vectors are also kept in a btree on (namespace, user_id), so the exact search of
# one user's scope is an index-only scan over contiguous leaf pages instead of one heap
# visit per chunk; it costs about as much disk as the vectors (docs/tuning.md).
# A btree entry holds at most ~2.7 kB, so vectors above COVER_MAX_DIM go without it.
COVER_MAX_DIM = 640
COVER_INDEX = "chunks_user_vectors"
# The plain (namespace, user_id, id) btree on chunks: a user's scope where the covering index
# cannot be built (wide vectors, or no embedder recorded yet). Where the covering index
# exists it answers everything this one did, so the two are never kept together: one btree
# less to maintain per chunk written (migration 0005 drops it from existing stores).
USER_INDEX = "chunks_ns_user"

# Each chunk's vector as one sign bit per dimension (``bits``, a stored generated column, so
# every path that writes a vector writes its bits: inserts, COPY, re-embedding), kept in a
# (namespace, user_id) btree. A mid-sized scope's search scans those codes by Hamming
# distance and re-scores only the best few exactly (``stores/postgres/search.py``): 48 bytes
# a chunk to read and compare at 384 dimensions instead of 1,536 (docs/tuning.md).
BITS_INDEX = "chunks_user_bits"
BITS_COLUMN = "bits bit varying GENERATED ALWAYS AS (binary_quantize(embedding)) STORED"

DROP_VECTOR_INDEXES = [
    "DROP INDEX IF EXISTS chunks_hnsw",
    f"DROP INDEX IF EXISTS {COVER_INDEX}",
    f"DROP INDEX IF EXISTS {USER_INDEX}",
    f"DROP INDEX IF EXISTS {BITS_INDEX}",
]


class _Vector:
    """A float32 vector to send in pgvector's binary form (see :class:`_VectorDumper`)."""

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = values


class _VectorDumper(Dumper):
    """pgvector's binary input (``vector_recv``): dimension, a zero, big-endian float4s."""

    format = Format.BINARY

    def dump(self, obj: _Vector) -> bytes:
        values = np.asarray(obj.values, dtype=">f4").ravel()
        return struct.pack(">HH", values.shape[0], 0) + values.tobytes()


class BinaryVectors:
    """Teaches connections to send :class:`_Vector` in pgvector's binary form.

    Binary: no formatting of 384 floats per chunk on our side and no parsing on the
    server's. The type's oid is looked up once per store (one query; the schema's
    migrations created the extension), then registered on each connection locally.
    """

    def __init__(self) -> None:
        self._type: TypeInfo | None = None

    def enable(self, c: psycopg.Connection[Any]) -> None:
        """Register the binary vector dumper on ``c`` (once per connection).

        Raises:
            StoreError: the database has no ``vector`` type.
        """
        try:
            c.adapters.get_dumper(_Vector, PyFormat.BINARY)
            return
        except psycopg.ProgrammingError:
            pass
        if self._type is None:
            self._type = TypeInfo.fetch(c, "vector")
            if self._type is None:
                raise StoreError("the database has no 'vector' type: is pgvector installed?")
        self._type.register(c)
        dumper = type("VectorDumper", (_VectorDumper,), {"oid": self._type.oid})
        c.adapters.register_dumper(_Vector, dumper)


@functools.lru_cache(maxsize=8)
def _vector_format(dim: int) -> str:
    return "[" + ",".join(["%.9g"] * dim) + "]"


def vector_text(vec: np.ndarray) -> str:
    """pgvector's text form of a float32 vector.

    Exact: nine significant digits always read back as the same float32. One ``%``
    format per vector, not ``json.dumps``: bulk loads call it once per chunk.
    """
    values = np.asarray(vec, np.float32).ravel().tolist()
    return _vector_format(len(values)) % tuple(values)


def parse_vector(text: str) -> np.ndarray:
    """A float32 array from pgvector's text form."""
    return np.asarray(json.loads(text), dtype=np.float32)


def hnsw_key(dim: int, alias: str = "") -> str:
    """The expression the HNSW index is built on (see :data:`HNSW_MAX_DIM`); an ``ORDER BY``
    must spell it exactly so for the planner to use the index."""
    return f"(({alias}embedding)::halfvec({int(dim)}))"


def vector_index_ddl(dim: int | None, m: int, ef_construction: int) -> list[str]:
    """The statements creating the derived vector indexes for vectors of ``dim``.

    The HNSW graph (unfiltered and large-scope search), the user-scope btree: the
    covering one for vectors small enough (exact search of a user's scope, see
    :data:`COVER_MAX_DIM`), else the plain :data:`USER_INDEX` (also while no embedder is
    recorded, ``dim`` None), and the btree of sign bits (:data:`BITS_INDEX`) once the
    dimension is known; the same set in every place that (re)builds them.
    """
    ddl = []
    if dim is not None and dim <= HNSW_MAX_DIM:
        ddl.append(
            f"CREATE INDEX chunks_hnsw ON chunks USING hnsw ({hnsw_key(dim)} "
            f"halfvec_cosine_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
        )
    if dim is not None and dim <= COVER_MAX_DIM:
        ddl.append(
            f"CREATE INDEX {COVER_INDEX} ON chunks (namespace, user_id) "
            "INCLUDE (id, rid, start_pos, end_pos, embedding)"
        )
    else:
        ddl.append(f"CREATE INDEX {USER_INDEX} ON chunks (namespace, user_id, id)")
    if dim is not None:
        ddl.append(
            f"CREATE INDEX {BITS_INDEX} ON chunks (namespace, user_id) INCLUDE (id, rid, bits)"
        )
    return ddl


class VectorIndexes:
    """The derived vector indexes of one store, built with its HNSW parameters.

    Every method runs inside the caller's transaction (``c``), so a rebuild commits or
    rolls back with the change that needed it.
    """

    def __init__(self, m: int, ef_construction: int) -> None:
        self.m = int(m)
        self.ef_construction = int(ef_construction)

    def drop(self, c: psycopg.Connection[Any]) -> None:
        """Drop every vector index (those absent are skipped)."""
        for statement in DROP_VECTOR_INDEXES:
            c.execute(statement)

    def rebuild(self, c: psycopg.Connection[Any], dim: int | None) -> None:
        """Drop the vector indexes and build them anew for vectors of ``dim``."""
        self.drop(c)
        for statement in vector_index_ddl(dim, self.m, self.ef_construction):
            c.execute(statement)

    def untype(self, c: psycopg.Connection[Any]) -> None:
        """Drop the vector indexes and the bits column and take ``chunks.embedding``'s
        dimension away, so the column can hold vectors of another (a re-embedding); a
        column that a generated one reads cannot change type. :meth:`set_dimension` puts
        both back."""
        self.drop(c)
        c.execute("ALTER TABLE chunks DROP COLUMN IF EXISTS bits")
        c.execute("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector")

    def set_dimension(self, c: psycopg.Connection[Any], dim: int) -> None:
        """Give ``chunks.embedding`` the dimension ``dim`` and (re)build its vector indexes
        and the bits column computed from it (see :data:`BITS_INDEX`).

        Raises:
            ValidationError: ``dim`` is outside pgvector's range.
        """
        if not 1 <= dim <= 16_000:
            raise ValidationError(f"vector dimension {dim} is out of range", field="dim")
        self.untype(c)
        c.execute(f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dim})")
        c.execute(f"ALTER TABLE chunks ADD COLUMN {BITS_COLUMN}")
        for statement in vector_index_ddl(dim, self.m, self.ef_construction):
            c.execute(statement)
