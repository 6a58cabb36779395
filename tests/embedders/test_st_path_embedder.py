"""ENGRAM_EMBEDDER=st:/path: a sentence-transformers model loaded from a local folder (the
installed all-MiniLM-L6-v2 package's folder), so its vectors equal the built-in embedder's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engramdb import Memory, MiniLMEmbedder, ValidationError
from engramdb.embedders.minilm import model_path

pytestmark = pytest.mark.model


def test_a_model_by_path_gives_the_models_own_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm: MiniLMEmbedder
) -> None:
    monkeypatch.setenv("ENGRAM_EMBEDDER", f"st:{model_path()}")
    texts = ["Alice moved to Lisbon in 2021", "Bob prefers green tea over coffee"]
    with Memory(f"sqlite:///{tmp_path / 'st.db'}") as mem:
        assert mem.embedder.name == f"st:{Path(model_path()).name}"
        assert (mem.embedder.dim, mem.embedder.max_tokens) == (384, 256)
        np.testing.assert_allclose(
            mem.embedder.embed(texts), minilm.embed(texts), rtol=0, atol=1e-5
        )
        mem.add(texts, user_id="u")
        assert mem.search("where does alice live", user_id="u").hits[0].record.text == texts[0]


def test_a_folder_without_a_model_is_named_in_the_error(tmp_path: Path) -> None:
    from engramdb import Settings

    with pytest.raises(ValidationError, match="missing"):
        Memory(":memory:", settings=Settings(embedder=f"st:{tmp_path / 'missing'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match="empty"):
        Memory(":memory:", settings=Settings(embedder=f"st:{tmp_path / 'empty'}"))
