"""Retrieval quality on LoCoMo: one memory per dialogue turn, each question a query.

Every conversation is ingested through the engine the way an agent would, by one of two
write paths (``--write-path``): ``add_messages`` (each session is one call on the
conversation's thread, role = speaker) or ``add`` (each session one batch of dicts, a record
per turn with the conversation's ``thread_id`` and its ``occurred_at``, as an agent that stores
turns itself). A turn's content is ``"<speaker>: <text>"`` plus ``" [image: <caption>]"``
when the turn shared an image; its time is the session's date plus its position in seconds.
Each question with evidence is searched in its own thread with each mode (vector, keyword,
hybrid) and scored against the evidence turns: Recall@1/5/10/20, all-evidence-found@10,
NDCG@10 and MRR, overall and per category, plus end-to-end query latency (query embedding
included). The adversarial questions (category 5, whose answer is not in the conversation as
asked) are scored as their own category and kept out of the overall figures.

The data set is CC BY-NC 4.0: it is read from ``../shared/data/`` and never copied here.

    python -m bench.locomo --data ../shared/data/locomo_dev.json --json bench/results/locomo.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo_dev.json"
DEFAULT_OUT = ROOT / "bench" / "results" / "locomo.json"
CACHE_DIR = ROOT / "bench" / ".cache"
MODES = ("vector", "keyword", "hybrid")
CATEGORIES = {1: "multi_hop", 2: "temporal", 3: "open_domain", 4: "single_hop"}
ADVERSARIAL = 5
WRITE_PATHS = ("add_messages", "add")
KS = (1, 5, 10, 20)
_DIA = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)")


def parse_session_date(text: str) -> datetime:
    """Parse LoCoMo's ``"1:56 pm on 8 May, 2023"`` as an aware datetime (UTC)."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def normalise_evidence(raw: Sequence[str], known: set[str]) -> list[str]:
    """Split and normalise evidence strings; expand ranges; drop ids that name no turn.

    Handles ``"D8:6; D9:17"``, ``"D9:1 D4:4"``, ``"D12:3-D12:5"``, ``"D5:3."``, ``"D:11:26"``
    and zero padding (``"D30:05"``).
    """
    out: list[str] = []
    for item in raw:
        found = [(int(a), int(b)) for a, b in _DIA.findall(str(item))]
        if "-" in str(item) and len(found) == 2 and found[0][0] == found[1][0]:
            sess, lo, hi = found[0][0], found[0][1], found[1][1]
            found = [(sess, n) for n in range(lo, hi + 1)]
        for sess, turn in found:
            did = f"D{sess}:{turn}"
            if did in known and did not in out:
                out.append(did)
    return out


def load_conversations(path: Path) -> list[dict[str, Any]]:
    """Return each sample as turns (with dates and record texts) and scored questions."""
    data = json.loads(path.read_text(encoding="utf-8"))
    convs = []
    for sample in data:
        conv = sample["conversation"]
        sessions = []
        n = 1
        while f"session_{n}" in conv:
            turns = conv[f"session_{n}"]
            if turns:
                when = parse_session_date(conv[f"session_{n}_date_time"])
                sessions.append((when, turns))
            n += 1
        known = {t["dia_id"] for _, turns in sessions for t in turns}
        questions = []
        for qa in sample["qa"]:
            cat = qa.get("category")
            if cat not in CATEGORIES and cat != ADVERSARIAL:
                continue
            evidence = normalise_evidence(qa.get("evidence") or [], known)
            if evidence:
                questions.append(
                    {"question": qa["question"], "category": cat, "evidence": evidence}
                )
        convs.append({"id": sample["sample_id"], "sessions": sessions, "questions": questions})
    return convs


def turn_text(turn: dict[str, Any]) -> str:
    """The memory text of one turn: ``"<speaker>: <text>"`` plus the image caption."""
    text = f"{turn['speaker']}: {turn['text']}"
    if turn.get("blip_caption"):
        text += f" [image: {turn['blip_caption']}]"
    return text


