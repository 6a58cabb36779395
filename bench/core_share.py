"""Search beside a busy second core: ``core-share``.

Why: with entity extraction in its default mode, a bulk load leaves a backlog that the
spaCy helper works off on the machine's other core while searches run. ``bench store``
reports hybrid search with that backlog running and with it stopped, and on a two-core
machine the first is slower. This benchmark tells whether the difference is the search's
(waiting for a lock, for the interpreter, for a write) or the machine's (two cores sharing
caches and memory), by timing the same searches beside neighbours that share nothing with
the search but the hardware:

- ``none``: nothing else runs;
- ``spin``: a pure-Python counting loop in another process (almost no memory traffic);
- ``numpy``: a matrix product over 8 MB operands in another process;
- ``spacy``: the extraction helper's own pipeline parsing the workload's texts in a loop in
  another process, its results thrown away (the backlog without any write to the store).

Each neighbour is a separate process at the extraction helper's priority (nice 10), started
once, and frozen (``SIGSTOP``) except during its blocks. Every search records its wall time
and its thread's own CPU time (``time.thread_time``): where both rise together the search was
not waiting for anything, each of its instructions ran slower. Blocks of
:data:`bench.store.SEARCH_BLOCK` queries rotate over the neighbours, per mode (hybrid,
vector) and scope (filtered to the asking user, whole namespace).

The store is ``search-pair``'s (``--workdir`` keeps and reuses it), built with extraction
off, and searched in a copy. Output ``core_share.json`` (``core_share_1m.json`` at a
million records).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import finish, latency, log, machine
from bench.data import store_config
from bench.search_pair import searched_copy, workload_options
from bench.store import SEARCH_BLOCK, K
from bench.synthetic import result_name

NEIGHBOURS = ("none", "spin", "numpy", "spacy")
MODES = ("hybrid", "vector")
NICE = 10  # the extraction helper's (engramdb.extract.process.serve_stdio)

# Each neighbour's loop; it prints "ready" once it is about to start its work.
_SPIN = "x = 0\nprint('ready', flush=True)\nwhile True:\n    x += 1\n"
_NUMPY = (
    "import numpy as np\n"
    "a = np.random.default_rng(0).random((1024, 1024)); b = a.T.copy()\n"
    "print('ready', flush=True)\n"
    "while True:\n    a @ b\n"
)
_SPACY = (
    "import sys\n"
    "from engramdb.extract.entities import EntityExtractor\n"
    "texts = [t for t in sys.stdin.read().split('\\x1e') if t]\n"
    "ex = EntityExtractor(64)\n"
    "ex.extract(texts[:8])\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    for i in range(0, len(texts), 64):\n"
    "        ex.extract(texts[i : i + 64])\n"
)
_CODE = {"spin": _SPIN, "numpy": _NUMPY, "spacy": _SPACY}


class _Neighbour:
    """A busy process at the helper's priority, frozen until :meth:`running`."""

    def __init__(self, name: str, texts: list[str]) -> None:
        body = f"import os\nos.nice({NICE})\n" + _CODE[name]
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", body],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\x1e".join(texts) if name == "spacy" else "")
        self.proc.stdin.close()
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise SystemExit(f"the {name} neighbour did not start (said {line!r})")
        os.kill(self.proc.pid, signal.SIGSTOP)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        os.kill(self.proc.pid, signal.SIGCONT)
        try:
            time.sleep(0.05)  # let it reach its loop on the other core
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def cpu_seconds(self) -> float:
        """CPU time the neighbour has used so far (from /proc; 0 where there is none)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()


def _time_blocks(
    mem: Any,
    neighbours: dict[str, _Neighbour | None],
    texts: list[str],
    vectors: np.ndarray,
    users: list[str],
) -> tuple[dict[tuple[str, str, bool], list[float]], dict[tuple[str, str, bool], list[float]]]:
    """Wall and thread-CPU seconds per search, per (neighbour, mode, filtered)."""
    keys = [(n, m, f) for n in NEIGHBOURS for m in MODES for f in (True, False)]
    wall: dict[tuple[str, str, bool], list[float]] = {k: [] for k in keys}
    cpu: dict[tuple[str, str, bool], list[float]] = {k: [] for k in keys}
    nq = len(texts)
    for b, start in enumerate(range(0, nq, SEARCH_BLOCK)):
        turn = b % len(NEIGHBOURS)
        for name in NEIGHBOURS[turn:] + NEIGHBOURS[:turn]:
            neighbour = neighbours[name]
            block = range(start, min(nq, start + SEARCH_BLOCK))
            with neighbour.running() if neighbour else contextlib.nullcontext():
                for mode, filtered, i in itertools.product(MODES, (True, False), block):
                    c0, t0 = time.thread_time(), time.perf_counter()
                    user = users[i] if filtered else None
                    mem.search(texts[i], top_k=K, user_id=user, mode=mode, query_vector=vectors[i])
                    wall[(name, mode, filtered)].append(time.perf_counter() - t0)
                    cpu[(name, mode, filtered)].append(time.thread_time() - c0)
    return wall, cpu


def main(
    out: Path,
    records: int,
    quick: bool,
    hash_vectors: bool,
    *,
    users: int | None = None,
    queries: int | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the store, time the searches beside each neighbour, write the JSON."""
    workload_args = workload_options(records, quick, hash_vectors, users, queries)
    report: dict[str, Any] = {
        "benchmark": "core_share",
        "machine": machine(),
        "config": dict(workload_args),
        "neighbour_nice": NICE,
    }
    cfg = store_config(**workload_args)  # type: ignore[arg-type]
    with searched_copy(workdir, workload_args, "share", report) as (mem, q):
        texts = q.texts
        log("starting the neighbours (spaCy loads its pipeline)")
        started: dict[str, _Neighbour | None] = {"none": None}
        try:
            for name in NEIGHBOURS[1:]:
                started[name] = _Neighbour(name, q.sample)
            report["neighbour_pids"] = {n: p.proc.pid for n, p in started.items() if p}
            for i in range(min(len(texts), 2 * SEARCH_BLOCK)):  # warm-up
                for mode in MODES:
                    mem.search(texts[i], top_k=K, mode=mode, query_vector=q.vectors[i])
            log(f"timing {len(texts)} queries beside {len(NEIGHBOURS)} neighbours")
            before = {n: p.cpu_seconds() for n, p in started.items() if p}
            t0 = time.perf_counter()
            wall, cpu = _time_blocks(mem, started, texts, q.vectors, q.users)
            elapsed = time.perf_counter() - t0
            report["neighbour_cpu_s"] = {
                n: round(p.cpu_seconds() - before[n], 2) for n, p in started.items() if p
            }
            report["elapsed_s"] = round(elapsed, 1)
        finally:
            for neighbour in started.values():
                if neighbour:
                    neighbour.close()
    report["latency"] = {
        f"{n}_{m}_{'filtered' if f else 'unfiltered'}": {
            "wall": latency(wall[(n, m, f)]),
            "cpu": latency(cpu[(n, m, f)]),
        }
        for (n, m, f) in wall
    }
    summary: dict[str, Any] = {"records": cfg.records, "queries": len(texts)}
    for (n, m, f), samples in wall.items():
        scope = "filtered" if f else "unfiltered"
        for q in (50, 95):
            summary[f"{n}_{m}_{scope}_p{q}_ms"] = round(float(np.percentile(samples, q)) * 1000, 3)
            summary[f"{n}_{m}_{scope}_cpu_p{q}_ms"] = round(
                float(np.percentile(cpu[(n, m, f)], q)) * 1000, 3
            )
        if n != "none":
            base = float(np.percentile(wall[("none", m, f)], 95))
            summary[f"{n}_{m}_{scope}_p95_vs_none"] = round(
                float(np.percentile(samples, 95)) / base, 3
            )
    report["summary"] = summary
    return finish(report, out, result_name("core_share", cfg.records), quick)
