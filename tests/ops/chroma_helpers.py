"""Chroma stores for the legacy-migration tests, built with the real ``chromadb`` package
(vectors from our hash embedder, stored without an embedding function)."""

from __future__ import annotations

from pathlib import Path

from engramdb import HashEmbedder

USERS = ("ana", "bo", "chen", "dara")
TOPICS = (
    "keeps bees on the roof in Oslo",
    "bakes rye bread with a sourdough starter",
    "takes the night train to Lisbon",
    "runs the chess club on Fridays",
    "repairs old bicycles in the garage",
    "learns Portuguese on the bus",
)


def chroma_docs(collection: str, n: int) -> list[str]:
    """``n`` distinct documents of several users for one collection."""
    return [
        f"{collection} {i}: {USERS[i % len(USERS)]} {TOPICS[i % len(TOPICS)]} (note {i * 7 + 3})"
        for i in range(n)
    ]


def build_chroma(
    path: Path, per_collection: int, collections: tuple[str, ...] = ("notes", "prefs")
) -> dict[str, list[str]]:
    """A Chroma persistent store with ``collections``, each of ``per_collection`` documents
    from several users, stored with hash-embedder vectors (no embedding function)."""
    import chromadb

    emb = HashEmbedder(384)
    client = chromadb.PersistentClient(path=str(path))
    out: dict[str, list[str]] = {}
    for name in collections:
        col = client.create_collection(name, embedding_function=None)
        docs = chroma_docs(name, per_collection)
        for start in range(0, per_collection, 1000):
            part = docs[start : start + 1000]
            col.add(
                ids=[f"{name}-{i}" for i in range(start, start + len(part))],
                documents=part,
                embeddings=emb.embed(part).tolist(),
                metadatas=[
                    {
                        "user_id": USERS[i % len(USERS)],
                        "created_at": 1_700_000_000 + i,
                        "topic": f"t{i % 3}",
                    }
                    for i in range(start, start + len(part))
                ],
            )
        out[name] = docs
    return out


CHROMA_MAPPING = {
    "text": "$document",
    "id": "$id",
    "user_id": "user_id",
    "occurred_at": "created_at",
    "metadata": "*",
    "embedding_model": "hash-384",
}
