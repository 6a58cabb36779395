"""The store benchmark's workload: generated chat-like sentences, zipf-sized users, vectors.

Everything is deterministic from :class:`DataConfig` (a seeded RNG over templates and a small
vocabulary), so the same config gives the same texts on every machine. Vectors come from the
real all-MiniLM-L6-v2 (ONNX Runtime, batch 64, 2 threads) and are cached as float32 ``.npy`` files
under ``bench/.cache/`` keyed by a hash of the config; ``hash_vectors=True`` uses the
model-free :class:`engramdb.HashEmbedder` instead (smoke runs only).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.common import CACHE_DIR, log

GENERATOR_VERSION = 1


def _phrases(text: str, sep: str = "|") -> tuple[str, ...]:
    return tuple(text.split(sep))


PEOPLE = _phrases(
    "Alice Bob Carla Dmitri Elena Farid Grace Hiro Ines Jamal Kenji Lena Marco Nadia Omar "
    "Priya Quentin Rosa Sven Tara Umar Vera Wes Ximena Yusuf Zoe Aunt-May my-boss Dr-Patel "
    "the-landlord my-sister my-brother Coach-Riley our-neighbour Professor-Lin",
    " ",
)
RELATIONS = _phrases(
    "friend cousin colleague partner sister brother neighbour manager roommate", " "
)
PLACES = _phrases(
    "bakery gym office airport station library beach park clinic market cafe museum garage "
    "school stadium hotel harbour cinema bookshop pharmacy restaurant farm studio lake "
    "bistro arcade campsite gallery bank post-office",
    " ",
)
OBJECTS = _phrases(
    "the blue bicycle|a vegan lasagna|the quarterly report|my passport|the concert tickets|"
    "a used camera|the rent contract|a sourdough starter|the hiking boots|a birthday cake|"
    "the team offsite|the piano lessons|a flight to Lisbon|the dentist appointment|"
    "the garden hose|a new laptop|the wedding playlist|the car insurance|a yoga mat|"
    "the tax forms|a chess set|the spare keys|a rescue puppy|the conference talk|"
    "a knitting kit|the budget spreadsheet|a pair of running shoes|the project deadline|"
    "the old sofa|a jar of honey|the book club pick|the Spanish course|the electric bill|"
    "the photo album|a surfboard|the kitchen renovation|a guitar amp|the visa paperwork"
)
VERBS_PAST = _phrases(
    "picked up|dropped off|argued about|talked about|forgot|ordered|returned|fixed|"
    "cancelled|booked|paid for|lost|found|shared|planned|reviewed|cleaned|sold|bought|tried"
)
VERBS = _phrases(
    "pick up|drop off|book|pay for|return|fix|cancel|share|plan|review|sell|buy|try|"
    "reschedule|double-check|renew|pack|wrap|send|print"
)
TIMES = _phrases(
    "yesterday|last night|this morning|on Monday|on Tuesday|on Wednesday|on Thursday|"
    "on Friday|over the weekend|last week|two days ago|next month|tomorrow|in March|"
    "in the summer|after lunch|before dinner|at dawn|around noon|late on Sunday"
)
ADJS = _phrases(
    "great|awful|surprisingly cheap|way too expensive|really fun|a bit stressful|boring|"
    "confusing|wonderful|exhausting|relaxing|chaotic|perfect|disappointing|hilarious|"
    "weirdly quiet|crowded|freezing|lovely|overrated"
)
REASONS = _phrases(
    "the weather turned|nobody showed up on time|the prices went up again|we got lost twice|"
    "the staff were so friendly|my phone died|it rained all afternoon|the traffic was terrible|"
    "we finally had some time off|the kids loved it|the line was endless|I was running late|"
    "the music was too loud|the food was amazing|we met some old friends there"
)
EVENTS = _phrases(
    "birthday party|job interview|family dinner|road trip|house warming|team retreat|"
    "marathon|wedding|graduation|doctor visit|camping trip|board meeting|garage sale"
)
TOPICS = _phrases(
    "moving abroad|learning to cook|saving for a house|changing jobs|training for a race|"
    "adopting a cat|the new phone|politics|climate change|our holiday plans|sleep habits|"
    "the football season|home gardening|a podcast episode"
)
FEELINGS = _phrases("feel nervous|am excited|am worried|feel great|am unsure|feel relieved")

TEMPLATES = (
    "I {vp} {obj} with {person} at the {place} {time}, and it was {adj} because {reason}.",
    "Can you remind me that {person} wants {obj} for the {event} {time} at the {place}?",
    "My {rel} {person} said {obj} from the {place} was {adj}, so we might {v} it {time}.",
    "Honestly I {feel} about the {event} {time}; {person} thinks we should {v} {obj} instead.",
    "Note to self: {v} {obj} before the {event}, {person} said the {place} is {adj} {time}.",
    "We talked about {topic} at the {place} {time}, and {person} recommended {obj} to me.",
    "Quick update: {person} {vp} {obj} {time}, which was {adj}, since {reason}.",
    "Do you remember when my {rel} {person} {vp} {obj} at the {place}? It was {adj}.",
)


@dataclass(frozen=True)
class DataConfig:
    """What defines the workload (its hash keys the vector cache)."""

    records: int = 100_000
    users: int = 1_000
    queries: int = 1_000
    single_adds: int = 200
    zipf_s: float = 1.0
    seed: int = 20240601
    hash_vectors: bool = False

    def key(self) -> str:
        """A short hash of the config and the generator version."""
        blob = json.dumps({**asdict(self), "v": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Workload:
    """Texts, their users and vectors: the corpus, the held-out queries, the single adds."""

    config: DataConfig
    texts: list[str]
    users: np.ndarray  # int user index per corpus row
    vectors: np.ndarray  # float32 (records, dim), unit rows
    query_texts: list[str]
    query_users: np.ndarray
    query_vectors: np.ndarray
    add_texts: list[str]
    add_users: np.ndarray
    add_vectors: np.ndarray
    embed_seconds: float = 0.0
    from_cache: bool = False

    def user_name(self, index: int) -> str:
        """The user_id string of user ``index`` (rank order: u0000 is the biggest)."""
        return f"u{int(index):04d}"


def _sentence(rng: np.random.Generator) -> str:
    def pick(seq: tuple[str, ...] | list[str]) -> str:
        return seq[int(rng.integers(len(seq)))]

    template = pick(TEMPLATES)
    return template.format(
        vp=pick(VERBS_PAST),
        v=pick(VERBS),
        obj=pick(OBJECTS),
        person=pick(PEOPLE).replace("-", " "),
        rel=pick(RELATIONS),
        place=pick(PLACES).replace("-", " "),
        time=pick(TIMES),
        adj=pick(ADJS),
        reason=pick(REASONS),
        event=pick(EVENTS),
        topic=pick(TOPICS),
        feel=pick(FEELINGS),
    )


def generate_texts(n: int, rng: np.random.Generator, seen: set[str]) -> list[str]:
    """``n`` new sentences not in ``seen`` (which they are added to)."""
    out: list[str] = []
    while len(out) < n:
        s = _sentence(rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def zipf_sizes(records: int, users: int, s: float) -> np.ndarray:
    """Rows per user, proportional to ``1 / rank**s``, at least 1, summing to ``records``."""
    w = 1.0 / np.arange(1, users + 1, dtype=np.float64) ** s
    raw = w / w.sum() * records
    sizes = np.maximum(np.floor(raw).astype(np.int64), 1)
    # Hand the remainder out by largest fractional part (take it back from the top if over).
    diff = records - int(sizes.sum())
    order = np.argsort(-(raw - np.floor(raw)))
    i = 0
    while diff > 0:
        sizes[order[i % users]] += 1
        diff -= 1
        i += 1
    while diff < 0:
        sizes[0] -= 1
        diff += 1
    return sizes


def make_texts(cfg: DataConfig) -> dict[str, object]:
    """Generate every text and user assignment (cheap, no vectors)."""
    rng = np.random.default_rng(cfg.seed)
    seen: set[str] = set()
    texts = generate_texts(cfg.records, rng, seen)
    query_texts = generate_texts(cfg.queries, rng, seen)
    add_texts = generate_texts(cfg.single_adds, rng, seen)
    sizes = zipf_sizes(cfg.records, cfg.users, cfg.zipf_s)
    users = np.repeat(np.arange(cfg.users), sizes)
    rng.shuffle(users)
    p = sizes / sizes.sum()
    query_users = rng.choice(cfg.users, size=cfg.queries, p=p)
    add_users = rng.choice(cfg.users, size=cfg.single_adds, p=p)
    return {
        "texts": texts,
        "users": users,
        "query_texts": query_texts,
        "query_users": query_users,
        "add_texts": add_texts,
        "add_users": add_users,
    }


def load_model(threads: int = 2) -> object:
    """Load all-MiniLM-L6-v2 from its installed package, offline, on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from sentence_transformers import SentenceTransformer

    from engramdb.embedders.minilm import model_path

    torch.set_num_threads(threads)
    return SentenceTransformer(model_path(), device="cpu")


