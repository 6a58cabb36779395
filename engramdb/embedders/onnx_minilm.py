"""all-MiniLM-L6-v2 on ONNX Runtime: the default embedder, with no torch in the process.

The ``fp32`` variant is *the same embedder* as :class:`~engramdb.embedders.minilm.
MiniLMEmbedder` (same name and dimension, vectors equal within float tolerance), so a store
built with either opens with the other. The ``int8`` variant has weights quantized to int8;
its vectors differ, so it carries another name and a store must be re-embedded to switch.
Its activations are quantized per encoder call (dynamic quantization), which would make a
text's vector depend on its batch companions, so it encodes one text per call and does not
coalesce; a batch runs its one-text calls on parallel lanes instead (one intra-op thread
each, the lane count chosen by measured throughput like the thread count of fp32 batches).

How a call runs:

* Tokenization uses the model's ``tokenizer.json`` through ``tokenizers``, configured as
  sentence-transformers does (truncate at 256 tokens, pad to the longest text of a batch;
  the file itself says 128 and a fixed length, which would silently change the vectors).
* A batch is tokenized once, sorted by token length and cut into batches of
  ``batch_size``, so each batch pads to the longest of similar texts, not of all texts.
* Single texts from concurrent callers are coalesced (:mod:`engramdb.embedders.coalesce`):
  each caller tokenizes its own text on its own thread, overlapping the batch that runs, and
  one encoder call serves them all. Up to ``coalesce_lanes`` such calls run at once (one
  per core by default): a text costs nearly as much CPU in a batch as alone, so what a
  process's concurrent single texts need is every core, not one batch at a time.
* A run of at most four texts uses ``threads`` intra-op threads (default 1: a single text
  does not split well across threads and a second thread competes with the store); larger
  batches use ``batch_threads``, or when 0 the count with the better measured throughput
  (:class:`~engramdb.embedders.minilm.ThreadChooser`), since which wins depends on what else
  the machine runs. Threads do not spin while idle, for the same reason.

Sessions are shared by every embedder of the process with the same file and thread count:
each ``Memory`` resolves its own embedder, and the weights are loaded once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from engramdb.embedders.coalesce import Coalescer
from engramdb.embedders.minilm import NAME, ThreadChooser
from engramdb.embedders.model_files import configured_root, find_or_build, source_model_dir
from engramdb.embedders.query_cache import QueryCache
from engramdb.native import check_onnxruntime_loadable

NAME_INT8 = f"{NAME}:onnx-int8"
MAX_TOKENS = 256
SMALL_RUN = 4  # texts; a run this small uses the single-query thread count

_shared_lock = threading.Lock()
_sessions: dict[tuple[str, int], Any] = {}
_tokenizers: dict[str, tuple[Any, Any]] = {}
_lanes: ThreadPoolExecutor | None = None


def one_text_lanes() -> ThreadPoolExecutor:
    """The process's pool for one-text encoder calls run side by side (int8 batches)."""
    global _lanes
    with _shared_lock:
        if _lanes is None:
            _lanes = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="engramdb-lane")
        return _lanes


def load_tokenizers(source: Path) -> tuple[Any, Any]:
    """The (batch, counting) tokenizers of the model in ``source``, loaded once per process.

    The batch tokenizer truncates at :data:`MAX_TOKENS` and does not pad (batches pad to
    their own longest text); the counting one neither truncates nor pads.
    """
    key = str(source)
    with _shared_lock:
        if key not in _tokenizers:
            from tokenizers import Tokenizer

            batch = Tokenizer.from_file(str(source / "tokenizer.json"))
            batch.no_padding()
            batch.enable_truncation(max_length=MAX_TOKENS)
            counting = Tokenizer.from_file(str(source / "tokenizer.json"))
            counting.no_padding()
            counting.no_truncation()
            _tokenizers[key] = (batch, counting)
        return _tokenizers[key]


