"""The service's protocol as data: a ``Memory`` call -> one REST request, and back.

Every remote face uses this one table: ``Client``/``AsyncClient`` send the request over
HTTP, ``ZmqClient`` sends the call's name and keyword arguments in a frame, and the ZeroMQ
endpoint turns that frame back into the same REST request and runs it through the REST app
(so both transports share routes, validation, keys and limits). Nothing here does I/O.

An encoder has the signature of its ``Memory`` method (keyword arguments by the same names)
so that unknown or missing arguments fail the same way on every transport; values are made
JSON-ready here (datetimes as ISO 8601), and the REST app validates them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from engramdb.errors import NotFoundError, NotSupportedError, ValidationError


@dataclass(frozen=True, slots=True)
class Request:
    """One REST request for one library call, and how to read its answer.

    ``repeatable``: sending it twice has the effect of sending it once (a read, or a write
    the server de-duplicates by its Idempotency-Key), so a transport may retry it.
    """

    op: str
    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    body: Any = None
    repeatable: bool = True
    keyed: bool = False
    """A write: it carries an ``Idempotency-Key`` so that a retry is applied once."""
    ok_statuses: frozenset[int] = frozenset({200, 201, 204})
    upload: Path | None = None
    upload_type: str = "application/octet-stream"
    download: Path | None = None
    progress: Callable[[int], None] | None = None
    """Told the final count once the call is done (the service reports no partial counts)."""


def jsonable(value: Any) -> Any:
    """Return ``value`` with datetimes as ISO 8601 strings and tuples as lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in fields.items() if v is not None}


def _seg(value: object, name: str) -> str:
    """A path segment: the whole value, percent-encoded (a ``/`` cannot change the route)."""
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{name} must be a non-empty string", field=name)
    return quote(value, safe="")


def _ns(namespace: str) -> str:
    return f"/v1/namespaces/{_seg(namespace, 'namespace')}"