class CachingEmbedder:
    """Development aid: wraps an embedder and caches vectors on disk by text hash."""

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.dim: int = inner.dim
        self.max_tokens: int = inner.max_tokens
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path) as z:
                self.vectors = dict(zip(z["keys"].tolist(), z["vecs"], strict=True))
        self.dirty = False

    def count_tokens(self, text: str) -> int:
        """Delegate to the wrapped embedder."""
        return int(self.inner.count_tokens(text))

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Return cached vectors, embedding (and remembering) the missing texts."""
        keys = [hashlib.sha1(f"{query}|{t}".encode()).hexdigest() for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self.vectors]
        if missing:
            fresh = self.inner.embed([texts[i] for i in missing], query=query)
            for i, vec in zip(missing, fresh, strict=True):
                self.vectors[keys[i]] = np.asarray(vec, np.float32)
            self.dirty = True
        return np.stack([self.vectors[k] for k in keys])

    def save(self) -> None:
        """Write the cache if it grew."""
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys = np.array(list(self.vectors))
            np.savez(self.path, keys=keys, vecs=np.stack(list(self.vectors.values())))


def ingest(mem: Any, conv: dict[str, Any], write_path: str = "add_messages") -> dict[str, str]:
    """Add a conversation session by session; return dia_id -> record id."""
    ids: dict[str, str] = {}
    for when, turns in conv["sessions"]:
        if write_path == "add":
            items = [
                {
                    "text": turn_text(t),
                    "thread_id": conv["id"],
                    "occurred_at": when + timedelta(seconds=i),
                    "metadata": {"role": t["speaker"]},
                }
                for i, t in enumerate(turns)
            ]
            results = mem.add(items)
        else:
            messages = [
                {
                    "role": t["speaker"],
                    "content": turn_text(t),
                    "occurred_at": when + timedelta(seconds=i),
                }
                for i, t in enumerate(turns)
            ]
            results = mem.add_messages(conv["id"], messages)
        for t, res in zip(turns, results, strict=True):
            ids[t["dia_id"]] = res.record.id
    return ids


def ndcg(ranked: list[set[str]], evidence: set[str], k: int) -> float:
    """Binary-relevance NDCG@k over ranked records (each covering a set of turn ids)."""
    dcg = 0.0
    seen: set[str] = set()
    for pos, dias in enumerate(ranked[:k], start=1):
        gain = len((dias & evidence) - seen)
        if gain:
            dcg += min(gain, 1) / math.log2(pos + 1)
            seen |= dias
    ideal = sum(1 / math.log2(p + 1) for p in range(1, min(len(evidence), k) + 1))
    return dcg / ideal if ideal else 0.0


def score(ranked: list[set[str]], evidence: set[str]) -> dict[str, float]:
    """All per-question figures for one ranking."""
    out: dict[str, float] = {}
    for k in KS:
        found: set[str] = set().union(*ranked[:k]) if ranked[:k] else set()
        out[f"recall_at_{k}"] = len(found & evidence) / len(evidence)
    out["all_found_at_10"] = 1.0 if out["recall_at_10"] == 1.0 else 0.0
    out["ndcg_at_10"] = ndcg(ranked, evidence, 10)
    rr = 0.0
    for pos, dias in enumerate(ranked, start=1):
        if dias & evidence:
            rr = 1.0 / pos
            break
    out["mrr"] = rr
    return out


def mean_figures(rows: list[dict[str, float]]) -> dict[str, float]:
    """Average each figure over questions."""
    if not rows:
        return {}
    return {key: round(sum(r[key] for r in rows) / len(rows), 4) for key in rows[0]}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, 0 when empty."""
    return float(np.percentile(values, q)) if values else 0.0


Rankings = dict[str, list[tuple[str, int, set[str], list[str]]]]