def embed_minilm(
    texts: list[str], batch_size: int = 64, threads: int = 2, parts: Path | None = None
) -> np.ndarray:
    """Embed ``texts`` with all-MiniLM-L6-v2 (unit rows, float32), logging progress.

    It runs on engramdb's ONNX Runtime file, which gives torch's vectors (cosine >= 0.9999996,
    the embedder tests check it) in less time. With ``parts`` (a path prefix), every block of
    4,096 vectors is saved as it is done and reused by the next run, so an interrupted
    embedding resumes instead of starting over.
    """
    from engramdb.embedders.onnx_minilm import OnnxMiniLMEmbedder

    model = OnnxMiniLMEmbedder("fp32", batch_size=batch_size, batch_threads=threads, coalesce_ms=0)
    out = np.empty((len(texts), 384), dtype=np.float32)
    step = 4096
    t0 = time.perf_counter()
    fresh = 0
    for i in range(0, len(texts), step):
        part = None if parts is None else parts.with_name(f"{parts.name}.part{i // step}.npy")
        chunk = texts[i : i + step]
        if part is not None and part.exists():
            cached = np.load(part, allow_pickle=False)
            if cached.shape == (len(chunk), 384):
                out[i : i + step] = cached
                continue
        out[i : i + step] = model.embed(chunk)
        if part is not None:
            _save(part, out[i : i + step])
        fresh += len(chunk)
        rate = fresh / (time.perf_counter() - t0)
        log(f"embedded {i + len(chunk)}/{len(texts)} ({rate:.0f} texts/s)")
    return out