def _query(**fields: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out.append((key, "true" if value else "false"))
        elif isinstance(value, list | tuple):
            out += [(key, str(v)) for v in value]
        elif isinstance(value, dict):
            out.append((key, json.dumps(value)))
        else:
            out.append((key, str(jsonable(value))))
    return out


def _existing(path: str | Path) -> Path:
    local = Path(path)
    if not local.is_file():
        raise NotFoundError(f"no file to upload at {local}", path=str(local))
    return local


def _callback(progress: object) -> Callable[[int], None] | None:
    if progress is not None and not callable(progress):
        raise ValidationError("progress must be callable", field="progress")
    return progress


# ---------------------------------------------------------------------------- records


def _add(
    ns: str,
    text: Any,
    *,
    id: str | None = None,
    user_id: str | None = None,
    agent_id: str | None = None,
    thread_id: str | None = None,
    type: str | None = None,
    metadata: dict[str, Any] | None = None,
    tags: Sequence[str] | None = None,
    source: str | None = None,
    importance: float | None = None,
    occurred_at: Any = None,
    expires_at: Any = None,
    valid_from: Any = None,
    valid_to: Any = None,
    on_error: str = "abort",
) -> Request:
    body = _drop_none(
        user_id=user_id,
        agent_id=agent_id,
        thread_id=thread_id,
        type=type,
        metadata=metadata,
        tags=tags,
        source=source,
        importance=importance,
        occurred_at=occurred_at,
        expires_at=expires_at,
        valid_from=valid_from,
        valid_to=valid_to,
        on_error=on_error,
    )
    if isinstance(text, str):
        body["text"] = text
        if id is not None:
            body["id"] = id
    else:
        if id is not None:
            raise ValidationError("id= applies to a single text; put ids in item dicts")
        items = [text] if isinstance(text, Mapping) else text
        if not isinstance(items, list | tuple):
            raise ValidationError("text must be a string, a dict or a list of them", field="text")
        body["items"] = jsonable(list(items))
    return Request("add", "POST", f"{_ns(ns)}/records", body=body, keyed=True)


def _get(ns: str, id: str) -> Request:
    return Request("get", "GET", f"{_ns(ns)}/records/{_seg(id, 'id')}")


def _get_many(ns: str, ids: Sequence[str]) -> Request:
    return Request("get_many", "POST", f"{_ns(ns)}/records/get-many", body={"ids": jsonable(ids)})


def _list(
    ns: str,
    filters: dict[str, Any] | None = None,
    *,
    limit: int = 100,
    cursor: str | None = None,
    descending: bool = False,
    user_id: str | None = None,
    agent_id: str | None = None,
    thread_id: str | None = None,
    type: str | None = None,
    tags: Sequence[str] | None = None,
    valid_at: Any = None,
    include_expired: bool = False,
) -> Request:
    params = _query(
        filter=filters,
        user_id=user_id,
        agent_id=agent_id,
        thread_id=thread_id,
        type=type,
        tags=tags,
        limit=limit,
        cursor=cursor,
        descending=descending,
        valid_at=valid_at,
        include_expired=include_expired,
    )
    return Request("list", "GET", f"{_ns(ns)}/records", params=params)


def _count(
    ns: str,
    filters: dict[str, Any] | None = None,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    thread_id: str | None = None,
    type: str | None = None,
    tags: Sequence[str] | None = None,
    valid_at: Any = None,
    include_expired: bool = False,
) -> Request:
    body = _drop_none(
        filter=filters,
        user_id=user_id,
        agent_id=agent_id,
        thread_id=thread_id,
        type=type,
        tags=tags,
        valid_at=valid_at,
        include_expired=include_expired,
    )
    return Request("count", "POST", f"{_ns(ns)}/records/count", body=body)


def _update(
    ns: str,
    id: str,
    *,
    text: str | None = None,
    metadata: dict[str, Any] | None = None,
    add_tags: Sequence[str] | None = None,
    remove_tags: Sequence[str] | None = None,
    importance: float | None = None,
    type: str | None = None,
    valid_from: Any = None,
    valid_to: Any = None,
    expires_at: Any = None,
    clear: Sequence[str] | None = None,
    expected_version: int | None = None,
) -> Request:
    body = _drop_none(
        text=text,
        metadata=metadata,
        add_tags=add_tags,
        remove_tags=remove_tags,
        importance=importance,
        type=type,
        valid_from=valid_from,
        valid_to=valid_to,
        expires_at=expires_at,
        clear=clear,
        expected_version=expected_version,
    )
    return Request("update", "PATCH", f"{_ns(ns)}/records/{_seg(id, 'id')}", body=body, keyed=True)


def _delete(ns: str, id: str) -> Request:
    return Request("delete", "DELETE", f"{_ns(ns)}/records/{_seg(id, 'id')}", keyed=True)


def _delete_all(
    ns: str,
    filters: dict[str, Any] | None = None,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    thread_id: str | None = None,
    type: str | None = None,
    tags: Sequence[str] | None = None,
    all: bool = False,
) -> Request:
    body = _drop_none(
        filter=filters,
        user_id=user_id,
        agent_id=agent_id,
        thread_id=thread_id,
        type=type,
        tags=tags,
        all=all,
    )
    return Request("delete_all", "POST", f"{_ns(ns)}/records/delete-all", body=body, keyed=True)


def _history(ns: str, id: str) -> Request:
    return Request("history", "GET", f"{_ns(ns)}/records/{_seg(id, 'id')}/history")


def _search(
    ns: str,
    query: str,
    *,
    top_k: int = 10,
    filters: dict[str, Any] | None = None,
    user_id: str | None = None,
    agent_id: str | None = None,
    thread_id: str | None = None,
    type: str | None = None,
    tags: Sequence[str] | None = None,
    mode: str = "hybrid",
    threshold: float | None = None,
    offset: int = 0,
    cursor: str | None = None,
    valid_at: Any = None,
    include_expired: bool = False,
    query_vector: Any = None,
    include_entities: bool = False,
) -> Request:
    if query_vector is not None:
        raise NotSupportedError(
            "query_vector is not sent to the service; pass the query text",
            backend="service",
            capability="query_vector",
        )
    body = _drop_none(
        query=query,
        top_k=top_k,
        filter=filters,
        user_id=user_id,
        agent_id=agent_id,
        thread_id=thread_id,
        type=type,
        tags=tags,
        mode=mode,
        threshold=threshold,
        offset=offset,
        cursor=cursor,
        valid_at=valid_at,
        include_expired=include_expired,
    )
    if include_entities:  # sent only when asked: a service without entities still answers
        body["include_entities"] = include_entities
    return Request("search", "POST", f"{_ns(ns)}/search", body=body)


# ---------------------------------------------------------------------------- entities


def _entity_path(ns: str, id: object, name: str, rest: str = "") -> str:
    # an entity id is a positive integer of the namespace (the route says ge=1)
    if isinstance(id, bool) or not isinstance(id, int) or not 1 <= id < 2**63:
        raise ValidationError(f"entity id: a positive integer, not {id!r}", field=name)
    return f"{_ns(ns)}/entities/{id}{rest}"


def _entities(
    ns: str,
    query: str | None = None,
    *,
    type: str | None = None,
    user_id: str | None = None,
    limit: int = 100,
) -> Request:
    params = _query(query=query, type=type, user_id=user_id, limit=limit)
    return Request("entities", "GET", f"{_ns(ns)}/entities", params=params)


def _entity(ns: str, id: int) -> Request:
    return Request("entity", "GET", _entity_path(ns, id, "id"))


def _relations(
    ns: str, entity_id: int, *, depth: int = 1, types: Sequence[str] | None = None
) -> Request:
    wanted: str | None = None
    if types is not None:
        if isinstance(types, str) or not all(isinstance(t, str) for t in types):
            raise ValidationError("types: a list of relation types", field="types")
        # the route takes them comma-separated; none at all means every type (as Memory)
        wanted = ",".join(types) or None
    params = _query(depth=depth, types=wanted)
    path = _entity_path(ns, entity_id, "entity_id", "/relationships")
    return Request("relations", "GET", path, params=params)


def _records_about(ns: str, entity_id: int, *, limit: int = 100) -> Request:
    path = _entity_path(ns, entity_id, "entity_id", "/records")
    return Request("records_about", "GET", path, params=_query(limit=limit))


def _unlink_entity(ns: str, id: int) -> Request:
    path = _entity_path(ns, id, "id", "/unlink")
    return Request("unlink_entity", "POST", path, keyed=True)


def _entity_history(ns: str, id: int) -> Request:
    return Request("entity_history", "GET", _entity_path(ns, id, "id", "/history"))


# ---------------------------------------------------------------------------- threads


def _thread(ns: str, thread_id: str, rest: str) -> str:
    return f"{_ns(ns)}/threads/{_seg(thread_id, 'thread_id')}/{rest}"


def _add_messages(
    ns: str,
    thread_id: str,
    messages: Sequence[dict[str, Any]],
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    remember: bool = True,
) -> Request:
    body = _drop_none(messages=messages, user_id=user_id, agent_id=agent_id, remember=remember)
    path = _thread(ns, thread_id, "messages")
    return Request("add_messages", "POST", path, body=body, keyed=True)


def _log_event(
    ns: str,
    thread_id: str,
    action: str,
    payload: dict[str, Any] | None = None,
    *,
    user_id: str | None = None,
    actor: str | None = None,
) -> Request:
    body = _drop_none(action=action, payload=payload, user_id=user_id, actor=actor)
    path = _thread(ns, thread_id, "events")
    return Request("log_event", "POST", path, body=body, keyed=True)


def _events(ns: str, thread_id: str, *, since: Any = None, limit: int = 1000) -> Request:
    params = _query(since=since, limit=limit)
    return Request("events", "GET", _thread(ns, thread_id, "events"), params=params)


def _snapshot(ns: str, thread_id: str) -> Request:
    return Request("snapshot", "GET", _thread(ns, thread_id, "snapshot"))


def _set_slots(
    ns: str,
    thread_id: str,
    values: dict[str, Any],
    *,
    expected_version: int | None = None,
    user_id: str | None = None,
) -> Request:
    body = {"values": jsonable(values), **_drop_none(expected_version=expected_version)}
    body.update(_drop_none(user_id=user_id))
    path = _thread(ns, thread_id, "slots")
    return Request("set_slots", "PUT", path, body=body, keyed=True)


def _get_slots(ns: str, thread_id: str) -> Request:
    return Request("get_slots", "GET", _thread(ns, thread_id, "slots"))


# ---------------------------------------------------------------------------- consolidation


def _consolidate(
    ns: str,
    *,
    user_id: str | None = None,
    thread_id: str | None = None,
    dry_run: bool = False,
) -> Request:
    body = _drop_none(user_id=user_id, thread_id=thread_id, dry_run=dry_run)
    return Request("consolidate", "POST", f"{_ns(ns)}/consolidate", body=body, keyed=True)


def _unmerge(ns: str, record_id: str) -> Request:
    path = f"{_ns(ns)}/records/{_seg(record_id, 'record_id')}/unmerge"
    return Request("unmerge", "POST", path, keyed=True)


def _restore_archived(ns: str, record_id: str) -> Request:
    path = f"{_ns(ns)}/records/{_seg(record_id, 'record_id')}/restore-archived"
    return Request("restore_archived", "POST", path, keyed=True)


def _archived(ns: str, *, user_id: str | None = None, limit: int = 100) -> Request:
    params = _query(user_id=user_id, limit=limit)
    return Request("archived", "GET", f"{_ns(ns)}/archived", params=params)


def _summarize_text(ns: str, text: str, *, max_sentences: int | None = None) -> Request:
    body = _drop_none(text=text, max_sentences=max_sentences)
    return Request("summarize_text", "POST", f"{_ns(ns)}/summarize", body=body)


# ---------------------------------------------------------------------------- namespace, admin


def _forget(
    ns: str,
    *,
    user_id: str | None = None,
    thread_id: str | None = None,
    namespace: bool = False,
    compact: bool = False,
) -> Request:
    body = _drop_none(user_id=user_id, thread_id=thread_id, namespace=namespace, compact=compact)
    return Request("forget", "POST", f"{_ns(ns)}/forget", body=body, keyed=True)


def _namespaces(ns: str) -> Request:
    return Request("namespaces", "GET", "/v1/namespaces")


def _stats(ns: str) -> Request:
    return Request("stats", "GET", f"{_ns(ns)}/stats")


def _health(ns: str) -> Request:
    # the components' report is /ready (/health is liveness only); a degraded service
    # answers 503 with the same body: a report, not an error
    return Request("health", "GET", "/ready", ok_statuses=frozenset({200, 503}))


def _doctor(ns: str, *, repair: bool = False) -> Request:
    return Request("doctor", "POST", "/v1/admin/doctor", body={"repair": repair}, repeatable=False)


def _backup(ns: str, path: str | Path) -> Request:
    return Request("backup", "POST", "/v1/admin/backup", download=Path(path))


def _restore(ns: str, path: str | Path) -> Request:
    # replacing the content with the same file twice leaves what replacing it once does
    return Request("restore", "POST", "/v1/admin/restore", upload=_existing(path))


def _export(
    ns: str,
    path: str | Path,
    filters: dict[str, Any] | None = None,
    *,
    all_namespaces: bool = False,
    vectors: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Request:
    body = _drop_none(
        namespace=None if all_namespaces else ns,
        filter=filters,
        all_namespaces=all_namespaces,
        vectors=vectors,
    )
    return Request(
        "export",
        "POST",
        "/v1/admin/export",
        body=body,
        download=Path(path),
        progress=_callback(progress),
    )


def _import_(
    ns: str,
    path: str | Path,
    *,
    keep_namespaces: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Request:
    params = _query(namespace=None if keep_namespaces else ns, keep_namespaces=keep_namespaces)
    return Request(
        "import_",
        "POST",
        "/v1/admin/import",
        params=params,
        upload=_existing(path),
        upload_type="application/x-ndjson",
        repeatable=False,
        progress=_callback(progress),
    )


def _reembed(
    ns: str,
    embedder: Any,
    *,
    batch: int = 256,
    progress: Callable[[int], None] | None = None,
) -> Request:
    if not isinstance(embedder, str):
        raise NotSupportedError(
            "the service re-embeds with an embedder it has; name it (minilm or hash)",
            backend="service",
            capability="embedder object",
        )
    body = {"embedder": embedder, "batch": batch}
    return Request(
        "reembed",
        "POST",
        "/v1/admin/reembed",
        body=body,
        repeatable=False,
        progress=_callback(progress),
    )


ENCODERS: dict[str, Callable[..., Request]] = {
    "add": _add,
    "get": _get,
    "get_many": _get_many,
    "list": _list,
    "count": _count,
    "update": _update,
    "delete": _delete,
    "delete_all": _delete_all,
    "history": _history,
    "search": _search,
    "entities": _entities,
    "entity": _entity,
    "relations": _relations,
    "records_about": _records_about,
    "unlink_entity": _unlink_entity,
    "entity_history": _entity_history,
    "consolidate": _consolidate,
    "unmerge": _unmerge,
    "restore_archived": _restore_archived,
    "archived": _archived,
    "summarize_text": _summarize_text,
    "add_messages": _add_messages,
    "log_event": _log_event,
    "events": _events,
    "snapshot": _snapshot,
    "set_slots": _set_slots,
    "get_slots": _get_slots,
    "forget": _forget,
    "namespaces": _namespaces,
    "stats": _stats,
    "health": _health,
    "doctor": _doctor,
    "backup": _backup,
    "restore": _restore,
    "export": _export,
    "import_": _import_,
    "reembed": _reembed,
}
# Calls that move files name paths on the machine that runs them: over a frame they would
# name the server's files, so frame transports (ZeroMQ) carry only these.
FRAME_OPS: frozenset[str] = frozenset(ENCODERS) - {
    "doctor",
    "backup",
    "restore",
    "export",
    "import_",
    "reembed",
}


def encode(op: str, namespace: str, args: Mapping[str, Any]) -> Request:
    """Return the REST request of ``op`` called with the keyword arguments ``args``.

    Raises:
        ValidationError: an unknown op, or arguments its ``Memory`` method does not take
            (the message names them).
        NotSupportedError: an argument no remote call can carry (a query vector, an
            embedder object).
    """
    encoder = ENCODERS.get(op) if isinstance(op, str) else None
    if encoder is None:
        raise ValidationError(f"unknown op {op!r}; one of: {', '.join(sorted(ENCODERS))}")
    try:
        return encoder(namespace, **args)
    except TypeError as exc:
        raise ValidationError(f"bad arguments for {op}: {_why(exc)}", op=op) from exc


def _why(exc: TypeError) -> str:
    # "list_() got an unexpected keyword argument 'x'" -> drop the Python function name
    text = str(exc)
    return text.split(") ", 1)[1] if ") " in text else text
