"""Embedders: the protocol, all-MiniLM-L6-v2 (ONNX Runtime by default, or torch) and the
deterministic hash embedder."""

from engramdb.embedders.base import Embedder, check_vectors, resolve_embedder
from engramdb.embedders.hashing import HashEmbedder
from engramdb.embedders.minilm import MiniLMEmbedder
from engramdb.embedders.onnx_minilm import OnnxMiniLMEmbedder

__all__ = [
    "Embedder",
    "HashEmbedder",
    "MiniLMEmbedder",
    "OnnxMiniLMEmbedder",
    "check_vectors",
    "resolve_embedder",
]
