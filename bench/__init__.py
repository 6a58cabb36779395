"""engramdb's benchmarks: store speed against Chroma, ingest with the embedder, LoCoMo recall.

Run them with ``make bench``, ``engramdb bench ...`` or ``python -m bench ...``; see
``bench/README.md``. Results are JSON files under ``bench/results/``.
"""