def search_all(
    mem: Any, convs: list[dict[str, Any]], modes: Sequence[str]
) -> tuple[Rankings, dict[str, list[float]]]:
    """Every question in every mode, each in its own thread: the ranked record ids and
    the latency (ms) of each search, per mode."""
    rankings: Rankings = {m: [] for m in modes}
    latency: dict[str, list[float]] = {m: [] for m in modes}
    # The hybrid mode (the default) runs first, so its latency includes embedding the query.
    order = sorted(modes, key=lambda m: m != "hybrid")
    for conv in convs:
        for q in conv["questions"]:
            for mode in order:
                start = time.perf_counter()
                page = mem.search(q["question"], thread_id=conv["id"], top_k=20, mode=mode)
                latency[mode].append((time.perf_counter() - start) * 1000)
                ids = [h.record.id for h in page.hits]
                rankings[mode].append((conv["id"], q["category"], set(q["evidence"]), ids))
    return rankings, latency


def turns_of(mapping: dict[str, dict[str, str]]) -> dict[str, dict[str, set[str]]]:
    """Per conversation: record id -> the dialogue turns (dia ids) it holds."""
    out: dict[str, dict[str, set[str]]] = {}
    for conv_id, ids in mapping.items():
        held: dict[str, set[str]] = {}
        for did, rid in ids.items():
            held.setdefault(rid, set()).add(did)
        out[conv_id] = held
    return out


def credit_merges(
    held: dict[str, dict[str, set[str]]], merged_into: dict[str, str]
) -> dict[str, dict[str, set[str]]]:
    """The turns each record holds once merged records are credited to their survivors.

    A record merged away holds nothing any more; its survivor (followed through any chain
    of merges) holds its turns as well as its own (see :func:`run` for why that is fair).
    """
    out: dict[str, dict[str, set[str]]] = {}
    for conv_id, records in held.items():
        moved: dict[str, set[str]] = {}
        for rid, dias in records.items():
            seen = {rid}
            while rid in merged_into and merged_into[rid] not in seen:
                rid = merged_into[rid]
                seen.add(rid)
            moved.setdefault(rid, set()).update(dias)
        out[conv_id] = moved
    return out


def score_all(
    rankings: Rankings, held: dict[str, dict[str, set[str]]]
) -> dict[str, list[tuple[int, dict[str, float]]]]:
    """Each mode's per-question figures, a record counting for the turns it holds."""
    out: dict[str, list[tuple[int, dict[str, float]]]] = {}
    for mode, rows in rankings.items():
        out[mode] = [
            (cat, score([held[conv_id].get(rid, set()) for rid in ids], evidence))
            for conv_id, cat, evidence, ids in rows
        ]
    return out


def by_conversation(
    rankings: Rankings, per_mode: dict[str, list[tuple[int, dict[str, float]]]]
) -> dict[str, dict[str, dict[str, float]]]:
    """Each mode's Recall@10 and NDCG@10 per conversation (adversarial apart), from the
    per-question figures of :func:`score_all` (in the order of ``rankings``): a change that
    gains overall but loses in some conversation fits a few questions, not the data."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode, rows in rankings.items():
        groups: dict[str, dict[bool, list[dict[str, float]]]] = {}
        for (conv_id, *_), (cat, figures) in zip(rows, per_mode[mode], strict=True):
            groups.setdefault(conv_id, {True: [], False: []})[cat == ADVERSARIAL].append(figures)
        out[mode] = {}
        for conv_id, parts in groups.items():
            main, adv = mean_figures(parts[False]), mean_figures(parts[True])
            out[mode][conv_id] = {
                "questions": len(parts[False]),
                "recall_at_10": main.get("recall_at_10", 0.0),
                "ndcg_at_10": main.get("ndcg_at_10", 0.0),
                "adversarial_recall_at_10": adv.get("recall_at_10", 0.0),
            }
    return out


def mode_entries(
    per_mode: dict[str, list[tuple[int, dict[str, float]]]],
    latency: dict[str, list[float]],
    modes: Sequence[str],
) -> tuple[dict[str, Any], dict[str, float]]:
    """The report's ``modes`` section (overall, per category, latency) and its summary."""
    entries: dict[str, Any] = {}
    summary: dict[str, float] = {}
    for mode in modes:
        rows = per_mode[mode]
        scored = [r for c, r in rows if c != ADVERSARIAL]
        entry: dict[str, Any] = {"overall": mean_figures(scored), "by_category": {}}
        for cat, name in {**CATEGORIES, ADVERSARIAL: "adversarial"}.items():
            sub = [r for c, r in rows if c == cat]
            entry["by_category"][name] = {"questions": len(sub), **mean_figures(sub)}
        entry["latency_ms"] = {
            "p50": round(percentile(latency[mode], 50), 2),
            "p95": round(percentile(latency[mode], 95), 2),
        }
        entries[mode] = entry
        for key, value in entry["overall"].items():
            summary[f"{mode}_{key}"] = value
        adv = entry["by_category"]["adversarial"]
        for key in ("recall_at_10", "ndcg_at_10"):
            summary[f"{mode}_adversarial_{key}"] = adv.get(key, 0.0)
        summary[f"{mode}_search_p50_ms"] = entry["latency_ms"]["p50"]
        summary[f"{mode}_search_p95_ms"] = entry["latency_ms"]["p95"]
    return entries, summary


