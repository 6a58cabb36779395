"""Embedders: the protocol, the local MiniLM model and the deterministic hash embedder."""

from engramdb.embedders.base import Embedder, check_vectors, resolve_embedder
from engramdb.embedders.hashing import HashEmbedder
from engramdb.embedders.minilm import MiniLMEmbedder

__all__ = ["Embedder", "HashEmbedder", "MiniLMEmbedder", "check_vectors", "resolve_embedder"]
