"""The supervisor of ``engramdb serve --workers N``: uvicorn's, with a liveness check that
notices a dead worker at once.

uvicorn checks a worker by sending it a ping and waiting up to
``timeout_worker_healthcheck`` for the answer. The service sets that wait long, because a
worker answers only after it has imported the whole stack (``connections.uvicorn_options``).
A worker killed while a ping to it is in flight (the OOM killer, an operator's ``kill -9``)
never answers, and its pipe never reports the death, since the supervisor holds the pipe's
other end too: its replacement waited out the whole timeout, while the service ran a worker
short. Here the wait for an answer is cut into short slices, each of which first asks the
operating system whether the process still exists.

Everything else (startup, signals, restarts, shutdown) is uvicorn's own ``Multiprocess``.
This module reads its ``Process`` internals (``parent_conn``, ``process``), which is why
``pyproject.toml`` bounds uvicorn's version.
"""

from __future__ import annotations

import logging
import pickle
import time
from socket import socket

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")

# How often a wait for a worker's answer checks that the worker still exists.
DEATH_CHECK_S = 0.25


def answers(worker: Process, timeout: float) -> bool:
    """Whether ``worker`` is alive and answers a ping within ``timeout`` seconds.

    False as soon as its process is found gone, however much of the timeout is left.
    """
    if not worker.process.is_alive():
        return False
    conn = worker.parent_conn
    try:
        conn.send(b"ping")
        deadline = time.monotonic() + timeout
        while True:
            if conn.poll(DEATH_CHECK_S):
                conn.recv()  # the startup flag: any answer means the worker is alive
                return True
            if not worker.process.is_alive() or time.monotonic() >= deadline:
                return False
    except (OSError, EOFError, pickle.UnpicklingError):
        return False


class Supervisor(Multiprocess):
    """uvicorn's multiprocess supervisor with :func:`answers` as its liveness check.

    ``keep_subprocess_alive`` is uvicorn's loop (0.55) with that one check changed: a
    worker that does not answer is killed and joined; one that failed during startup stops
    the service (every restart would fail the same way); any other is replaced.
    """

    def keep_subprocess_alive(self) -> None:
        """Replace each worker that is dead or does not answer within the healthcheck."""
        if self.should_exit.is_set():
            return
        for idx, worker in enumerate(self.processes):
            if answers(worker, self.config.timeout_worker_healthcheck):
                continue
            worker.kill()  # hung, or already gone: make sure, then reap it
            worker.join()
            if worker.exitcode == STARTUP_FAILURE:
                logger.error(f"Child process [{worker.pid}] failed to start, stopping the parent.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{worker.pid}] died")
            replacement = Process(self.config, self.sockets)
            replacement.start()
            self.processes[idx] = replacement


def supervise(config: Config) -> None:
    """Serve ``config`` (``workers`` > 1, an import-string app) until SIGINT or SIGTERM."""
    sock: socket = config.bind_socket()
    Supervisor(config, sockets=[sock]).run()