def consolidate_and_score(
    mem: Any,
    convs: list[dict[str, Any]],
    modes: Sequence[str],
    held: dict[str, dict[str, set[str]]],
    before: Rankings,
) -> dict[str, Any]:
    """Run ``consolidate()`` on the namespace, search again, and score the new rankings.

    Returns the ``after_consolidation`` section: what consolidation did, every mode's
    figures with merged turns credited to their survivors, and the strict overall figures
    (merged turns never found), plus how many questions' evidence was merged away.
    """
    t0 = time.perf_counter()
    rep = mem.consolidate()
    seconds = time.perf_counter() - t0
    merged_into = {x: m.survivor_id for m in rep.merges for x in m.merged_ids}
    rankings, latency = search_all(mem, convs, modes)
    credited = credit_merges(held, merged_into)
    entries, summary = mode_entries(score_all(rankings, credited), latency, modes)
    strict = score_all(
        rankings,
        {c: {r: d for r, d in recs.items() if r not in merged_into} for c, recs in held.items()},
    )
    merged_dias = {
        d for recs in held.values() for r, ds in recs.items() if r in merged_into for d in ds
    }
    first = modes[0]
    touched = sum(1 for _, _, ev, _ in before[first] if ev & merged_dias)
    return {
        "consolidation": {
            "seconds": round(seconds, 2),
            "merges": len(rep.merges),
            "merged_away": len(merged_into),
            "summaries": len(rep.summaries),
            "archived": len(rep.archived),
            "expired": len(rep.expired),
            "skipped": len(rep.skipped),
            "questions_with_merged_evidence": touched,
        },
        "modes": entries,
        "strict_overall": {
            m: mean_figures([r for c, r in strict[m] if c != ADVERSARIAL]) for m in modes
        },
        "summary": summary,
    }


