"""What every command shares: global options, opening the store, parsing JSON arguments."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
import pydantic

from engramdb.config import Settings
from engramdb.embedders.base import EMBEDDER_CHOICES, setting_for_stored
from engramdb.errors import ValidationError
from engramdb.memory import Memory
from engramdb.ops.schema import stored_embedder

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    """The global options, filled by the group and (when repeated there) by each command."""

    url: str | None = None
    namespace: str | None = None
    embedder: str | None = None
    json: bool = False

    def settings(self) -> Settings:
        """Build the Settings: command-line values, then ``ENGRAM_*`` variables, then defaults.

        Raises:
            ValidationError: an ``ENGRAM_*`` variable or option holds an invalid value.
        """
        overrides: dict[str, Any] = {}
        if self.url is not None:
            overrides["url"] = self.url
        if self.namespace is not None:
            overrides["namespace"] = self.namespace
        if self.embedder is not None:
            overrides["embedder"] = self.embedder
        try:
            settings = Settings(**overrides)
        except pydantic.ValidationError as exc:
            raise ValidationError(f"invalid settings: {exc}", field="settings") from exc
        if self.embedder is None and "ENGRAM_EMBEDDER" not in os.environ:
            # The embedder is part of the data: reuse the one the store was built with, so
            # `engramdb --no-model add ...` followed by `engramdb search ...` just works.
            stored = stored_embedder(settings.url)
            update = setting_for_stored(*stored) if stored is not None else None
            if update is not None:
                settings = settings.model_copy(update=update)
        return settings

    def open(self) -> Memory:
        """Open the Memory named by the global options."""
        settings = self.settings()
        return Memory(settings=settings, namespace=settings.namespace)


def state() -> CliState:
    """Return the CliState of the current click context."""
    return click.get_current_context().ensure_object(CliState)


def _set(attr: str, value: Any) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, given: Any) -> None:
        if given is None or given is False:
            return
        setattr(ctx.ensure_object(CliState), attr, value if value is not None else given)

    return callback


def global_options(fn: F) -> F:
    """Add ``--url -n/--namespace --embedder --no-model --json`` (accepted on every command)."""
    return _global_options(fn, embedder=True)


def global_options_but_embedder(fn: F) -> F:
    """Add the global options except ``--embedder``/``--no-model`` (a command uses its own)."""
    return _global_options(fn, embedder=False)


def _global_options(fn: F, embedder: bool) -> F:
    options = [
        click.option(
            "--url",
            envvar=None,
            expose_value=False,
            callback=_set("url", None),
            help="Store URL (default: ENGRAM_URL or sqlite:///engram.db).",
        ),
        click.option(
            "-n",
            "--namespace",
            expose_value=False,
            callback=_set("namespace", None),
            help="Namespace (default: ENGRAM_NAMESPACE or 'default').",
        ),
        click.option(
            "--embedder",
            type=click.Choice(EMBEDDER_CHOICES),
            expose_value=False,
            callback=_set("embedder", None),
            help="Embedder (default: the store's own, else ENGRAM_EMBEDDER or minilm).",
        ),
        click.option(
            "--no-model",
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_set("embedder", "hash"),
            help="Use the hash embedder (no model load); same as --embedder hash.",
        ),
        click.option(
            "--json",
            "json_",
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_set("json", True),
            help="Machine-readable output: JSON on stdout, JSON errors on stderr.",
        ),
    ]
    if not embedder:
        options = [o for o in options if o not in options[2:4]]
    for option in reversed(options):
        fn = option(fn)
    return fn


def filter_options(fn: F) -> F:
    """Add ``--filter JSON`` and the shortcuts ``--user-id --agent-id --thread-id --type --tag``."""
    options = [
        click.option("--filter", "filter_", help='Filter as JSON, e.g. \'{"user_id": "a"}\'.'),
        click.option("--user-id", help="Only this user's records."),
        click.option("--agent-id", help="Only this agent's records."),
        click.option("--thread-id", help="Only this thread's records."),
        click.option("--type", "type_", help="Only records of this type."),
        click.option("--tag", "tags", multiple=True, help="Only records with this tag (repeat)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def filter_kwargs(
    filter_: str | None,
    user_id: str | None,
    agent_id: str | None,
    thread_id: str | None,
    type_: str | None,
    tags: tuple[str, ...],
) -> dict[str, Any]:
    """Turn the filter options into ``Memory`` keyword arguments."""
    return {
        "filters": parse_object(filter_, "--filter"),
        "user_id": user_id,
        "agent_id": agent_id,
        "thread_id": thread_id,
        "type": type_,
        "tags": list(tags) or None,
    }


def parse_json(text: str, option: str) -> Any:
    """Parse a JSON argument; a syntax error is a ValidationError naming the option."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{option} is not valid JSON: {exc}", field=option) from exc


def parse_object(text: str | None, option: str) -> dict[str, Any] | None:
    """Parse a JSON object argument (None stays None)."""
    if text is None:
        return None
    value = parse_json(text, option)
    if not isinstance(value, dict):
        raise ValidationError(f"{option} must be a JSON object", field=option)
    return value
