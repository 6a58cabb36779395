"""The spaCy pipeline in a helper process, so extraction does not hold this process's GIL.

Parsing is CPU-bound Python and Cython that holds the interpreter lock most of the time: run
in a thread of the writing process it slows the writes themselves (measured in
``bench/results/extract.json``). One helper process per parent process (started on first
use with ``spawn``, so it inherits no locks or connections) loads the pipeline and parses
batches sent over a pipe; the parent's thread only waits on the pipe. Requests are
serialised by a lock. A helper that dies is started again on the next call; the batch in
flight fails with :class:`~engramdb.errors.ExtractionError` (the engine then parks it, and
nothing is lost). The helper exits when its parent closes the pipe or exits.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import threading
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import Any

from engramdb.errors import ExtractionError
from engramdb.models import Extraction, FoundEntity, FoundRelation

_lock = threading.Lock()
_helper: tuple[Any, Connection, int] | None = None  # (process, pipe, parent pid)


def _serve(conn: Connection, batch_size: int) -> None:  # pragma: no cover - in the helper
    """The helper's loop: texts in, extractions (as dicts) out, until the pipe closes.

    It runs at a lower CPU priority: where cores are short, writes come first and
    extraction (which reads catch up on anyway) takes what is left.
    """
    from engramdb.extract.entities import EntityExtractor

    with contextlib.suppress(OSError):
        os.nice(10)

    extractor = EntityExtractor(batch_size)
    while True:
        try:
            texts = conn.recv()
        except (EOFError, OSError):
            return
        found: tuple[str, object]
        try:
            found = ("ok", [asdict(x) for x in extractor.extract(texts)])
        except Exception as exc:
            found = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(found)
        except OSError:  # the parent is gone (killed or closed): nobody to answer, stop
            return


def _stop() -> None:
    global _helper
    if _helper is not None and _helper[2] == os.getpid():
        proc, conn, _ = _helper
        conn.close()
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
    _helper = None


atexit.register(_stop)


def _connection(batch_size: int) -> Connection:
    global _helper
    if _helper is not None and (_helper[2] != os.getpid() or not _helper[0].is_alive()):
        if _helper[2] == os.getpid():
            _stop()
        _helper = None  # a forked child never uses its parent's helper
    if _helper is None:
        ctx = multiprocessing.get_context("spawn")
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(
            target=_serve, args=(theirs, batch_size), name="engramdb-nlp", daemon=True
        )
        proc.start()
        theirs.close()
        _helper = (proc, mine, os.getpid())
    return _helper[1]


def _from_dict(d: dict[str, Any]) -> Extraction:
    return Extraction(
        [FoundEntity(**e) for e in d["entities"]], [FoundRelation(**r) for r in d["relations"]]
    )


class ProcessExtractor:
    """:class:`~engramdb.extract.entities.EntityExtractor`'s interface, run in the helper."""

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._state = threading.Lock()  # guards the two flags below
        self._closed = False  # abort() ran: no batch is sent any more
        self._waiting: Any = None  # the helper this extractor awaits an answer from

    def abort(self) -> None:
        """End this extractor: refuse later batches, and fail the one awaited now at once.

        Why: the helper loads the NLP pipeline at a low priority; on a busy machine its
        first batch takes tens of seconds, and a process shutting down (SIGTERM) would wait
        for it. Killing the helper makes the waiting ``extract`` raise at once; the batch
        stays queued in the store for the next process. Another extractor's batch is never
        touched: the helper is killed only while this extractor is the one waiting on it.
        """
        with self._state:
            self._closed = True
            proc = self._waiting
        if proc is not None and proc.is_alive():
            proc.kill()

    def extract(self, texts: list[str]) -> list[Extraction]:
        """Return one extraction per text, parsed in the helper process.

        Raises:
            ExtractionError: the helper failed (the pipeline is missing, or it died).
        """
        with _lock:
            if self._closed:
                raise ExtractionError("the extractor is closed")
            conn = _connection(self.batch_size)
            with self._state:
                if self._closed:  # abort() ran while the helper started
                    raise ExtractionError("the extractor is closed")
                self._waiting = _helper[0] if _helper is not None else None
            try:
                conn.send(list(texts))
                status, payload = conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                _stop()
                raise ExtractionError(f"the extraction process died: {exc}") from exc
            finally:
                with self._state:
                    self._waiting = None
        if status != "ok":
            raise ExtractionError(f"extraction failed: {payload}")
        return [_from_dict(d) for d in payload]