def load_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session of ``path`` with ``threads`` intra-op threads (shared)."""
    key = (str(path), threads)
    with _shared_lock:
        if key not in _sessions:
            check_onnxruntime_loadable()
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            _sessions[key] = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        return _sessions[key]


def pad(encodings: Sequence[Any]) -> dict[str, np.ndarray]:
    """The encoder's inputs for ``encodings``, right-padded with zeros to the longest."""
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, e in enumerate(encodings):
        n = len(e.ids)
        ids[i, :n] = e.ids
        mask[i, :n] = 1
        types[i, :n] = e.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 through ONNX Runtime: 384 dimensions, 256-token window, offline.

    Args:
        variant: ``fp32`` (the same vectors as torch) or ``int8`` (faster, other vectors).
        threads: intra-op threads for runs of up to four texts.
        batch_threads: threads for larger runs; 0 chooses by measured throughput.
        batch_size: texts per encoder call.
        cache_size: LRU entries of single-query vectors.
        coalesce_ms: how long a single text waits for concurrent ones to share its encoder
            call; 0 runs each call on its own.
        coalesce_lanes: how many coalesced batches may run at once (0: one per core).
        model_dir: the folder of the ONNX files (None: ``ENGRAM_MODEL_DIR`` if set, else the
            environment's, then the user's cache).

    Raises:
        EmbeddingError: (on first use) the model package is missing.
    """

    dim = 384
    max_tokens = MAX_TOKENS

    def __init__(
        self,
        variant: str = "fp32",
        *,
        threads: int = 1,
        batch_threads: int = 0,
        batch_size: int = 64,
        cache_size: int = 1024,
        coalesce_ms: float = 2.0,
        coalesce_lanes: int = 0,
        model_dir: str | Path | None = None,
    ) -> None:
        if variant not in ("fp32", "int8"):
            raise ValueError(f"unknown variant {variant!r}; use 'fp32' or 'int8'")
        self.variant = variant
        self.name = NAME if variant == "fp32" else NAME_INT8
        self.threads = threads
        self.batch_threads = batch_threads
        # Dynamic quantization scales activations per encoder call, so an int8 vector would
        # depend on the texts it is batched with: int8 encodes one text per call.
        self.batch_size = batch_size if variant == "fp32" else 1
        self.model_dir = Path(model_dir) if model_dir is not None else configured_root()
        self.chooser = ThreadChooser(sorted({1, max(1, os.cpu_count() or 1)}))
        self._cache = QueryCache(cache_size)
        self.coalescer: Coalescer[Any] | None = (
            Coalescer(
                self._encode,
                coalesce_ms / 1000,
                batch_size,
                lanes=coalesce_lanes or max(1, os.cpu_count() or 1),
            )
            if coalesce_ms > 0 and self.batch_size > 1
            else None
        )
        self._path: Path | None = None
        self._load_lock = threading.Lock()

    def _model_path(self) -> Path:
        if self._path is None:
            with self._load_lock:
                if self._path is None:
                    self._path = find_or_build(self.variant, self.model_dir).onnx
        return self._path

    def _tokenizers(self) -> tuple[Any, Any]:
        return load_tokenizers(source_model_dir())

    def load(self) -> None:
        """Load the tokenizer and the single-query session now instead of on first use."""
        self._tokenizers()
        load_session(self._model_path(), self.threads)

    def count_tokens(self, text: str) -> int:
        """Count word-piece tokens with the model's tokenizer (without special tokens)."""
        return len(self._tokenizers()[1].encode(text, add_special_tokens=False).ids)

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Embed texts; single queries go through an LRU cache, single texts coalesce."""
        if len(texts) != 1:
            if not texts:
                return np.empty((0, self.dim), dtype=np.float32)
            return self._encode(self._tokenizers()[0].encode_batch(list(texts)))
        text = texts[0]
        if query:
            hit = self._cache.get(text)
            if hit is not None:
                return hit.reshape(1, -1)
        encoding = self._tokenizers()[0].encode(text)
        if self.coalescer is not None:
            row = self.coalescer.submit(encoding).reshape(1, -1)
        else:
            row = self._encode([encoding])
        if query:
            self._cache.put(text, row[0])
        return row

    def _encode(self, encodings: Sequence[Any]) -> np.ndarray:
        """Run the encoder over tokenized texts in length-sorted batches; rows in input order."""
        if self.batch_size == 1 and len(encodings) > 1:
            return self._encode_in_lanes(encodings)
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(encodings), self.dim), dtype=np.float32)
        path = self._model_path()
        for start in range(0, len(order), self.batch_size):
            part = order[start : start + self.batch_size]
            out[part] = self._run(path, [encodings[i] for i in part])
        return out

    def _encode_in_lanes(self, encodings: Sequence[Any]) -> np.ndarray:
        """Encode one text per call, ``lanes`` calls at a time (the session runs them at once).

        Each call runs on one intra-op thread, so its vector never depends on another text.
        """
        path = self._model_path()
        lanes = self.batch_threads or self.chooser.pick()
        session = load_session(path, self.threads)
        started = time.perf_counter()
        if lanes == 1:
            rows = [self._run_session(session, [e]) for e in encodings]
        else:
            pool = one_text_lanes()
            rows = list(pool.map(lambda e: self._run_session(session, [e]), encodings))
        if not self.batch_threads:
            self.chooser.record(lanes, len(encodings), time.perf_counter() - started)
        return np.concatenate(rows, axis=0)

    @staticmethod
    def _run_session(session: Any, encodings: Sequence[Any]) -> np.ndarray:
        feed = pad(encodings)
        wanted = {i.name for i in session.get_inputs()}
        rows = session.run(None, {k: v for k, v in feed.items() if k in wanted})[0]
        return np.asarray(rows, dtype=np.float32)

    def _run(self, path: Path, encodings: Sequence[Any]) -> np.ndarray:
        small = len(encodings) <= SMALL_RUN
        measured = not small and not self.batch_threads
        threads = self.threads if small else self.batch_threads or self.chooser.pick()
        session = load_session(path, threads)
        started = time.perf_counter()
        rows = self._run_session(session, encodings)
        if measured:
            self.chooser.record(threads, len(encodings), time.perf_counter() - started)
        return rows
