"""The remote faces promise ``Memory``'s interface: the same verbs with the same parameters
(names, kinds, defaults), an async twin generated from the sync one, every verb in the wire
table, and errors rebuilt from the service's code through the one ERROR_TABLE."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from types import ModuleType

import pytest

from engramdb import AsyncMemory, Memory
from engramdb.client import AsyncClient, Client, ZmqClient
from engramdb.client.decode import DECODERS
from engramdb.client.wire import ENCODERS, FRAME_OPS
from engramdb.errors import (
    ERROR_TABLE,
    AuthenticationError,
    ConflictError,
    EngramError,
    PermissionDeniedError,
    QuotaExceededError,
    StoreError,
    error_from_body,
    status_for,
)
from engramdb.server.routes import ROUTES_BY_VERB

ROOT = Path(__file__).resolve().parents[2]
VERBS = sorted(ROUTES_BY_VERB)


def _shape(fn: object) -> list[tuple[str, object, object]]:
    params = list(inspect.signature(fn).parameters.values())  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in params]


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("face", [Client, ZmqClient])
def test_every_verb_takes_memorys_parameters(face: type, verb: str) -> None:
    assert _shape(getattr(face, verb)) == _shape(getattr(Memory, verb))


@pytest.mark.parametrize("verb", VERBS)
def test_the_async_client_has_every_verb_as_a_coroutine(verb: str) -> None:
    method = getattr(AsyncClient, verb)
    assert inspect.iscoroutinefunction(method)
    assert _shape(method) == _shape(getattr(AsyncMemory, verb))


def test_every_verb_has_an_encoder_and_a_decoder() -> None:
    assert sorted(ENCODERS) == sorted(DECODERS) == VERBS
    assert set(VERBS) > FRAME_OPS and not {"backup", "restore", "export", "import_"} & FRAME_OPS


def test_the_generated_async_verbs_are_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_async_client", ROOT / "scripts" / "gen_async_client.py"
    )
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run python scripts/gen_async_client.py"


@pytest.mark.parametrize("cls", list(ERROR_TABLE), ids=lambda c: c.__name__)
def test_every_error_code_comes_back_as_its_class(cls: type[EngramError]) -> None:
    sent = cls("what was wrong", field="x")
    back = error_from_body(status_for(sent), sent.to_dict())
    assert type(back) is cls
    assert back.message == "what was wrong" and back.details["field"] == "x"


def test_auth_statuses_and_unknown_codes() -> None:
    assert status_for(AuthenticationError("no key")) == 401
    assert status_for(PermissionDeniedError("not yours")) == 403
    assert isinstance(
        error_from_body(401, {"error": "authentication_failed", "message": "m"}),
        AuthenticationError,
    )
    # a code this client does not know: the most general class of its status
    newer = error_from_body(409, {"error": "some_new_conflict", "message": "m"})
    assert type(newer) is ConflictError and not isinstance(newer, QuotaExceededError)
    assert type(error_from_body(503, {"error": "new_store_trouble", "message": "m"})) is StoreError
    odd = error_from_body(418, "not even a dict")
    assert type(odd) is EngramError and "418" in odd.message