def embed_hash(texts: list[str], dim: int = 384) -> np.ndarray:
    """Model-free vectors (smoke runs): engramdb's deterministic HashEmbedder."""
    from engramdb import HashEmbedder

    return HashEmbedder(dim).embed(texts)


def _save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def store_config(
    records: int,
    quick: bool,
    hash_vectors: bool,
    users: int | None = None,
    queries: int | None = None,
) -> DataConfig:
    """The store benchmarks' workload from CLI-level options (``bench store`` and
    ``bench postgres`` run the same one): 1,000 users per 100k records, 1,000 queries;
    ``quick`` caps it at 5,000 records and 100 queries."""
    if quick:
        records = min(records, 5_000)
    n_users = users or max(10, round(1_000 * records / 100_000))
    return DataConfig(
        records=records,
        users=min(n_users, records),
        queries=queries or (100 if quick else 1_000),
        single_adds=50 if quick else 200,
        hash_vectors=hash_vectors,
    )


def load_workload(cfg: DataConfig, cache_dir: Path = CACHE_DIR) -> Workload:
    """Build the workload, embedding once and caching the vectors by config hash."""
    gen = make_texts(cfg)
    texts: list[str] = gen["texts"]  # type: ignore[assignment]
    query_texts: list[str] = gen["query_texts"]  # type: ignore[assignment]
    add_texts: list[str] = gen["add_texts"]  # type: ignore[assignment]
    all_texts = texts + query_texts + add_texts
    digest = hashlib.sha256("\n".join(all_texts).encode()).hexdigest()[:16]
    kind = "hash" if cfg.hash_vectors else "minilm"
    path = cache_dir / f"store-{kind}-{cfg.key()}-{digest}.npy"
    seconds = 0.0
    from_cache = False
    if path.exists():
        vecs = np.load(path, allow_pickle=False)
        from_cache = vecs.shape == (len(all_texts), 384)
    if not from_cache:
        log(f"embedding {len(all_texts)} texts with {kind} (cached at {path.name})")
        t0 = time.perf_counter()
        cache_dir.mkdir(parents=True, exist_ok=True)
        if cfg.hash_vectors:
            vecs = embed_hash(all_texts)
        else:
            # Threads: 2 per the reference; ENGRAM_BENCH_EMBED_THREADS=1 is faster
            # when other processes load the machine (see ingest_embed.json's thread study).
            threads = int(os.environ.get("ENGRAM_BENCH_EMBED_THREADS", "2"))
            vecs = embed_minilm(all_texts, threads=threads, parts=path.with_suffix(""))
        seconds = time.perf_counter() - t0
        _save(path, vecs.astype(np.float32))
        for part in cache_dir.glob(path.stem + ".part*.npy"):
            part.unlink()
    n, q = cfg.records, cfg.queries
    return Workload(
        config=cfg,
        texts=texts,
        users=gen["users"],  # type: ignore[arg-type]
        vectors=np.ascontiguousarray(vecs[:n]),
        query_texts=query_texts,
        query_users=gen["query_users"],  # type: ignore[arg-type]
        query_vectors=np.ascontiguousarray(vecs[n : n + q]),
        add_texts=add_texts,
        add_users=gen["add_users"],  # type: ignore[arg-type]
        add_vectors=np.ascontiguousarray(vecs[n + q :]),
        embed_seconds=round(seconds, 1),
        from_cache=from_cache,
    )


def describe(w: Workload) -> dict[str, object]:
    """Shape of the workload, for the report (checks the zipf targets)."""
    sizes = np.bincount(w.users, minlength=w.config.users)
    words = [len(t.split()) for t in w.texts[:2000]]
    return {
        "records": len(w.texts),
        "users": int(w.config.users),
        "largest_user_share": round(float(sizes.max() / sizes.sum()), 4),
        "median_user_rows": float(np.median(sizes)),
        "mean_words_per_text": round(float(np.mean(words)), 1),
        "queries": len(w.query_texts),
        "query_user_median_rows": float(np.median(sizes[w.query_users])),
        "vectors": "hash" if w.config.hash_vectors else "all-MiniLM-L6-v2",
        "embed_seconds": w.embed_seconds,
        "vectors_from_cache": w.from_cache,
        "example": w.texts[0],
    }
