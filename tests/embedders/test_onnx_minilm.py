"""The ONNX Runtime embedder is the same embedder as the torch one: name, dimension, vectors.

Vectors are compared with sentence-transformers' on a fixed set of texts (short, long past
the 256-token window, non-ASCII, batches of mixed lengths); the int8 variant is another
embedder with other vectors, close to the same ones.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from engramdb import Memory, MiniLMEmbedder
from engramdb.embedders.onnx_minilm import NAME_INT8, OnnxMiniLMEmbedder

pytestmark = pytest.mark.model

TEXTS = [
    "Maria is allergic to peanuts and carries an EpiPen.",
    "Alice relocated from Berlin to Lisbon in the spring of 2021.",
    "Tom drives an electric Tesla Model 3 that he bought last year.",
    "Bob cannot stand coffee; he drinks green tea every morning.",
    "The family has a golden retriever named Biscuit.",
    "Priya works as a nurse in the pediatric ward of the city hospital.",
    "Sam and Lee got married on a beach in Crete last June.",
    "Jonas stopped eating meat, eggs and dairy three years ago.",
    "Elena finished the Boston Marathon in just under four hours.",
    "Kenji has been taking classical guitar lessons on Saturdays.",
    "ok",
    "Zoë's café in Montréal serves crème brûlée — 5€ — and 抹茶 lattes!",
    "meeting moved to 3pm; bring the Q3 report (v2.1), see JIRA-1234",
    " ".join(f"word{i} and some filler text about the project deadline" for i in range(80)),
    "The user said: " + "really " * 300 + "likes jazz.",
    "User: what did I say about my sister?\nAssistant: You said she lives in Oslo.",
]
QUERIES = [
    "who has a food allergy",
    "where does alice live now",
    "what car does tom have",
    "hot drinks",
    "pets",
    "healthcare job",
    "a wedding",
    "diet without animal products",
    "running a race",
    "music lessons",
]


@pytest.fixture(scope="module")
def onnx() -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder()


def test_same_name_and_dimension_as_the_torch_embedder(onnx: OnnxMiniLMEmbedder) -> None:
    torch_side = MiniLMEmbedder()
    assert (onnx.name, onnx.dim, onnx.max_tokens) == (
        torch_side.name,
        torch_side.dim,
        torch_side.max_tokens,
    )


def test_vectors_equal_torch_within_float_tolerance(
    onnx: OnnxMiniLMEmbedder, minilm: MiniLMEmbedder
) -> None:
    ours = onnx.embed(TEXTS)
    theirs = minilm.embed(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), 384)
    assert ours.dtype == np.float32
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.99999, cosines
    assert np.abs(ours - theirs).max() < 1e-3
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_single_texts_equal_their_rows_in_a_batch(onnx: OnnxMiniLMEmbedder) -> None:
    batch = onnx.embed(TEXTS)
    for i, text in enumerate(TEXTS):
        single = onnx.embed([text])
        assert single.shape == (1, 384)
        assert float(single[0] @ batch[i]) >= 0.99999


def test_length_sorted_batches_keep_the_callers_order(onnx: OnnxMiniLMEmbedder) -> None:
    small = OnnxMiniLMEmbedder(batch_size=3, coalesce_ms=0)
    order = [13, 10, 0, 14, 11, 5, 15, 1]
    texts = [TEXTS[i] for i in order]
    expected = onnx.embed(TEXTS)[order]
    got = small.embed(texts)
    assert ((got * expected).sum(axis=1) >= 0.99999).all()


def test_top10_agrees_with_torch(onnx: OnnxMiniLMEmbedder, minilm: MiniLMEmbedder) -> None:
    ours_docs, theirs_docs = onnx.embed(TEXTS), minilm.embed(TEXTS)
    ours_q, theirs_q = onnx.embed(QUERIES), minilm.embed(QUERIES)
    for q in range(len(QUERIES)):
        ours = ours_docs @ ours_q[q]
        theirs = theirs_docs @ theirs_q[q]
        assert set(np.argsort(-ours)[:10]) == set(np.argsort(-theirs)[:10])
        assert np.abs(ours - theirs).max() < 1e-4


def test_token_counts_equal_the_torch_tokenizer(
    onnx: OnnxMiniLMEmbedder, minilm: MiniLMEmbedder
) -> None:
    for text in [*TEXTS, "", "   ", "a" * 2000]:
        assert onnx.count_tokens(text) == minilm.count_tokens(text), text[:40]


@pytest.mark.parametrize("lanes", [1, 2])
def test_concurrent_single_embeds_get_their_own_vectors(
    onnx: OnnxMiniLMEmbedder, lanes: int
) -> None:
    coalescing = OnnxMiniLMEmbedder(coalesce_ms=20.0, coalesce_lanes=lanes)
    expected = onnx.embed(TEXTS)
    got: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(len(TEXTS))

    def call(i: int) -> None:
        barrier.wait()
        got[i] = coalescing.embed([TEXTS[i]], query=i % 2 == 0)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(TEXTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(got) == list(range(len(TEXTS)))
    for i, row in got.items():
        assert row.shape == (1, 384)
        assert float(row[0] @ expected[i]) >= 0.99999
    assert coalescing.coalescer is not None
    assert coalescing.coalescer.items == len(TEXTS)


def test_a_repeated_query_is_served_from_the_cache(onnx: OnnxMiniLMEmbedder) -> None:
    first = onnx.embed(["a question asked twice"], query=True)
    second = onnx.embed(["a question asked twice"], query=True)
    assert second.tolist() == first.tolist()
    assert onnx._cache.get("a question asked twice") is not None


def test_empty_input_gives_no_rows(onnx: OnnxMiniLMEmbedder) -> None:
    assert onnx.embed([]).shape == (0, 384)


def test_int8_is_another_embedder_with_close_vectors(minilm: MiniLMEmbedder) -> None:
    int8 = OnnxMiniLMEmbedder("int8")
    assert int8.name == NAME_INT8 != minilm.name
    ours, theirs = int8.embed(TEXTS), minilm.embed(TEXTS)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.9, cosines
    assert cosines.max() < 0.99999  # quantized: not the same vectors


def test_an_int8_vector_does_not_depend_on_its_batch() -> None:
    int8 = OnnxMiniLMEmbedder("int8")
    alone = int8.embed([TEXTS[0]])[0]
    for companions in ([TEXTS[1]], [TEXTS[13], TEXTS[11]], TEXTS[2:]):
        batched = int8.embed([TEXTS[0], *companions])[0]
        assert float(alone @ batched) >= 0.99999


@pytest.mark.parametrize("lanes", [1, 2])
def test_int8_batches_run_one_text_per_call_on_lanes(lanes: int) -> None:
    """Side by side or one after another, a batch gives each text its own vector, in order."""
    int8 = OnnxMiniLMEmbedder("int8", batch_threads=lanes)
    rows = int8.embed(TEXTS)
    alone = np.concatenate([int8.embed([t]) for t in TEXTS])
    assert rows.shape == (len(TEXTS), 384)
    assert np.abs(rows - alone).max() <= 1e-6


def test_a_store_built_with_torch_opens_with_onnx(tmp_path: Path, minilm: MiniLMEmbedder) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with Memory(url, embedder=minilm) as m:
        m.add(TEXTS[0], user_id="u")
        m.add(TEXTS[3], user_id="u")
    with Memory(url, embedder="minilm") as m:
        assert isinstance(m.embedder, OnnxMiniLMEmbedder)
        hits = m.search("who has a food allergy", user_id="u").hits
        assert hits[0].record.text == TEXTS[0]
