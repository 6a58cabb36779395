"""Search speed of two source trees on one store, side by side: ``search-pair``.

Why: a change to the search path is judged against the code before it, on the same store and
in the same run. The machine is shared and noisy, so the same figure from two runs of
``store`` differs by more than most changes do; a pair alternated round by round does not.

The store workload (``bench.data``) is loaded once into a SQLite store by this tree, with
entity extraction off (the pair compares the search path, not a backlog sharing the cores),
its ANN graphs and derived keyword index built and saved. Each tree gets its own copy of the
files, and first opens it once untimed (``--prepare``): a tree ignores sidecars of a format
it does not know and rebuilds them, graphs included, which must not fall in a round. Then,
round after round, each tree in turn runs :mod:`bench.search_pair_child` in a fresh
process with that tree first on ``sys.path``: the same queries in vector and hybrid mode,
filtered to the asking user and not, query vectors given (nothing is embedded). The child is
this tree's file; the other tree needs ``engramdb``, ``bench.data``, ``bench.store`` and
``bench.synthetic``.

Output ``search_pair.json`` (``search_pair_1m.json`` and the like above 100k records, see
``bench.synthetic``): each tree's p50/p95 per round, their medians over the rounds,
and the ratio ``head / base`` of those medians (below 1: this tree is faster).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import finish, log, machine
from bench.data import store_config
from bench.store import LookupEmbedder, embedder_name, wait_for_ann, wait_for_keyword_index
from bench.synthetic import result_name, workload

HERE = Path(__file__).resolve().parent
HEAD = HERE.parent
FIGURES = ("vector_filtered", "vector_unfiltered", "hybrid_filtered", "hybrid_unfiltered")


def build(path: Path, workload_args: dict[str, Any]) -> dict[str, Any]:
    """Write the workload's records into a new store at ``path`` and let its derived indexes
    finish; return what waiting for them took."""
    from engramdb import Memory, Settings

    cfg = store_config(**workload_args)
    w = workload(cfg)
    vectors = np.concatenate([w.vectors, w.add_vectors])
    emb = LookupEmbedder(embedder_name(cfg), w.texts + w.add_texts, vectors)
    settings = Settings(extract="off")
    with Memory(f"sqlite:///{path}", embedder=emb, settings=settings) as mem:
        for start in range(0, len(w.texts), 1000):
            end = min(len(w.texts), start + 1000)
            mem.add(
                [
                    {"text": w.texts[i], "user_id": w.user_name(int(w.users[i]))}
                    for i in range(start, end)
                ]
            )
        users = [w.user_name(int(u)) for u in w.query_users]
        ann = wait_for_ann(mem, w.query_vectors[0], users)
        kindex = wait_for_keyword_index(mem, w.query_texts[0], w.query_vectors[0])
    return {"ann": ann, "keyword_index": kindex}


def built_store(folder: Path, workload_args: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The store of the workload in ``folder`` (``made/pair.db``), built unless an earlier
    run left one of the same workload there (``made.json`` says which); with what building
    it took, marked ``reused`` when it was kept."""
    made = folder / "made" / "pair.db"
    record = folder / "made.json"
    kept = json.loads(record.read_text()) if record.exists() else None
    if kept is not None and kept.get("workload") == workload_args and made.exists():
        log(f"reusing the store built in {made.parent}")
        return made, {**kept["build"], "reused": True}
    shutil.rmtree(made.parent, ignore_errors=True)
    made.parent.mkdir(parents=True)
    log(f"building the store ({store_config(**workload_args).records} records, no extraction)")
    built = build(made, workload_args)
    record.write_text(json.dumps({"workload": workload_args, "build": built}))
    return made, built


def workload_options(
    records: int, quick: bool, hash_vectors: bool, users: int | None, queries: int | None
) -> dict[str, Any]:
    """The store workload's options as its builder takes them and ``made.json`` keeps them."""
    return {
        "records": records,
        "quick": quick,
        "hash_vectors": hash_vectors,
        "users": users,
        "queries": queries,
    }


@contextlib.contextmanager
def store_copies(
    workdir: Path | None, workload_args: dict[str, Any], names: Sequence[str], prefix: str
) -> Iterator[tuple[dict[str, Path], dict[str, Any]]]:
    """A fresh copy of the workload's store per name (``DIR/<name>/pair.db``), and what
    building the store took: in ``workdir``, where the store is kept and reused
    (:func:`built_store`), or in a temporary folder removed on exit."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        else:
            folder = workdir.resolve()
            folder.mkdir(parents=True, exist_ok=True)
        made, built = built_store(folder, workload_args)
        # The build's objects are cycles (a closed Memory and its workers): collected now, not
        # left holding gigabytes of memory the copies' page cache needs afterwards.
        gc.collect()
        copies = {}
        for name in names:
            shutil.rmtree(folder / name, ignore_errors=True)
            shutil.copytree(made.parent, folder / name)
            copies[name] = folder / name / made.name
        yield copies, built


@dataclass
class PairQueries:
    """The workload's queries as a benchmark on the pair's store asks them, and a sample of
    the store's own texts."""

    texts: list[str]
    vectors: np.ndarray
    users: list[str]
    sample: list[str]


