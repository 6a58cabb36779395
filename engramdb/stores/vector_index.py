"""An in-process exact vector index derived from the store's rows.

Why: an exact scan over one user's contiguous rows is the fastest filtered search (the common
case: an agent searches its user's memories) and has perfect recall. Vectors are kept in
blocks per (namespace, user_id), each a contiguous float32 matrix with swap-remove deletes, so
a user-scoped search is one matrix-vector product over exactly that user's rows.

The index is derived data (invariant 1): it is caught up from the store by chunk-id watermark
(inserts) and by the ``chunk_deletes`` log (deletes), persisted beside the database file as a
sidecar folder and loaded with ``mmap`` on open, so a cold start does not re-read every
vector; a sidecar that does not match the store's ``index_epoch`` is ignored and rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BlockKey = tuple[str, str]
SIDE_FORMAT = 1


@dataclass
class Block:
    """The rows of one (namespace, user_id) scope: vectors and their chunk ids."""

    mat: np.ndarray
    ids: np.ndarray
    n: int = 0
    owned: bool = True

    def append(self, chunk_id: int, vec: np.ndarray) -> int:
        """Add one row; return its position."""
        if not self.owned or self.n == len(self.ids):
            cap = max(16, self.n * 2)
            mat = np.empty((cap, self.mat.shape[1]), dtype=np.float32)
            ids = np.empty(cap, dtype=np.int64)
            mat[: self.n] = self.mat[: self.n]
            ids[: self.n] = self.ids[: self.n]
            self.mat, self.ids, self.owned = mat, ids, True
        self.mat[self.n] = vec
        self.ids[self.n] = chunk_id
        self.n += 1
        return self.n - 1

    def make_owned(self) -> None:
        """Copy a memory-mapped block into process memory before changing it."""
        if not self.owned:
            self.mat = np.array(self.mat[: self.n], dtype=np.float32)
            self.ids = np.array(self.ids[: self.n], dtype=np.int64)
            self.owned = True


@dataclass
class VectorIndex:
    """Blocks of vectors by scope, the position of every chunk, and catch-up watermarks."""

    dim: int
    epoch: str = ""
    blocks: dict[BlockKey, Block] = field(default_factory=dict)
    where: dict[int, tuple[BlockKey, int]] = field(default_factory=dict)
    max_chunk_id: int = 0
    delete_seq: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __len__(self) -> int:
        return len(self.where)

    def add(self, key: BlockKey, chunk_id: int, vec: np.ndarray) -> None:
        """Index one chunk vector under its scope (ignored when already present)."""
        if chunk_id in self.where:
            return
        block = self.blocks.get(key)
        if block is None:
            block = Block(np.empty((16, self.dim), np.float32), np.empty(16, np.int64))
            self.blocks[key] = block
        self.where[chunk_id] = (key, block.append(chunk_id, vec))
        if chunk_id > self.max_chunk_id:
            self.max_chunk_id = chunk_id

    def remove(self, chunk_id: int) -> None:
        """Drop one chunk (swap-remove keeps the block contiguous); unknown ids are ignored."""
        loc = self.where.pop(chunk_id, None)
        if loc is None:
            return
        key, pos = loc
        block = self.blocks[key]
        block.make_owned()
        last = block.n - 1
        if pos != last:
            moved = int(block.ids[last])
            block.mat[pos] = block.mat[last]
            block.ids[pos] = moved
            self.where[moved] = (key, pos)
        block.n -= 1
        if block.n == 0:
            del self.blocks[key]

    def scan(
        self, namespace: str, user_id: str | None, query: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (chunk_ids, cosine scores) of every row in the scope, exactly."""
        if user_id is not None:
            block = self.blocks.get((namespace, user_id))
            if block is None or block.n == 0:
                return np.empty(0, np.int64), np.empty(0, np.float32)
            return block.ids[: block.n], block.mat[: block.n] @ query
        ids, scores = [], []
        for (ns, _), block in self.blocks.items():
            if ns == namespace and block.n:
                ids.append(block.ids[: block.n])
                scores.append(block.mat[: block.n] @ query)
        if not ids:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        return np.concatenate(ids), np.concatenate(scores)

    def chunk_ids(self) -> set[int]:
        """Return every indexed chunk id (for doctor)."""
        return set(self.where)

    # ------------------------------------------------------------ persistence

    def save(self, folder: Path) -> None:
        """Write the index atomically to ``folder`` (a temp folder renamed into place)."""
        with self.lock:
            keys = [k for k, b in self.blocks.items() if b.n]
            total = sum(self.blocks[k].n for k in keys)
            mat = np.empty((total, self.dim), np.float32)
            ids = np.empty(total, np.int64)
            table = []
            off = 0
            for k in keys:
                b = self.blocks[k]
                mat[off : off + b.n] = b.mat[: b.n]
                ids[off : off + b.n] = b.ids[: b.n]
                table.append([k[0], k[1], off, b.n])
                off += b.n
            header = {
                "format": SIDE_FORMAT,
                "dim": self.dim,
                "epoch": self.epoch,
                "max_chunk_id": self.max_chunk_id,
                "delete_seq": self.delete_seq,
                "blocks": table,
            }
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp", dir=folder.parent))
        try:
            np.save(tmp / "vectors.npy", mat)
            np.save(tmp / "ids.npy", ids)
            (tmp / "index.json").write_text(json.dumps(header))
            old = folder.with_name(folder.name + f".old{os.getpid()}")
            if folder.exists():
                os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, folder: Path, dim: int, epoch: str) -> VectorIndex | None:
        """Load a sidecar written by :meth:`save`; None when absent, damaged or stale."""
        try:
            header = json.loads((folder / "index.json").read_text())
            if header["format"] != SIDE_FORMAT or header["dim"] != dim or header["epoch"] != epoch:
                return None
            mat = np.load(folder / "vectors.npy", mmap_mode="r")
            ids = np.load(folder / "ids.npy")
        except (OSError, ValueError, KeyError):
            return None
        index = cls(dim=dim, epoch=epoch)
        index.max_chunk_id = int(header["max_chunk_id"])
        index.delete_seq = int(header["delete_seq"])
        for ns, user, off, n in header["blocks"]:
            key = (ns, user)
            index.blocks[key] = Block(mat[off : off + n], ids[off : off + n], n, owned=False)
            for pos, cid in enumerate(ids[off : off + n].tolist()):
                index.where[cid] = (key, pos)
        return index

    def apply(
        self,
        inserts: Iterable[tuple[int, bytes, str, str]],
        deletes: Iterable[tuple[int, int]],
    ) -> None:
        """Apply a catch-up batch: (chunk_id, vector bytes, namespace, user) and (seq, chunk_id)."""
        for chunk_id, blob, ns, user in inserts:
            self.add((ns, user), chunk_id, np.frombuffer(blob, dtype=np.float32))
        for seq, chunk_id in deletes:
            self.remove(chunk_id)
            if seq > self.delete_seq:
                self.delete_seq = seq
