"""The generator of AsyncMemory fails loudly when memory.py no longer fits its table."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

SOURCE = '''class Memory:
    # --- begin shared methods (AsyncMemory is generated from here to the end marker)

    def get(self, id: str) -> MemoryRecord:
        """Return the record with this id."""
        return self._call("get", self._engine.get, self.namespace, id)

    # --- end shared methods
'''


@pytest.fixture(scope="module")
def gen_async() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_async", ROOT / "scripts" / "gen_async.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_entry_of_the_real_table_applies(gen_async: ModuleType) -> None:
    body = gen_async.substitute(gen_async.shared_methods(SOURCE))
    assert "    async def get(self, id: str)" in body
    assert "return await self._call(" in body


def test_an_entry_that_matches_nothing_is_an_error_naming_it(gen_async: ModuleType) -> None:
    table = (*gen_async.SUBSTITUTIONS, ("self._sync_only(", "await self._async_only("))
    with pytest.raises(gen_async.GeneratorError) as err:
        gen_async.substitute(gen_async.shared_methods(SOURCE), table)
    assert "'self._sync_only('" in str(err.value)
    assert "'await self._async_only('" in str(err.value)


def test_a_call_left_unawaited_is_an_error(gen_async: ModuleType) -> None:
    source = SOURCE.replace("return self._call(", "record = self._call(")
    with pytest.raises(gen_async.GeneratorError) as err:
        gen_async.substitute(gen_async.shared_methods(source), (("    def ", "    async def "),))
    assert "record = self._call(" in str(err.value)


def test_main_exits_non_zero_naming_the_dead_entry(
    gen_async: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = ("def old_name(", "def new_name(")
    monkeypatch.setattr(gen_async, "SUBSTITUTIONS", (*gen_async.SUBSTITUTIONS, dead))
    assert gen_async.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "'def old_name('" in err and "scripts/gen_async.py" in err


def test_a_missing_marker_is_an_error(gen_async: ModuleType) -> None:
    with pytest.raises(gen_async.GeneratorError, match="end shared methods"):
        gen_async.shared_methods(SOURCE.replace("    # --- end shared methods\n", ""))
