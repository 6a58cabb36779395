"""Where each chunk's vector sits in the exact vector index: chunk id -> (block, row).

Why not a plain dict: a sidecar loaded on open holds every chunk of the store, and filling a
dict with a million entries (a tuple each) took ~0.4 s of the first search and ~130 MB.
Here the loaded chunks stay in numpy arrays: their ids sorted, with each one's row in the
sidecar's concatenated blocks (0.06 s to sort at a million, 16 bytes a chunk); while the
ids are dense enough, a table from chunk id straight to row (4 bytes per id up to the
largest) takes the rows' place: a search looks up a few hundred chunks, and a binary
search of a million sorted ids misses the CPU caches at every step, where the table reads
one entry. What changes after the load (chunks added, rows moved by a swap-remove, chunks
removed) is kept in a dict of overrides, so a process that writes a lot ends up with
today's dict for its own writes while the loaded history stays in the arrays.

A lookup reads the overrides first (``None`` there means removed), then the arrays.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

BlockKey = tuple[str, str]
Location = tuple[BlockKey, int]
# The id -> row table is kept while the largest loaded id is below this many times the
# number of loaded chunks (plus DENSE_SLACK): past that, deletes have left the ids so sparse
# that the table would outweigh the sorted arrays, and lookups binary-search those.
DENSE_SPREAD = 4
DENSE_SLACK = 1024


class ChunkMap:
    """A mapping of chunk id -> (block key, row in that block), for the exact vector index.

    Supports what the index needs of a dict: ``in``, ``get``, assignment, ``pop``, ``len``
    and iteration, plus :meth:`locate` for many ids at once.
    """

    __slots__ = ("_dense", "_ids", "_keys", "_overrides", "_rows", "_size", "_starts")

    def __init__(self) -> None:
        self._ids = np.empty(0, np.int64)  # loaded chunk ids, sorted
        # Each one's row in the concatenated blocks (empty when ``_dense`` has them).
        self._rows = np.empty(0, np.int64)
        self._starts = np.empty(0, np.int64)  # first concatenated row of each loaded block
        self._dense: np.ndarray | None = None  # loaded chunk id -> its row, -1: not loaded
        self._keys: list[BlockKey] = []  # key of each loaded block
        self._overrides: dict[int, Location | None] = {}
        self._size = 0

    @classmethod
    def loaded(cls, ids: np.ndarray, blocks: Sequence[tuple[BlockKey, int, int]]) -> ChunkMap:
        """The map of a loaded sidecar: ``ids`` its concatenated chunk ids, ``blocks`` each
        block's (key, first row, row count), in row order."""
        out = cls()
        order = np.argsort(ids, kind="stable")
        out._ids = np.ascontiguousarray(ids[order], dtype=np.int64)
        out._rows = order.astype(np.int64, copy=False)
        out._starts = np.array([start for _, start, _ in blocks], dtype=np.int64)
        out._keys = [key for key, _, _ in blocks]
        out._size = len(ids)
        if len(ids) and out._ids[0] >= 0 and out._ids[-1] < DENSE_SPREAD * len(ids) + DENSE_SLACK:
            out._dense = np.full(int(out._ids[-1]) + 1, -1, np.int32)
            out._dense[out._ids] = out._rows
            # The table answers every lookup: the sorted rows are not kept beside it.
            out._rows = np.empty(0, np.int64)
        return out

    def _loaded_rows(self, chunk_ids: np.ndarray) -> np.ndarray:
        """Each id's row in the loaded concatenation, -1 for an id not loaded."""
        dense = self._dense
        if dense is not None:
            inside = (chunk_ids >= 0) & (chunk_ids < len(dense))
            return np.where(inside, dense[np.where(inside, chunk_ids, 0)], -1)
        ids = self._ids
        pos = np.minimum(np.searchsorted(ids, chunk_ids), len(ids) - 1)
        return np.where(ids[pos] == chunk_ids, self._rows[pos], -1)

    def _base(self, chunk_id: int) -> Location | None:
        """Where the load put the chunk (None: not loaded), whatever changed since.

        The one-id form of :meth:`_loaded_rows`, kept apart because every add asks it
        (``in``), where building arrays for one id would cost several times the lookup.
        """
        dense = self._dense
        if dense is not None:
            row = int(dense[chunk_id]) if 0 <= chunk_id < len(dense) else -1
        else:
            ids = self._ids
            if not len(ids) or chunk_id < ids[0] or chunk_id > ids[-1]:
                return None
            i = int(np.searchsorted(ids, chunk_id))
            row = int(self._rows[i]) if ids[i] == chunk_id else -1
        if row < 0:
            return None
        block = int(np.searchsorted(self._starts, row, side="right")) - 1
        return self._keys[block], row - int(self._starts[block])

    def get(self, chunk_id: int, default: Location | None = None) -> Location | None:
        """The chunk's location, or ``default`` when it is not indexed."""
        overrides = self._overrides
        found = overrides[chunk_id] if chunk_id in overrides else self._base(chunk_id)
        return default if found is None else found

    def __contains__(self, chunk_id: object) -> bool:
        if not isinstance(chunk_id, int | np.integer):
            return False
        return self.get(int(chunk_id)) is not None

    def __setitem__(self, chunk_id: int, location: Location) -> None:
        if self.get(chunk_id) is None:
            self._size += 1
        self._overrides[chunk_id] = location

    def pop(self, chunk_id: int, default: Location | None = None) -> Location | None:
        """Remove the chunk; return where it was, or ``default`` when it was not indexed."""
        found = self.get(chunk_id)
        if found is None:
            return default
        self._size -= 1
        if self._base(chunk_id) is None:
            del self._overrides[chunk_id]
        else:
            self._overrides[chunk_id] = None
        return found

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[int]:
        overrides = self._overrides
        for cid in self._ids.tolist():
            if cid not in overrides:
                yield cid
        for cid, found in overrides.items():
            if found is not None:
                yield cid

    def split(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Split a lookup: the positions in ``chunk_ids`` of the chunks still where the load
        put them, their rows in the loaded concatenation, and the positions of the others
        (changed since the load, added, or not indexed: look those up one by one).

        Why: a row unchanged since the load is the same in the mapped sidecar as in its
        block, so many can be read from the sidecar in one indexing step.
        """
        n = len(chunk_ids)
        if not len(self._ids) or not n:
            return np.empty(0, np.int64), np.empty(0, np.int64), list(range(n))
        rows = self._loaded_rows(np.asarray(chunk_ids, dtype=np.int64))
        hit = rows >= 0
        overrides = self._overrides
        if overrides:
            changed = [i for i, cid in enumerate(chunk_ids) if cid in overrides]
            if changed:
                hit[changed] = False
        idx = np.flatnonzero(hit)
        return idx, rows[idx].astype(np.int64), np.flatnonzero(~hit).tolist()

    def locate(self, chunk_ids: Sequence[int]) -> list[Location | None]:
        """Each chunk's location (None: not indexed), the loaded ones looked up together."""
        out: list[Location | None] = [None] * len(chunk_ids)
        idx, rows, rest = self.split(chunk_ids)
        if len(idx):
            blocks = np.searchsorted(self._starts, rows, side="right") - 1
            offsets = rows - self._starts[blocks]
            keys = self._keys
            for i, b, o in zip(idx.tolist(), blocks.tolist(), offsets.tolist(), strict=True):
                out[i] = (keys[b], o)
        for i in rest:
            out[i] = self.get(chunk_ids[i])
        return out