def run(
    data: Path,
    modes: Sequence[str],
    cache: bool,
    db: Path | None,
    url: str | None = None,
    embedder_name: str = "minilm",
    write_path: str = "add_messages",
    settings: dict[str, Any] | None = None,
    consolidate: bool = False,
) -> dict[str, Any]:
    """Ingest every conversation, run every question in every mode, return the report.

    ``url``: run on that store (e.g. an empty PostgreSQL database) instead of a SQLite file.
    ``embedder_name``: a settings name (``minilm``, ``minilm-torch``, ``minilm-int8``).
    ``write_path``: ``add_messages`` or ``add`` (see the module docstring).
    ``settings``: Settings fields to run with (e.g. a ranking switch), recorded in the report.
    ``consolidate``: after the questions, run ``consolidate()`` over the namespace and ask
    them all again; the report's ``after_consolidation`` holds the second figures beside
    the first (``modes``), from the same ingest in the same run.

    Scoring after consolidation. A merge archives near-duplicates and keeps one survivor
    (the richest text, with the others' tags and metadata): the merged records leave search,
    and the survivor stands for them. So a turn whose record was merged counts as found when
    its survivor is retrieved (``merged_into`` is followed through chains). That is the
    rule a user of the merged memory lives with: the fact is still there, under the
    survivor's words. It can only credit turns the merge itself judged the same content,
    and the survivor still takes one place in the ranking. Because it could flatter a
    merge that joined two different statements, the strict figures (``strict_overall``:
    a merged turn is never found) and the number of questions whose evidence was merged
    are reported as well. A summary record holds no turn: it takes a place in the ranking
    and counts for nothing (crediting it with its thread would make every question a hit).
    Turns are never merged, through either write path, so on LoCoMo's conversations alone
    consolidation merges nothing; the crediting is for runs that merge other records.
    """
    from engramdb import Memory, Settings
    from engramdb.embedders.base import resolve_embedder

    convs = load_conversations(data)
    base = resolve_embedder(embedder_name, Settings(embedder=embedder_name))
    # One vector cache per embedder: int8 vectors differ from the (shared) fp32 ones.
    cache_file = "locomo_vectors.npz" if base.name.endswith("L6-v2") else "locomo_int8.npz"
    embedder: Any = CachingEmbedder(base, CACHE_DIR / cache_file) if cache else base
    tmp = tempfile.TemporaryDirectory(prefix="engram-locomo-")
    path = db or Path(tmp.name) / "locomo.db"
    embedder.embed(["warm up"])
    t0 = time.perf_counter()
    opts = Settings(**(settings or {}))
    after: dict[str, Any] | None = None
    with Memory(
        url or f"sqlite:///{path}", namespace="locomo", embedder=embedder, settings=opts
    ) as mem:
        if mem.count():
            raise SystemExit(f"namespace 'locomo' of {url or path} is not empty")
        mapping = {}
        turns = 0
        for conv in convs:
            ids = ingest(mem, conv, write_path)
            turns += len(ids)
            mapping[conv["id"]] = ids
        if opts.extract != "off":
            # Entity reads catch up the extraction queue: every turn's entities are known
            # before the first question, whatever the machine's speed.
            mem.entities(limit=1)
        ingest_s = time.perf_counter() - t0
        held = turns_of(mapping)
        rankings, latency = search_all(mem, convs, modes)
        if consolidate:
            after = consolidate_and_score(mem, convs, modes, held, rankings)
    if cache:
        embedder.save()
    tmp.cleanup()
    per_mode = score_all(rankings, held)
    entries, summary = mode_entries(per_mode, latency, modes)
    for mode, convs_figures in by_conversation(rankings, per_mode).items():
        entries[mode]["by_conversation"] = convs_figures
    report: dict[str, Any] = {
        "data": str(data),
        "store": "postgresql" if url and url.startswith("postgres") else "sqlite",
        "conversations": len(convs),
        "turns": turns,
        "questions": sum(1 for c, _ in per_mode[modes[0]] if c != ADVERSARIAL),
        "adversarial_questions": sum(1 for c, _ in per_mode[modes[0]] if c == ADVERSARIAL),
        "ingest_seconds": round(ingest_s, 2),
        "cached_vectors": cache,
        "embedder": {"setting": embedder_name, "name": base.name},
        "write_path": write_path,
        "settings": settings or {},
        "modes": entries,
    }
    main_mode = "hybrid" if "hybrid" in modes else modes[0]
    summary["search_p50_ms"] = summary[f"{main_mode}_search_p50_ms"]
    summary["search_p95_ms"] = summary[f"{main_mode}_search_p95_ms"]
    if after is not None:
        report["after_consolidation"] = after
        for mode in modes:
            for key in ("recall_at_10", "ndcg_at_10", "adversarial_recall_at_10"):
                summary[f"{mode}_consolidated_{key}"] = after["summary"][f"{mode}_{key}"]
            summary[f"{mode}_consolidated_strict_recall_at_10"] = after["strict_overall"][mode][
                "recall_at_10"
            ]
    report["summary"] = summary
    return report


