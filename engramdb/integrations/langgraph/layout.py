"""How a LangGraph item (namespace tuple, key, JSON value) becomes an engramdb record.

* ``id``: ``lg:`` + BLAKE2b-128 of the JSON ``[labels..., key]``, so a key is unique within
  its namespace tuple by construction, a put is an upsert of one id, and two processes
  putting the same item meet on the same row.
* ``tags``: one ``"<position>:<label>"`` per label. A prefix search requires the tags of the
  prefix's labels, so it matches whole labels at their positions: ``("users", "al")``
  requires ``1:al``, which ``("users", "alice")`` does not carry. The tag index answers it.
  An item whose namespace its user scope does not name exactly (more labels than
  ``scope_depth``, or a digest scope) also carries ``lg:deep`` (no label tag starts with
  a letter), so ``list_namespaces`` reads only those items and takes the others' namespaces
  from the distinct user scopes.
* ``user_id``: the JSON of the first ``scope_depth`` labels (a digest when longer than a
  scope may be), prefixed ``raw:`` for an item stored without indexing. A search whose prefix
  has that many labels passes it as engramdb's user scope, so it runs on the per-user vector
  blocks and the keyword scope tokens instead of the whole namespace, needs no tag test for
  the labels the scope names (it names them exactly unless it is a digest), and never meets
  an unindexed item.
* ``agent_id``: the record id. engramdb deduplicates equal texts within a scope; an item is
  its own scope, so two keys holding equal values stay two items.
* ``type``: ``langgraph`` for an indexed item, ``langgraph-raw`` for one stored with
  ``index=False`` (searches with a query skip those; searches without one list both).
* ``text``: what LangGraph's ``IndexConfig.fields`` select from the value (default the whole
  value as JSON), joined by newlines; a raw item's text is its key.
* ``metadata``: ``{"ns": [labels], "key": key, "value": value}`` (plus ``ttl`` in minutes when
  set), so the value comes back exactly as given and LangGraph filters become engramdb filters
  on ``metadata.value.<field>``, compiled with bound parameters like any other.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from engramdb.errors import ValidationError

INDEXED = "langgraph"
RAW = "langgraph-raw"
MAX_LABEL_CHARS = 120
MAX_SCOPE_CHARS = 250  # engramdb's scopes hold 256; ``raw:`` goes in front
RAW_SCOPE = "raw:"
DEEP = "lg:deep"
OPERATORS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"}


def record_id(namespace: tuple[str, ...], key: str) -> str:
    """The record id of an item: a digest of its namespace labels and key."""
    raw = json.dumps([*namespace, key], ensure_ascii=False, separators=(",", ":"))
    return "lg:" + hashlib.blake2b(raw.encode("utf-8"), digest_size=16).hexdigest()


def check_labels(namespace: tuple[str, ...], *, prefix: bool = False) -> tuple[str, ...]:
    """Return the namespace if every label fits a tag; raise naming the label otherwise."""
    if not isinstance(namespace, tuple) or not all(isinstance(x, str) for x in namespace):
        raise ValidationError("a LangGraph namespace is a tuple of strings", field="namespace")
    if not namespace and not prefix:
        raise ValidationError("a namespace needs at least one label", field="namespace")
    for label in namespace:
        if not label or len(label) > MAX_LABEL_CHARS or any(ord(ch) < 32 for ch in label):
            raise ValidationError(
                f"namespace label {label!r} must be 1-{MAX_LABEL_CHARS} characters without "
                "control characters",
                field="namespace",
            )
    return namespace


def label_tags(labels: tuple[str, ...], start: int = 0) -> list[str]:
    """The tags that place each label at its position."""
    return [f"{i}:{label}" for i, label in enumerate(labels) if i >= start]


def scope_of(labels: tuple[str, ...], depth: int) -> str:
    """engramdb's user scope of a namespace: its first ``depth`` labels."""
    raw = json.dumps(list(labels[:depth]), ensure_ascii=False, separators=(",", ":"))
    if len(raw) <= MAX_SCOPE_CHARS:
        return raw
    return "lg#" + hashlib.blake2b(raw.encode("utf-8"), digest_size=16).hexdigest()


def is_deep(labels: tuple[str, ...], depth: int) -> bool:
    """Whether an item's user scope leaves part of its namespace unnamed."""
    return len(labels) > depth or not is_exact(scope_of(labels, depth))


def scope_labels(user_id: str) -> tuple[str, ...] | None:
    """The labels a user scope names (indexed or ``raw:``), or None when it names none
    exactly (a digest, or a ``user_id`` this layout did not write)."""
    raw = user_id[len(RAW_SCOPE) :] if user_id.startswith(RAW_SCOPE) else user_id
    if not raw.startswith("["):
        return None
    try:
        labels = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(labels, list) or not labels:
        return None
    if not all(isinstance(x, str) and x for x in labels):
        return None
    return tuple(labels)


def is_exact(scope: str) -> bool:
    """Whether a scope names its labels exactly (JSON), rather than by a digest."""
    return not scope.startswith("lg#")


def value_filter(filter: dict[str, Any] | None) -> dict[str, Any]:
    """LangGraph's ``filter`` as an engramdb filter on the stored value.

    ``{"color": "red", "n": {"$gte": 3}, "meta": {"lang": "en"}}`` becomes
    ``{"metadata.value.color": "red", "metadata.value.n": {"$gte": 3},
    "metadata.value.meta.lang": "en"}``: a nested object without operators matches field by
    field, as in LangGraph's own stores. Field names become JSON-path segments, which
    engramdb's filter language checks against its strict pattern before binding them.
    """
    out: dict[str, Any] = {}
    if filter is None:
        return out
    if not isinstance(filter, dict):
        raise ValidationError("filter must be an object", field="filter")
    _flatten(filter, "metadata.value", out)
    return out


def _flatten(filter: dict[str, Any], path: str, out: dict[str, Any]) -> None:
    for key, want in filter.items():
        if not isinstance(key, str) or not key or key.startswith("$") or "." in key:
            raise ValidationError(
                f"filter field {key!r} must be a non-empty name without '.' or a leading '$'",
                field="filter",
            )
        field = f"{path}.{key}"
        if isinstance(want, dict) and any(str(k).startswith("$") for k in want):
            unknown = set(want) - OPERATORS
            if unknown:
                raise ValidationError(
                    f"filter operator {sorted(unknown)[0]!r} on {key!r} is not one of "
                    f"{', '.join(sorted(OPERATORS))}",
                    field="filter",
                )
            out[field] = dict(want)
        elif isinstance(want, dict):
            _flatten(want, field, out)
        else:
            out[field] = want


def index_text(value: dict[str, Any], fields: list[str] | None) -> str:
    """The text engramdb embeds and indexes for a value (LangGraph's field paths)."""
    from langgraph.store.base.embed import get_text_at_path

    texts: list[str] = []
    for path in fields or ["$"]:
        texts += [t for t in get_text_at_path(value, path) if t and t.strip()]
    return "\n".join(texts)
