"""The torch embedder and the process's torch settings."""

from __future__ import annotations

import pytest

from engramdb import MiniLMEmbedder

pytestmark = pytest.mark.model


def test_the_torch_embedder_leaves_torch_s_thread_count_as_it_found_it(
    minilm: MiniLMEmbedder,
) -> None:
    """torch's thread count belongs to the process: an application running its own models
    beside the embedder keeps its setting after a query and after a batch."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        minilm.embed(["a query about peanuts"], query=True)
        assert torch.get_num_threads() == 3
        minilm.embed([f"a batch text number {i}" for i in range(12)])
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
