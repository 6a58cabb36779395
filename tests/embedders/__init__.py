"""Embedder tests: the ONNX runtime path, its files, coalescing."""
