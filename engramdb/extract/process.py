"""The spaCy pipeline in a helper process, so extraction does not hold this process's GIL.

Parsing is CPU-bound Python and Cython that holds the interpreter lock most of the time: run
in a thread of the writing process it slows the writes themselves (measured in
``bench/results/extract.json``). One helper process per parent process (started on first
use) loads the pipeline and parses batches sent over its stdin/stdout; the parent's thread
only waits on the pipe. Requests are serialised by a lock.

The helper is a plain ``python -c`` subprocess, not a ``multiprocessing`` child: ``spawn``
re-runs the caller's main script in the child, so a script without a ``__main__`` guard
started a second copy of itself in the helper, which died, and every batch in flight
failed. A helper that dies is started again on the next call; the batch in flight raises
:class:`ExtractionInterrupted`, which the engine leaves queued (a killed helper or an
exiting parent is not a failure of the texts). Only an error reported by the NLP step
itself is an :class:`~engramdb.errors.ExtractionError` that parks texts. The helper exits
when its parent closes the pipe or exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import threading
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import Any

from engramdb.errors import ExtractionError
from engramdb.models import Extraction, FoundEntity, FoundRelation


class ExtractionInterrupted(ExtractionError):
    """The helper process died or this process is exiting: the batch was not judged.

    The engine leaves such a batch queued (never parked as failed): the next drain, in
    this process or the next to open the store, extracts it.
    """


class _Helper:
    """The running helper: its process and the two ends of its pipe."""

    def __init__(self, batch_size: int) -> None:
        code = (
            "import sys; sys.path[:0] = sys.argv[2:]; "
            "from engramdb.extract.process import serve_stdio; serve_stdio(int(sys.argv[1]))"
        )
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-c", code, str(batch_size), *paths],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.send = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.recv = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.pid = os.getpid()  # the parent: a forked child never uses its parent's helper

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.send.close()
        self.recv.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_lock = threading.Lock()
_helper: _Helper | None = None
_exiting = False  # set at interpreter exit: no helper is started any more


def serve_stdio(batch_size: int) -> None:  # pragma: no cover - in the helper
    """The helper's loop: texts in on stdin, extractions (as dicts) out, until EOF.

    stdout is the answer channel, so anything the pipeline prints goes to stderr. It runs at
    a lower CPU priority: where cores are short, writes come first and extraction (which
    reads catch up on anyway) takes what is left.
    """
    out_fd = os.dup(1)
    os.dup2(2, 1)
    inbox = Connection(os.dup(0), writable=False)
    outbox = Connection(out_fd, readable=False)
    with contextlib.suppress(OSError):
        os.nice(10)
    from engramdb.extract.entities import EntityExtractor

    extractor = EntityExtractor(batch_size)
    while True:
        try:
            texts = inbox.recv()
        except (EOFError, OSError):
            return
        found: tuple[str, object]
        try:
            found = ("ok", [asdict(x) for x in extractor.extract(texts)])
        except Exception as exc:
            found = ("error", f"{type(exc).__name__}: {exc}")
        try:
            outbox.send(found)
        except OSError:  # the parent is gone (killed or closed): nobody to answer, stop
            return


def _stop() -> None:
    global _helper
    if _helper is not None and _helper.pid == os.getpid():
        _helper.close()
    _helper = None


@atexit.register
def _at_exit() -> None:
    global _exiting
    _exiting = True
    _stop()


def exiting() -> bool:
    """This interpreter is shutting down (no helper is started any more)."""
    return _exiting or sys.is_finalizing()


def _current(batch_size: int) -> _Helper:
    global _helper
    if _helper is not None and (_helper.pid != os.getpid() or not _helper.alive()):
        if _helper.pid == os.getpid():
            _stop()
        _helper = None
    if _helper is None:
        if exiting():
            raise ExtractionInterrupted("the process is exiting; extraction is left queued")
        _helper = _Helper(batch_size)
    return _helper


def _from_dict(d: dict[str, Any]) -> Extraction:
    return Extraction(
        [FoundEntity(**e) for e in d["entities"]],
        [FoundRelation(**r) for r in d["relations"]],
        int(d.get("answer_kinds", 0)),
    )


class ProcessExtractor:
    """:class:`~engramdb.extract.entities.EntityExtractor`'s interface, run in the helper."""

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._state = threading.Lock()  # guards the two fields below
        self._closed = False  # abort() ran: no batch is sent any more
        self._waiting: subprocess.Popen[bytes] | None = None  # the helper awaited now

    def abort(self) -> None:
        """End this extractor: refuse later batches, and interrupt the one awaited now.

        Why: the helper loads the NLP pipeline at a low priority; on a busy machine its
        first batch takes tens of seconds, and a process shutting down (SIGTERM) would wait
        for it. Killing the helper makes the waiting ``extract`` raise
        :class:`ExtractionInterrupted` at once; the batch stays queued in the store for the
        next process. Another extractor's batch is never touched: the helper is killed only
        while this extractor is the one waiting on it.
        """
        with self._state:
            self._closed = True
            proc = self._waiting
        if proc is not None and proc.poll() is None:
            proc.kill()

    def extract(self, texts: list[str]) -> list[Extraction]:
        """Return one extraction per text, parsed in the helper process.

        Raises:
            ExtractionInterrupted: the helper died, or this process is exiting.
            ExtractionError: the NLP step failed (the pipeline is missing, or it raised).
        """
        with _lock:
            if self._closed:
                raise ExtractionInterrupted("the extractor is closed; extraction is left queued")
            helper = _current(self.batch_size)
            with self._state:
                if self._closed:  # abort() ran while the helper started
                    raise ExtractionInterrupted("the extractor is closed")
                self._waiting = helper.proc
            try:
                helper.send.send(list(texts))
                status, payload = helper.recv.recv()
            except (EOFError, OSError) as exc:
                _stop()
                raise ExtractionInterrupted(f"the extraction process died: {exc}") from exc
            finally:
                with self._state:
                    self._waiting = None
        if status != "ok":
            raise ExtractionError(f"extraction failed: {payload}")
        return [_from_dict(d) for d in payload]
