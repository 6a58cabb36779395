"""The engine: write and read pipelines over a store, an embedder and pure helpers."""
