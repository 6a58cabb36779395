"""The MCP server: engramdb's verbs as tools an LLM can call, over stdio or streamable HTTP.

Built with the official ``mcp`` SDK (2.x, ``MCPServer``). The same tools serve both
transports:

* stdio (``engramdb mcp``): one local client, no key; only the protocol goes to stdout.
* streamable HTTP at ``/mcp`` on the REST service (:func:`mount_mcp`): stateless JSON
  responses, so any worker process can answer any call. The request's key decides the
  namespace through :func:`namespace_for_request`, the one place the key layer plugs in.

Tool arguments use the library's parameter names (``text``, ``query``, ``user_id``,
``thread_id``, ``top_k``, ...); results are the REST response bodies (the same JSON). Bad
arguments and every engramdb error come back as a tool error (``isError``) whose text
starts with the error code of the shared table (``not_found: ...``), never as a crash; an
unexpected exception is logged and answered with a fixed message (it may carry SQL).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Annotated, Any, Literal, Protocol, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from starlette.requests import Request

from engramdb._async_memory import AsyncMemory
from engramdb.errors import EngramError
from engramdb.ops.keys import Principal
from engramdb.server import entity_schemas as es
from engramdb.server import schemas as s
from engramdb.server.auth import PRINCIPAL
from engramdb.server.consolidate_routes import ConsolidationOut
from engramdb.server.logs import accept_request_id, current_request_id, request_id_context

log = logging.getLogger("engramdb.mcp")
F = TypeVar("F", bound=Callable[..., Awaitable[dict[str, Any]]])

INSTRUCTIONS = """Long-term memory for this conversation's user, kept across sessions.
Search it (search_memory) before answering anything that may depend on what the user said
or did before; store durable facts, preferences and decisions with add_memory; keep the raw
turns of a conversation with add_messages and read them back with get_thread; use
get_slots/set_slots for small pieces of working state of a thread (a plan, a step counter);
find the people, places and organisations memories are about with search_entities, and how
they relate with get_entity_relations. Always pass the same user_id for the same person."""

NamespaceArg = Annotated[
    str | None,
    Field(
        description="Namespace (tenant) to use; leave it out: your key's namespace, or the "
        "server's default. Naming another is allowed only with an admin key."
    ),
]
UserArg = Annotated[
    str | None, Field(description="Whose memory this is (the end user's stable id)")
]
AgentArg = Annotated[str | None, Field(description="Which agent wrote or reads it")]
ThreadArg = Annotated[str | None, Field(description="Conversation (thread) it belongs to")]


class NamespaceResolver(Protocol):
    """Decides which namespace one call may use: see :func:`namespace_for_request`."""

    def __call__(self, request: Request | None, requested: str | None, default: str) -> str:
        """Return the namespace; raise an EngramError to refuse the call."""
        ...


# The tools that write: a read-only key may not call them.
WRITE_TOOLS = frozenset(
    {
        "add_memory",
        "update_memory",
        "delete_memory",
        "add_messages",
        "set_slots",
        "consolidate_memory",  # a write even with dry_run: one tool, one rule (as REST)
    }
)
# The tool being run (set by :func:`tool_call`), for the resolver's read-only check.
_current_tool: ContextVar[str] = ContextVar("engramdb_mcp_tool", default="")


def namespace_for_request(request: Request | None, requested: str | None, default: str) -> str:
    """The namespace a tool call runs in: the key decides it.

    ``request`` is the HTTP request (None over stdio, where the local user owns the store);
    ``requested`` the tool's ``namespace`` argument; ``default`` the server's namespace.
    Over stdio, with auth off, or with the admin key, the call runs in ``requested`` (else
    ``default``). A namespace key runs in its own namespace: naming another one, or a
    write tool with a read-only key, is refused with ``PermissionDeniedError``.
    """
    principal = request.scope.get(PRINCIPAL) if request is not None else None
    if not isinstance(principal, Principal) or principal.admin:
        return requested if requested is not None else default
    name = requested if requested is not None else str(principal.namespace)
    principal.require(name, _current_tool.get() in WRITE_TOOLS)
    return name


def _tool_error(exc: EngramError) -> ToolError:
    return ToolError(f"{exc.code}: {exc.message}")


def _json(model: s._Response | es._Out) -> dict[str, Any]:
    out: dict[str, Any] = model.model_dump(mode="json")
    return out


class Tools:
    """The tool functions over one ``AsyncMemory``, each scoped by the namespace resolver."""

    def __init__(self, memory: AsyncMemory, resolve: NamespaceResolver) -> None:
        self.memory = memory
        self.resolve = resolve

    def scoped(self, ctx: Context, namespace: str | None) -> AsyncMemory:
        """The memory view of the namespace this call may use."""
        request = _http_request(ctx)
        name = self.resolve(request, namespace, self.memory.namespace)
        return self.memory.with_namespace(name)


def _http_request(ctx: Context) -> Request | None:
    try:
        request = ctx.request_context.request
    except ValueError:  # no request context (a direct call)
        return None
    return request if isinstance(request, Request) else None


def _call_id(ctx: Context) -> str:
    """The request id of the HTTP request carrying the call (set by the logging middleware,
    or sent as ``X-Request-ID``), else a fresh one (stdio)."""
    request = _http_request(ctx)
    if request is not None:
        rid = getattr(request.state, "request_id", None)
        if isinstance(rid, str):
            return rid
        return accept_request_id(request.headers.get("x-request-id"))
    return current_request_id() or uuid.uuid4().hex


def tool_call(name: str) -> Callable[[F], F]:
    """Wrap a tool: run it under its request id, log one line, turn errors into tool errors.

    An engramdb error becomes ``"<code>: <message>"`` (the message names what was wrong and
    never holds SQL); anything else is logged with its traceback and answered with a fixed
    text, since its message may carry SQL or paths.
    """

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
            ctx = kwargs.get("ctx")
            rid = _call_id(ctx) if isinstance(ctx, Context) else uuid.uuid4().hex
            status = "ok"
            start = time.perf_counter()
            token = _current_tool.set(name)
            with request_id_context(rid):
                try:
                    return await fn(*args, **kwargs)
                except EngramError as exc:
                    status = exc.code
                    raise _tool_error(exc) from exc
                except ToolError:
                    status = "tool_error"
                    raise
                except Exception as exc:
                    status = "internal_error"
                    log.exception("tool %s raised", name)
                    raise ToolError("internal_error: the call failed; see the server log") from exc
                finally:
                    _current_tool.reset(token)
                    log.info(
                        "tool %s %s",
                        name,
                        status,
                        extra={
                            "tool": name,
                            "status": status,
                            "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                        },
                    )

        return run  # type: ignore[return-value]

    return wrap


def _register(server: MCPServer, tools: Tools) -> None:
    """Define the tools of ``TOOL_NAMES`` on ``server``."""

    @server.tool(
        name="add_memory",
        description="Store one durable memory: a fact, preference, decision or event worth "
        "recalling in later sessions (e.g. 'Alice is vegetarian'). Write it as a short, "
        "self-contained sentence. Storing the same text again in the same scope returns the "
        "existing memory (outcome 'deduplicated'). Use add_messages instead for raw "
        "conversation turns. Returns the id to use with get/update/delete_memory.",
    )
    @tool_call("add_memory")
    async def add_memory(
        ctx: Context,
        text: Annotated[str, Field(description="The memory, as a self-contained sentence")],
        user_id: UserArg = None,
        agent_id: AgentArg = None,
        thread_id: ThreadArg = None,
        type: Annotated[
            str | None,
            Field(description="Kind: semantic (default), preference, fact, summary, ..."),
        ] = None,
        tags: Annotated[list[str] | None, Field(description="Labels to filter by later")] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Structured attributes (JSON object)")
        ] = None,
        importance: Annotated[float | None, Field(description="0..1, how much it matters")] = None,
        occurred_at: Annotated[str | None, Field(description="When it happened (ISO-8601)")] = None,
        expires_at: Annotated[
            str | None, Field(description="When to stop recalling it (ISO-8601)")
        ] = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        mem = tools.scoped(ctx, namespace)
        results = await mem.add(
            text,
            user_id=user_id,
            agent_id=agent_id,
            thread_id=thread_id,
            type=type,
            tags=tags,
            metadata=metadata,
            importance=importance,
            occurred_at=occurred_at,
            expires_at=expires_at,
        )
        return _json(s.AddResultOut.of(results[0]))

    @server.tool(
        name="search_memory",
        description="Find the stored memories most relevant to a question or topic, best "
        "first. Use it before answering whenever the user's history, preferences or earlier "
        "decisions could matter. Narrow with user_id (almost always), thread_id, type or "
        "tags. Each hit has the memory's text, id and relevance scores.",
    )
    @tool_call("search_memory")
    async def search_memory(
        ctx: Context,
        query: Annotated[str, Field(description="What to look for, in natural language")],
        user_id: UserArg = None,
        agent_id: AgentArg = None,
        thread_id: ThreadArg = None,
        type: Annotated[str | None, Field(description="Only memories of this kind")] = None,
        tags: Annotated[
            list[str] | None, Field(description="Only memories with all of these")
        ] = None,
        top_k: Annotated[int, Field(description="How many hits to return")] = 10,
        filters: Annotated[
            dict[str, Any] | None,
            Field(description='Filter object, e.g. {"metadata.city": "Lisbon"}'),
        ] = None,
        mode: Annotated[
            Literal["hybrid", "vector", "keyword"],
            Field(description="hybrid (default), vector (meaning) or keyword (exact words)"),
        ] = "hybrid",
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        mem = tools.scoped(ctx, namespace)
        page = await mem.search(
            query,
            top_k=top_k,
            filters=filters,
            user_id=user_id,
            agent_id=agent_id,
            thread_id=thread_id,
            type=type,
            tags=tags,
            mode=mode,
        )
        return _json(
            s.SearchPageOut(
                hits=[s.SearchHitOut.of(h) for h in page.hits], next_cursor=page.next_cursor
            )
        )

    @server.tool(
        name="get_memory",
        description="Read one memory by its id (from add_memory or search_memory), with "
        "its version, which update_memory's expected_version takes.",
    )
    @tool_call("get_memory")
    async def get_memory(
        ctx: Context,
        id: Annotated[str, Field(description="The memory's id")],
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        return _json(s.RecordOut.of(await tools.scoped(ctx, namespace).get(id)))

    @server.tool(
        name="update_memory",
        description="Correct or refine a stored memory when the user says something changed "
        "(e.g. they moved city): new text, tags, metadata or importance. The old version is "
        "kept in its history. Pass expected_version (from get_memory) to fail instead of "
        "overwriting a change made meanwhile.",
    )
    @tool_call("update_memory")
    async def update_memory(
        ctx: Context,
        id: Annotated[str, Field(description="The memory's id")],
        text: Annotated[str | None, Field(description="The new text")] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Replaces the metadata")
        ] = None,
        add_tags: Annotated[list[str] | None, Field(description="Tags to add")] = None,
        remove_tags: Annotated[list[str] | None, Field(description="Tags to remove")] = None,
        importance: Annotated[float | None, Field(description="0..1")] = None,
        type: Annotated[str | None, Field(description="New kind")] = None,
        expires_at: Annotated[str | None, Field(description="ISO-8601")] = None,
        expected_version: Annotated[
            int | None, Field(description="Fail unless the memory is at this version")
        ] = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        rec = await tools.scoped(ctx, namespace).update(
            id,
            text=text,
            metadata=metadata,
            add_tags=add_tags,
            remove_tags=remove_tags,
            importance=importance,
            type=type,
            expires_at=expires_at,
            expected_version=expected_version,
        )
        return _json(s.RecordOut.of(rec))

    @server.tool(
        name="delete_memory",
        description="Delete a memory that is wrong or that the user asked to drop. Its "
        "before-image stays in the history (for erasure the operator uses forget).",
    )
    @tool_call("delete_memory")
    async def delete_memory(
        ctx: Context,
        id: Annotated[str, Field(description="The memory's id")],
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        await tools.scoped(ctx, namespace).delete(id)
        return {"deleted": id}

    @server.tool(
        name="add_messages",
        description="Append conversation turns to a thread, in order, each as "
        "{role, content}; with remember (default) each turn is also searchable. Use it to "
        "keep the transcript; use add_memory for the distilled facts.",
    )
    @tool_call("add_messages")
    async def add_messages(
        ctx: Context,
        thread_id: Annotated[str, Field(description="The conversation's id")],
        messages: Annotated[
            list[s.MessageIn],
            Field(min_length=1, description="Turns: {role, content, occurred_at?, name?}"),
        ],
        user_id: UserArg = None,
        agent_id: AgentArg = None,
        remember: Annotated[bool, Field(description="Also store each turn as a memory")] = True,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        msgs = [m.model_dump(exclude_none=True) for m in messages]
        results = await tools.scoped(ctx, namespace).add_messages(
            thread_id, msgs, user_id=user_id, agent_id=agent_id, remember=remember
        )
        return _json(s.AddResultsOut(results=[s.AddResultOut.of(r) for r in results]))

    @server.tool(
        name="get_thread",
        description="Read a conversation thread back: its events (turns and logged actions, "
        "in order), its slots, and a readable transcript. Use it to resume a conversation.",
    )
    @tool_call("get_thread")
    async def get_thread(
        ctx: Context,
        thread_id: Annotated[str, Field(description="The conversation's id")],
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        snap = await tools.scoped(ctx, namespace).snapshot(thread_id)
        return _json(
            s.SnapshotOut(
                namespace=snap.namespace,
                thread_id=snap.thread_id,
                events=[s.EventOut.of(e) for e in snap.events],
                slots=s.SlotsOut.of(snap.slots),
                checkpoints=[s.CheckpointOut.of(c) for c in snap.checkpoints],
                text=snap.text,
            )
        )

    @server.tool(
        name="get_slots",
        description="Read a thread's working memory: named values (a plan, a step, a "
        "choice) and their version, which set_slots's expected_version takes.",
    )
    @tool_call("get_slots")
    async def get_slots(
        ctx: Context,
        thread_id: Annotated[str, Field(description="The conversation's id")],
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        return _json(s.SlotsOut.of(await tools.scoped(ctx, namespace).get_slots(thread_id)))

    @server.tool(
        name="set_slots",
        description="Write named values of a thread's working memory (null removes one); "
        "other slots stay. Pass expected_version (from get_slots) to fail instead of "
        "overwriting another writer's change.",
    )
    @tool_call("set_slots")
    async def set_slots(
        ctx: Context,
        thread_id: Annotated[str, Field(description="The conversation's id")],
        values: Annotated[dict[str, Any], Field(description="Slot name -> value (null: remove)")],
        expected_version: Annotated[
            int | None, Field(description="Fail unless the slots are at this version")
        ] = None,
        user_id: UserArg = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        slots = await tools.scoped(ctx, namespace).set_slots(
            thread_id, values, expected_version=expected_version, user_id=user_id
        )
        return _json(s.SlotsOut.of(slots))

    @server.tool(
        name="consolidate_memory",
        description="Tidy the memory (the namespace, or one user's or thread's part): merge "
        "near-duplicates, drop expired memories, archive faded unimportant ones, summarize "
        "long threads. Returns what it did; with dry_run it only reports what it would do. "
        "Merges and archives can be undone by the operator.",
    )
    @tool_call("consolidate_memory")
    async def consolidate_memory(
        ctx: Context,
        user_id: UserArg = None,
        thread_id: ThreadArg = None,
        dry_run: Annotated[bool, Field(description="Report the plan, change nothing")] = False,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        report = await tools.scoped(ctx, namespace).consolidate(
            user_id=user_id, thread_id=thread_id, dry_run=dry_run
        )
        return _json(ConsolidationOut.of(report))

    _register_entities(server, tools)


def _register_entities(server: MCPServer, tools: Tools) -> None:
    """Define the entity tools: find entities, read one, walk its relations."""

    @server.tool(
        name="search_entities",
        description="Find the people, organisations, places and things the memories are "
        "about: each with an id, its name, type (PERSON, ORG, GPE, ...), aliases and how "
        "often it is mentioned, most mentioned first. query matches names and aliases.",
    )
    @tool_call("search_entities")
    async def search_entities(
        ctx: Context,
        query: Annotated[
            str | None, Field(description="Part of a name or alias (case-insensitive)")
        ] = None,
        type: Annotated[  # noqa: A002 - the library's parameter name
            str | None, Field(description="Only this entity type, e.g. PERSON or ORG")
        ] = None,
        user_id: UserArg = None,
        limit: Annotated[int, Field(description="At most this many entities")] = 20,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        found = await tools.scoped(ctx, namespace).entities(
            query, type=type, user_id=user_id, limit=limit
        )
        return _json(es.EntitiesOut(entities=[es.EntityOut.model_validate(e) for e in found]))

    @server.tool(
        name="get_entity",
        description="Read one entity (an id from search_entities) with its mentions: the "
        "memories naming it and the sentence each does so in.",
    )
    @tool_call("get_entity")
    async def get_entity(
        ctx: Context,
        entity_id: Annotated[int, Field(description="The entity's id")],
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        found = await tools.scoped(ctx, namespace).entity(entity_id)
        return _json(es.EntityOut.model_validate(found))

    @server.tool(
        name="get_entity_relations",
        description="How an entity relates to others (works_for, lives_in, located_in, "
        "part_of, knows, related_to, likes, owns) within depth hops (1-3): the entities "
        "and relations, each relation with the ids of the memories stating it.",
    )
    @tool_call("get_entity_relations")
    async def get_entity_relations(
        ctx: Context,
        entity_id: Annotated[int, Field(description="The entity's id")],
        depth: Annotated[int, Field(description="Hops to follow, 1 to 3")] = 1,
        types: Annotated[list[str] | None, Field(description="Only these relation types")] = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        graph = await tools.scoped(ctx, namespace).relations(entity_id, depth=depth, types=types)
        return _json(es.EntityGraphOut.model_validate(graph))


TOOL_NAMES = (
    "add_memory",
    "search_memory",
    "get_memory",
    "update_memory",
    "delete_memory",
    "add_messages",
    "get_thread",
    "get_slots",
    "set_slots",
    "consolidate_memory",
    "search_entities",
    "get_entity",
    "get_entity_relations",
)


def build_mcp_server(
    memory: AsyncMemory, resolve: NamespaceResolver = namespace_for_request
) -> MCPServer:
    """The MCP server with engramdb's tools over ``memory`` (not opened or closed here)."""
    from engramdb import __version__

    root = logging.getLogger()
    # MCPServer calls logging.basicConfig, which adds a handler only to a bare root logger:
    # a placeholder keeps the process's own logging configuration as it is.
    placeholder = logging.NullHandler() if not root.handlers else None
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        server: MCPServer = MCPServer(
            "engramdb", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING"
        )
    finally:
        if placeholder is not None:
            root.removeHandler(placeholder)
    _register(server, Tools(memory, resolve))
    return server


def mount_mcp(
    app: Any, memory: AsyncMemory, *, host: str, resolve: NamespaceResolver = namespace_for_request
) -> Callable[[], AbstractAsyncContextManager[None]]:
    """Add streamable HTTP MCP at ``/mcp`` to ``app``; return the lifespan to enter.

    Stateless with JSON responses: a call needs no session held in one process, so it works
    behind ``--workers N`` and a load balancer. On a loopback ``host`` the SDK requires
    local Host and Origin headers (DNS-rebinding protection).
    """
    server = build_mcp_server(memory, resolve)
    sub = server.streamable_http_app(
        streamable_http_path="/mcp", json_response=True, stateless_http=True, host=host
    )
    for route in sub.routes:
        route.app = _naming_route(route, route.app)  # type: ignore[attr-defined]
        app.router.routes.append(route)
    manager = server.session_manager

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with manager.run():
            yield

    return lifespan


def _naming_route(route: Any, inner: Any) -> Any:
    """Wrap a plain Starlette route's app so the request names its route in the scope, as
    FastAPI's own routes do (the access log reads the template from there)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = route
        await inner(scope, receive, send)

    return app