@contextlib.contextmanager
def searched_copy(
    workdir: Path | None, workload_args: dict[str, Any], name: str, report: dict[str, Any]
) -> Iterator[tuple[Any, PairQueries]]:
    """A copy of the pair's store opened with extraction off, its ANN graphs and derived
    keyword index ready, with the workload's queries: what ``keyword-floor`` and
    ``core-share`` search. What building and waiting took goes into ``report``."""
    from engramdb import Memory, Settings

    cfg = store_config(**workload_args)
    with store_copies(workdir, workload_args, (name,), f"engram-{name}-") as (copies, built):
        report["build"] = built
        w = workload(cfg)
        q = PairQueries(
            list(w.query_texts),
            np.array(w.query_vectors),
            [w.user_name(int(u)) for u in w.query_users],
            list(w.texts[:512]),
        )
        emb = LookupEmbedder(embedder_name(cfg), q.texts, q.vectors)
        del w
        gc.collect()
        settings = Settings(extract="off")
        with Memory(f"sqlite:///{copies[name]}", embedder=emb, settings=settings) as mem:
            report["ann"] = wait_for_ann(mem, q.vectors[0], q.users)
            report["keyword_index"] = wait_for_keyword_index(mem, q.texts[0], q.vectors[0])
            yield mem, q


def run_child(
    tree: Path, store: Path, workload_args: dict[str, Any], prepare: bool = False
) -> dict[str, Any]:
    """One round of one tree (or its preparation run): the child's JSON figures."""
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1")
    args = [str(HERE / "search_pair_child.py"), str(store), json.dumps(workload_args)]
    proc = subprocess.run(
        [sys.executable, *args, *(["--prepare"] if prepare else [])],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=str(tree),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"search-pair child in {tree} failed:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def summarise(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median over the rounds of each figure's p50 and p95."""
    return {
        fig: {
            q: round(statistics.median(r[fig][q] for r in rounds), 3) for q in ("p50_ms", "p95_ms")
        }
        for fig in FIGURES
    }


def main(
    out: Path,
    base: Path,
    records: int,
    quick: bool,
    hash_vectors: bool,
    *,
    rounds: int = 3,
    users: int | None = None,
    queries: int | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Build the store, run ``rounds`` alternated rounds of both trees, write the JSON.

    ``workdir``: where the built store is kept (a temporary folder otherwise). A store
    built there by an earlier run of the same workload is reused: a million records take
    half an hour to load and index. The trees' copies are made and prepared again each run.
    """
    base = base.resolve()
    if not (base / "engramdb").is_dir():
        raise SystemExit(f"--base {base} holds no engramdb package (a checkout of the project)")
    workload_args = workload_options(records, quick, hash_vectors, users, queries)
    report: dict[str, Any] = {
        "benchmark": "search_pair",
        "machine": machine(),
        "config": {**workload_args, "rounds": rounds, "base": str(base), "head": str(HEAD)},
    }
    with store_copies(workdir, workload_args, ("base", "head"), "engram-pair-") as (copies, built):
        report["build"] = built
        trees = {"base": base, "head": HEAD}
        # Each tree first brings its copy's sidecars to its own format, outside the timing.
        report["prepare"] = {
            side: run_child(trees[side], copies[side], workload_args, prepare=True)
            for side in ("base", "head")
        }
        figures: dict[str, list[dict[str, Any]]] = {"base": [], "head": []}
        for r in range(rounds):
            order = ("base", "head") if r % 2 == 0 else ("head", "base")
            for side in order:
                got = run_child(trees[side], copies[side], workload_args)
                figures[side].append(got)
                log(f"round {r + 1} {side}: " + json.dumps({k: got[k] for k in FIGURES}))
    report["rounds"] = figures
    medians = {side: summarise(rows) for side, rows in figures.items()}
    report["median"] = medians
    report["summary"] = {
        f"{fig}_{q}_ratio_head_vs_base": round(medians["head"][fig][q] / medians["base"][fig][q], 3)
        for fig in FIGURES
        for q in ("p50_ms", "p95_ms")
    }
    name = result_name("search_pair", store_config(**workload_args).records)
    return finish(report, out, name, quick)
