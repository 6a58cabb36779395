"""Settings: one class, read from arguments, then ``ENGRAM_*`` variables, then defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every tunable of engramdb. Limits are settings with safe defaults.

    Example::

        Settings(url="sqlite:///tmp/m.db", max_text_bytes=65536)
    """

    model_config = SettingsConfigDict(env_prefix="ENGRAM_", extra="forbid")

    url: str = Field(
        "sqlite:///engram.db",
        description="Store URL: sqlite:///path, :memory: or postgresql://user@host/db",
    )
    namespace: str = Field("default", description="Namespace used when none is given")
    embedder: str = Field(
        "minilm",
        description="Embedder: 'minilm' (local all-MiniLM-L6-v2 on ONNX Runtime), "
        "'minilm-torch' (the same model and vectors through PyTorch), 'minilm-int8' "
        "(int8 weights: faster, other vectors), 'hash' (no model), 'openai:<model>' (an "
        "OpenAI-compatible HTTP API) or 'st:/path' (a local sentence-transformers model)",
    )
    hash_dim: int = Field(384, ge=8, le=4096, description="Dimension of the hash embedder")
    embedder_base_url: str = Field(
        "https://api.openai.com/v1",
        description="openai:<model> embedder: base URL of the OpenAI-compatible API "
        "(POST {base}/embeddings)",
    )
    embedder_api_key: SecretStr | None = Field(
        None, description="openai:<model> embedder: bearer key (unset: no Authorization header)"
    )
    embedder_dim: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="openai:<model> embedder: vector dimension (unset: asked of the API once)",
    )
    embedder_max_tokens: int = Field(
        512, ge=16, description="openai:<model> embedder: the model's input window in tokens"
    )
    embedder_timeout_s: float = Field(
        30.0, gt=0, description="openai:<model> embedder: longest wait for one request"
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL",
        description="SQLite synchronous mode; NORMAL may lose the last commits on power loss",
    )
    busy_timeout_ms: int = Field(10_000, ge=0, description="How long a writer waits for the lock")
    sqlite_mmap_mb: int = Field(
        2048,
        ge=0,
        description="SQLite: reading connections map up to this much of the file (MB; SQLite "
        "caps it at 2047) instead of copying its pages in; 0: off",
    )
    auto_migrate: bool = Field(True, description="Upgrade the schema on open")
    store_retry_s: float = Field(
        10.0,
        ge=0,
        description="PostgreSQL: how long a call retries a lost server before giving up",
    )
    store_connect_timeout_s: float = Field(
        5.0, ge=2, description="PostgreSQL: how long one connection attempt may take"
    )
    store_io_timeout_s: float = Field(
        30.0,
        gt=0,
        description="PostgreSQL: longest wait for a reply in a retried call before the "
        "connection is presumed hung and dropped",
    )
    store_pool_max: int = Field(
        10,
        ge=1,
        le=1000,
        description="PostgreSQL: most pooled connections per store and process (a hybrid "
        "search holds two at once: its keyword side runs beside its vector side)",
    )
    read_url: str | None = Field(
        None,
        description="PostgreSQL: optional streaming-replica URL for reads and searches "
        "(read-your-writes kept per Memory; unset: every read on the primary)",
    )
    read_max_lag_s: float = Field(
        30.0, gt=0, description="PostgreSQL: a replica further behind than this is not read"
    )
    max_text_bytes: int = Field(32 * 1024, ge=1, description="Largest record text (UTF-8 bytes)")
    max_metadata_bytes: int = Field(16 * 1024, ge=2, description="Largest metadata (JSON bytes)")
    max_metadata_depth: int = Field(8, ge=1, description="Deepest metadata nesting")
    max_batch: int = Field(1000, ge=1, description="Most items in one add call")
    namespace_max_records: int = Field(
        0,
        ge=0,
        description="Quota: most records one namespace may hold (0: no quota); an add past "
        "it fails whole with QuotaExceededError",
    )
    max_top_k: int = Field(1000, ge=1, description="Largest top_k / limit")
    max_tags: int = Field(64, ge=0, description="Most tags on one record")
    max_filter_clauses: int = Field(256, ge=1, description="Most clauses in one filter")
    max_in_values: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Most values in one $in/$nin/$contains list of a filter (bound as one "
        "array, so no allowed size reaches an engine limit)",
    )
    max_chunk_tokens: int | None = Field(
        None, ge=16, description="Chunk size in tokens; default: the embedder's max sequence length"
    )
    query_cache_size: int = Field(1024, ge=0, description="LRU entries of query embeddings")
    embed_batch_size: int = Field(64, ge=1, description="Texts per embedder call")
    torch_threads: int = Field(
        1, ge=1, description="torch intra-op threads for single queries with the local model"
    )
    torch_batch_threads: int = Field(
        0,
        ge=0,
        description="torch threads for batches; 0 picks 1 or all cores by measured throughput",
    )
    onnx_threads: int = Field(
        1, ge=1, description="ONNX Runtime intra-op threads for single queries (and runs of <= 4)"
    )
    onnx_batch_threads: int = Field(
        0,
        ge=0,
        description="ONNX Runtime threads for batches; 0 picks 1 or all cores by measured "
        "throughput",
    )
    embed_coalesce_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="How long a single-text embed waits for concurrent ones to share one "
        "encoder batch (0: no coalescing)",
    )
    embed_coalesce_lanes: int = Field(
        0,
        ge=0,
        le=64,
        description="How many coalesced encoder batches may run at once in one process "
        "(0: one per core)",
    )
    model_dir: str | None = Field(
        None,
        description="Folder of the ONNX model files (unset: <venv>/share/engramdb/onnx, then "
        "~/.cache/engramdb/onnx; built there from the model package when missing)",
    )
    ann_min_rows: int = Field(
        20_000,
        ge=0,
        description="Scopes larger than this use the ANN index (a filter too narrow for its "
        "best candidates falls back to the exact scan)",
    )
    ann_min_user_rows: int = Field(
        5_000,
        ge=0,
        description="A user scope larger than this is searched through an ANN graph "
        "(SQLite: its own graph; PostgreSQL: HNSW with a user filter, except that a search "
        "with no filter beyond expiry scans sign bits for 2,000-20,000 chunks)",
    )
    keyword_index_min_rows: int = Field(
        5_000,
        ge=0,
        description="From this many keyword rows, keyword search ranks through a derived "
        "index (SQLite: FTS5's ranking; PostgreSQL: ts_rank's, in each process's memory) "
        "instead of scoring every match in SQL",
    )
    ann_ef_search: int = Field(96, ge=8, description="ANN search breadth (recall vs speed)")
    ann_connectivity: int = Field(
        16, ge=4, le=128, description="ANN graph degree (HNSW M): recall and memory vs speed"
    )
    ann_ef_add: int = Field(
        128, ge=8, description="ANN build breadth (graph quality vs background build time)"
    )
    context_window: int = Field(
        2,
        ge=0,
        le=16,
        description="Neighbouring turns on each side indexed (keyword side) with a message",
    )
    hybrid_fusion: Literal["convex", "rrf"] = Field(
        "convex", description="Hybrid fusion: min-max score combination or reciprocal ranks"
    )
    hybrid_vector_weight: float = Field(
        0.3, ge=0.0, le=1.0, description="Weight of the vector side in convex hybrid fusion"
    )
    facts: Literal["off", "patterns", "openai"] = Field(
        "off",
        description="Facts from add_messages: off, patterns (spaCy relation patterns, no "
        "model download) or openai (an OpenAI-compatible chat endpoint, facts_llm_url)",
    )
    facts_llm_url: str | None = Field(
        None, description="Base URL of the OpenAI-compatible API for facts=openai (…/v1)"
    )
    facts_llm_model: str = Field("gpt-4o-mini", description="Chat model for facts=openai")
    facts_llm_api_key: SecretStr | None = Field(
        None, description="Bearer key for facts_llm_url (none for a local server)"
    )
    facts_llm_timeout_s: float = Field(
        30.0, gt=0, le=600, description="Time limit of one facts=openai request"
    )
    entity_ranking: bool = Field(
        False,
        description="Hybrid search ranks higher the records that mention the entities the "
        "query names (matched against the namespace's known entity names)",
    )
    entity_ranking_weight: float = Field(
        0.1, ge=0.0, le=1.0, description="Score added for mentioning every entity the query names"
    )
    answer_kind_weight: float = Field(
        0.15,
        ge=0.0,
        le=1.0,
        description="Hybrid search: score added to candidates that hold the kind of answer the "
        "question asks for (a place for 'where', a time for 'when', a person for 'who', a number "
        "for 'how many'), as found by entity extraction; 0 switches it off",
    )
    question_penalty: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Hybrid search: score taken from candidates whose text is itself a question "
        "(it ends with '?'): a turn that asks holds less than one that answers; needs entity "
        "extraction, as answer_kind_weight does; 0 switches it off",
    )
    search_pool: int = Field(
        100, ge=10, description="Fewest candidates fetched from each retriever in a search"
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant")
    cache_url: SecretStr | None = Field(
        None,
        description="Optional Redis cache tier, redis://host:port/db (unset: no cache)",
    )
    cache_ttl_s: int = Field(
        300, ge=1, description="Lifetime of cached records, slots and thread events (seconds)"
    )
    cache_search_ttl_s: int = Field(
        60, ge=1, description="Lifetime of cached search results (seconds)"
    )
    cache_timeout_ms: int = Field(
        50, ge=1, le=10_000, description="Redis socket timeout: the most a slow cache adds"
    )
    cache_prefix: str = Field(
        "engram", pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="Prefix of every cache key"
    )
    host: str = Field("127.0.0.1", description="Service bind address (engramdb serve --host)")
    port: int = Field(8080, ge=0, le=65535, description="Service port (engramdb serve --port)")
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Service: largest request body, checked before it is read (413)",
    )
    max_upload_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=1024,
        description="Service: largest import/restore upload, streamed to disk (413)",
    )
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="Service: largest request headers (431 past it)"
    )
    max_header_count: int = Field(
        100, ge=8, description="Service: most request headers (431 past it)"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="Service: a request head must arrive whole within this"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Service: longest wait for each chunk of a request body (408)"
    )
    keepalive_timeout_s: float = Field(
        5.0, gt=0, description="Service: an idle keep-alive connection is closed after this"
    )
    shutdown_grace_s: float = Field(
        20.0,
        gt=0,
        description="Service: on SIGTERM, how long in-flight requests may take to finish",
    )
    cors_origins: list[str] = Field(
        [],
        description="Service: browser origins allowed by CORS (empty: CORS off)",
    )
    trusted_hosts: list[str] = Field(
        [],
        description="Service: Host header values accepted, e.g. ['memory.example.com'] "
        "(empty: any host)",
    )
    heavy_concurrency: int = Field(
        2, ge=1, description="Service: heavy calls (export, import, backup...) run at once"
    )
    heavy_queue: int = Field(
        16, ge=0, description="Service: heavy calls that may wait for a slot (503 past it)"
    )
    light_concurrency: int = Field(
        64, ge=1, description="Service: light calls (get, search, add) run at once"
    )
    light_queue: int = Field(
        1024, ge=0, description="Service: light calls that may wait for a slot (503 past it)"
    )
    key_concurrency: int = Field(
        32, ge=1, description="Service: calls one API key may have in flight (429 past it)"
    )
    key_rate_per_s: float = Field(
        500.0, gt=0, description="Service: sustained calls per second per API key (429)"
    )
    key_burst: int = Field(
        1000, ge=1, description="Service: calls one API key may make in a burst (429)"
    )
    search_timeout_ms: int = Field(
        10_000,
        ge=0,
        description="Time budget of one search, list or count (0: none); past it the call "
        "fails with a TimeoutError (504)",
    )
    admin_key: SecretStr | None = Field(
        None,
        description="Service admin key (sent as Authorization: Bearer); unset: the store's "
        "own, created and printed once on the first start",
    )
    auth: Literal["on", "off"] = Field(
        "on", description="'off' serves without keys: allowed only on a loopback address"
    )
    log_json: bool = Field(
        True, description="Service logs as JSON lines on stderr (false: plain text lines)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Service log level (no memory text or secret is logged at INFO)"
    )
    metrics_public: bool = Field(
        False,
        description="Serve /metrics without a key (for a scrape port only monitoring reaches)",
    )
    sidebyside_old: str | None = Field(
        None,
        description="Serve side by side with this old store: a legacy source URL (chroma://, "
        "sql:, redis://) or an engramdb store URL; writes go to both, reads are routed by "
        "sidebyside_read_from_new (unset: off)",
    )
    sidebyside_namespace: str | None = Field(
        None,
        description="Side by side: the namespace run beside the old store (default: the "
        "legacy collection's name, else the default namespace)",
    )
    sidebyside_old_embedder: str | None = Field(
        None, description="Side by side: a legacy old store's embedder (default: the service's)"
    )
    sidebyside_old_mapping: str | None = Field(
        None, description="Side by side: a legacy old store's mapping file (JSON)"
    )
    sidebyside_sample: float = Field(
        0.1, ge=0, le=1, description="Side by side: share of reads also run on the other store"
    )
    sidebyside_read_from_new: int = Field(
        0, ge=0, le=100, description="Side by side: percentage of reads the new store answers"
    )
    sidebyside_queue: str = Field(
        "engramdb-sidebyside.queue",
        description="Side by side: the retry queue file of writes the old store has not taken",
    )
    sidebyside_control: str | None = Field(
        None,
        description="Side by side: a routing control file (engramdb read-from-new --control) "
        "the service follows and writes its changes and rollbacks to",
    )
    sidebyside_window: int = Field(
        1000, ge=1, description="Side-by-side reads: compared reads the rollback rules look at"
    )
    sidebyside_min_samples: int = Field(
        50, ge=1, description="Side-by-side reads: compared reads needed before any rollback"
    )
    sidebyside_max_inconsistency: float = Field(
        0.001,
        ge=0,
        le=1,
        description="Side-by-side reads: share of compared reads that may disagree (top hit "
        "or top-k set) before reads roll back to the old store",
    )
    sidebyside_max_added_p95_ms: float = Field(
        100.0,
        ge=0,
        description="Side-by-side reads: most the new store's p95 latency may exceed the old's",
    )
    sidebyside_max_error_rate: float = Field(
        0.01, ge=0, le=1, description="Side-by-side reads: share of new-store reads that may fail"
    )
    sidebyside_retry_interval_s: float = Field(
        5.0, gt=0, description="Dual write: pause between retries of the secondary's queue"
    )
    zmq_url: str | None = Field(
        None,
        description="ZeroMQ endpoint the service binds beside HTTP (e.g. tcp://127.0.0.1:5570); "
        "unset: none",
    )
    extract: Literal["background", "inline", "off"] = Field(
        "background",
        description="Entity and relation extraction on write (spaCy): by a background worker, "
        "inline before add returns, or off",
    )
    extract_batch: int = Field(
        64, ge=1, le=1024, description="Texts per extraction batch (one nlp.pipe call)"
    )
    consolidate_interval_s: float = Field(
        0.0,
        ge=0,
        description="Service: seconds between scheduled consolidations of every namespace "
        "(merge, expire, archive, summarize); 0: never (run `engramdb consolidate`)",
    )
    consolidate_merge_threshold: float = Field(
        0.95,
        gt=0,
        le=1,
        description="Consolidation: cosine similarity at or above which two records of the "
        "same scope are near-duplicates and merged",
    )
    consolidate_half_life_days: float = Field(
        30.0,
        gt=0,
        description="Consolidation: half-life of a record's importance (retention score = "
        "importance * 0.5 ** (age / half-life)); younger records are never archived",
    )
    consolidate_archive_floor: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Consolidation: a record with an importance, older than the half-life, "
        "whose retention score is below this is archived (0: never archive)",
    )
    summarize_min_turns: int = Field(
        20,
        ge=2,
        description="Consolidation: a thread with at least this many message records gets a "
        "summary record (refreshed when the thread grows)",
    )
    summarize_sentences: int = Field(
        5, ge=1, le=50, description="Consolidation: sentences in an extractive thread summary"
    )
    summarizer_url: str | None = Field(
        None,
        description="OpenAI-compatible chat endpoint base URL (e.g. http://127.0.0.1:11434/v1) "
        "for thread summaries; unset: the extractive summarizer (no network)",
    )
    summarizer_model: str = Field("llama3.2", description="Model name sent to summarizer_url")
    summarizer_api_key: SecretStr | None = Field(
        None, description="Bearer key for summarizer_url, if it needs one"
    )


def url_without_password(url: str, mask: str = "") -> str:
    """``url`` with its password removed (``mask`` empty) or replaced by ``mask``.

    Logs, banners, summaries and checkpoint keys must never hold a password; a URL without
    one is returned unchanged.
    """
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if not sep or "@" not in authority:
        return url
    userinfo, _, host = authority.rpartition("@")
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    secret = f":{mask}" if mask else ""
    return f"{scheme}://{user}{secret}@{host}{slash}{tail}"