def main(argv: list[str]) -> int:
    """Run the LoCoMo benchmark; write the JSON report and print the headline figures."""
    parser = argparse.ArgumentParser(prog="engramdb bench locomo", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="locomo JSON file")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT, help="where to write results")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: vector,keyword,hybrid"
    )
    parser.add_argument(
        "--cache",
        action="store_true",
        help="development only: cache embeddings under bench/.cache/ (not for reported runs)",
    )
    parser.add_argument("--db", type=Path, default=None, help="keep the SQLite file here")
    parser.add_argument(
        "--embedder",
        default="minilm",
        choices=["minilm", "minilm-torch", "minilm-int8"],
        help="minilm (ONNX Runtime), minilm-torch (same vectors via torch) or minilm-int8",
    )
    parser.add_argument(
        "--url", default=None, help="run on this store URL instead (its 'locomo' namespace empty)"
    )
    parser.add_argument(
        "--write-path",
        default="add_messages",
        choices=list(WRITE_PATHS),
        help="add_messages (a call per session) or add (a batch of dicts per session)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a Settings field to run with (repeatable), e.g. --set entity_ranking=false",
    )
    parser.add_argument(
        "--consolidate",
        action="store_true",
        help="then run consolidate() and ask every question again: figures before and after "
        "(merged turns count when their survivor is found; see run())",
    )
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected NAME=VALUE")
        overrides[name.strip()] = value.strip()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        parser.error(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
    if not args.data.exists():
        parser.error(f"{args.data} not found (the LoCoMo file is read from ../shared/data/)")
    report = run(
        args.data,
        modes,
        args.cache,
        args.db,
        args.url,
        args.embedder,
        write_path=args.write_path,
        settings=overrides,
        consolidate=args.consolidate,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    s = report["summary"]
    print(
        f"LoCoMo ({report['write_path']}): {report['questions']} questions "
        f"(+{report['adversarial_questions']} adversarial) over {report['turns']} turns"
    )
    for mode in modes:
        o = report["modes"][mode]["overall"]
        cats = " ".join(
            f"{name}={report['modes'][mode]['by_category'][name].get('recall_at_10', 0):.3f}"
            for name in [*CATEGORIES.values(), "adversarial"]
        )
        print(
            f"  {mode:8s} R@1 {o['recall_at_1']:.3f} R@5 {o['recall_at_5']:.3f} "
            f"R@10 {o['recall_at_10']:.3f} R@20 {o['recall_at_20']:.3f} "
            f"all@10 {o['all_found_at_10']:.3f} NDCG@10 {o['ndcg_at_10']:.3f} "
            f"MRR {o['mrr']:.3f} | R@10 {cats}"
        )
    print(f"  search p50 {s['search_p50_ms']:.1f} ms, p95 {s['search_p95_ms']:.1f} ms")
    after = report.get("after_consolidation")
    if after:
        c = after["consolidation"]
        print(
            f"  consolidate(): {c['merges']} merges ({c['merged_away']} records merged away), "
            f"{c['summaries']} summaries, {c['archived']} archived in {c['seconds']:.1f}s; "
            f"{c['questions_with_merged_evidence']} questions' evidence merged"
        )
        for mode in modes:
            o = after["modes"][mode]["overall"]
            adv = after["modes"][mode]["by_category"]["adversarial"].get("recall_at_10", 0)
            print(
                f"  {mode:8s} after: R@10 {o['recall_at_10']:.3f} NDCG@10 {o['ndcg_at_10']:.3f} "
                f"adversarial R@10 {adv:.3f} (strict R@10 "
                f"{after['strict_overall'][mode]['recall_at_10']:.3f})"
            )
    print(f"  written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
