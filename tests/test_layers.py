"""The import direction of the package: arrows point one way, down the layers.

Surfaces (``server``, ``cli``, ...) call the facades (``Memory``/``AsyncMemory``) and
``ops``; the facades drive the engine; the engine drives the stores, the cache and the
embedders; everything may use the leaves. An import that points up (a store importing
the engine) is how a layering rots, and it does so quietly, inside a function or under
``if TYPE_CHECKING:``; so every ``import`` and ``from … import`` anywhere in a module
counts here, relative imports resolved. The one check that counts only the imports
executed when a module loads is the cycle check: a cycle through a function-level or
TYPE_CHECKING import cannot leave a module half-initialised. That check also follows the
packages an import runs on the way (``import a.b.c`` runs ``a/b/__init__.py`` first),
except the importer's own enclosing packages, which are loaded before it.

The checker is plain :mod:`ast`: no dependency, nothing imported, so a broken module is
still checked. ``test_the_checker_catches_*`` feed it a small tree with known faults so
that it cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOT = "engramdb"

FACADES = (ROOT, "engramdb.memory", "engramdb._async_memory", "engramdb._facade")
SURFACES = (
    "engramdb.server",
    "engramdb.cli",
    "engramdb.client",
    "engramdb.zmq",
    "engramdb.mcp",
    "engramdb.integrations",
)
LEAVES = (
    "engramdb.models",
    "engramdb.errors",
    "engramdb.config",
    "engramdb.timeutil",
    "engramdb.ids",
    "engramdb.query",
    "engramdb.migrations",
    "engramdb.consistency",
    "engramdb.observe",
    "engramdb.deadline",
    "engramdb.native",
)
ENGINE = ("engramdb.engine",)
STORES = ("engramdb.stores",)
CACHE = ("engramdb.cache",)
OPS = ("engramdb.ops",)
EMBEDDERS = ("engramdb.embedders",)
EXTRACT = ("engramdb.extract",)
# Named by the rules before they exist, so that they are held to them from their first line.
NOT_YET_WRITTEN = {"engramdb.mcp"}
CLIENT = ("engramdb.client",)
# Wrappers over the facades: side-by-side running (dual write, shadow reads, reconcile) and
# the seeds' own APIs. They sit beside the facades, below the surfaces.
WRAPPERS = ("engramdb.sidebyside", "engramdb.compat")


@dataclass(frozen=True)
class Contract:
    """One rule: modules within ``importers`` import nothing within ``forbidden`` and, when
    ``only`` is given, nothing of the package outside ``only``."""

    rule: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None


CONTRACTS = (
    Contract(
        "stores and the cache sit below the engine, the facades, ops and the surfaces",
        importers=STORES + CACHE,
        forbidden=ENGINE + FACADES + OPS + SURFACES + EXTRACT + WRAPPERS,
    ),
    Contract(
        "the engine sits below the facades, ops and the surfaces",
        importers=ENGINE,
        forbidden=FACADES + OPS + SURFACES + WRAPPERS,
    ),
    Contract("the leaves import only other leaves", importers=LEAVES, only=LEAVES),
    Contract(
        "surfaces go through Memory/AsyncMemory and ops, never the engine or a store",
        importers=SURFACES,
        forbidden=ENGINE + STORES,
    ),
    Contract(
        "the client is a surface of its own: it talks to the service and imports only the "
        "leaves (no facade, engine, store, cache, embedder or server)",
        importers=CLIENT,
        only=LEAVES + CLIENT,
    ),
    Contract(
        "legacy source adapters use the leaves and each other, nothing of engramdb that writes "
        "(the writable ones write only to their own legacy store)",
        importers=("engramdb.ops.sources",),
        only=LEAVES + ("engramdb.ops.sources",),
    ),
    Contract(
        "extractors are a component beside the stores, used by the engine",
        importers=EXTRACT,
        only=LEAVES + EXTRACT,
    ),
    Contract(
        "embedders are a component beside the stores, used by the engine",
        importers=EMBEDDERS,
        forbidden=ENGINE + STORES + FACADES + OPS + SURFACES + WRAPPERS,
    ),
    Contract(
        "the side-by-side wrappers and the compat adapters wrap the facades: they import the "
        "facades and the leaves, never the engine, a store, ops or a surface",
        importers=WRAPPERS,
        only=LEAVES + FACADES + WRAPPERS,
    ),
    Contract(
        "the facades know nothing of the wrappers built over them",
        importers=FACADES[1:],
        forbidden=WRAPPERS,
    ),
)

# torch and what sits on it: only the ONNX export, the 'minilm-torch' embedder and the
# 'st:/path' embedder (any local sentence-transformers model) may import them, so the default
# embedder (ONNX Runtime) and every surface stay free of torch.
TORCH_MODULES = ("torch", "sentence_transformers", "transformers")
TORCH_IMPORTERS = (
    "engramdb.embedders.export",
    "engramdb.embedders.minilm",
    "engramdb.embedders.st_path",
)

# (importing module, imported module) -> why this one import may point up.
EXEMPTIONS: dict[tuple[str, str], str] = {
    ("engramdb.engine.migrate", "engramdb.ops.migrate"): (
        "compatibility shim: the README once named engramdb.engine.migrate.migrate_store; "
        "the module re-exports engramdb.ops.migrate lazily, on the first attribute read"
    ),
}


@dataclass(frozen=True)
class Import:
    """One import of ``imported`` by ``importer`` at ``path``:``line``."""

    importer: str
    path: str
    line: int
    imported: str
    at_load: bool
    """Executed when the importer is loaded (not in a function, not under TYPE_CHECKING)."""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}"


def within(module: str, packages: tuple[str, ...]) -> bool:
    """Whether ``module`` is one of ``packages`` or inside one (the root only as itself,
    since every module is inside it)."""
    return any(module == p or (p != ROOT and module.startswith(p + ".")) for p in packages)


def find_modules(package_dir: Path) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file under ``package_dir``."""
    out: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def find_imports(package_dir: Path) -> list[Import]:
    """Every import in every module under ``package_dir``, resolved to module names."""
    modules = find_modules(package_dir)
    found: list[Import] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        finder = _ImportFinder(name, path.name == "__init__.py", set(modules))
        finder.visit(tree)
        shown = path.relative_to(package_dir.parent).as_posix()
        found += [Import(name, shown, line, mod, at_load) for line, mod, at_load in finder.found]
    return found


class _ImportFinder(ast.NodeVisitor):
    """Collects (line, imported module, executed at load) for one module."""

    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.found: list[tuple[int, str, bool]] = []
        self._deferred = 0  # depth of function bodies and TYPE_CHECKING blocks around a node

    @contextmanager
    def _deferring(self) -> Iterator[None]:
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1

    def _add(self, line: int, module: str) -> None:
        found = (line, module, self._deferred == 0)
        if found not in self.found:  # ``from m import a, b`` is one import of m
            self.found.append(found)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:  # these run when the module loads
            self.visit(decorator)
        self.visit(node.args)
        with self._deferring():
            for statement in node.body:
                self.visit(statement)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)
        with self._deferring():
            self.visit(node.body)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        with self._deferring():
            for statement in node.body:
                self.visit(statement)
        for statement in node.orelse:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - (node.level - 1)])
            if node.module:
                base = f"{base}.{node.module}"
        else:
            base = node.module or ""
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(node.lineno, submodule if submodule in self.known else base)

    def visit_Call(self, node: ast.Call) -> None:
        """``importlib.import_module("x")`` and ``__import__("x")`` with a literal name are
        imports too."""
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            target = first.value if isinstance(first, ast.Constant) else None
            if isinstance(target, str) and not target.startswith("."):
                self._add(node.lineno, target)
        self.generic_visit(node)


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def in_package(module: str) -> bool:
    return module == ROOT or module.startswith(ROOT + ".")


def violations(
    imports: list[Import],
    contract: Contract,
    exemptions: dict[tuple[str, str], str] | None = None,
) -> list[Import]:
    """The imports that break ``contract`` (the exempted ones left out), in file order."""
    exempt = EXEMPTIONS if exemptions is None else exemptions
    out = []
    for imp in imports:
        if not within(imp.importer, contract.importers) or not in_package(imp.imported):
            continue
        if (imp.importer, imp.imported) in exempt:
            continue
        if within(imp.imported, contract.forbidden) or (
            contract.only is not None and not within(imp.imported, contract.only)
        ):
            out.append(imp)
    return sorted(out, key=lambda imp: (imp.path, imp.line))


def import_cycles(imports: list[Import], modules: set[str]) -> list[list[Import]]:
    """The strongly connected groups of modules linked by imports executed at load, each
    as the imports that link its members (Tarjan's algorithm)."""
    edges: dict[str, list[Import]] = {m: [] for m in modules}
    for imp in imports:
        if not imp.at_load:
            continue
        parts = imp.imported.split(".")
        loaded = [".".join(parts[:n]) for n in range(1, len(parts) + 1)]
        own = {".".join(imp.importer.split(".")[:n]) for n in range(1, imp.importer.count(".") + 2)}
        for module in loaded:
            if module in modules and module not in own:
                edges[imp.importer].append(Import(**{**vars(imp), "imported": module}))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imp in edges[module]:
            if imp.imported not in index:
                connect(imp.imported)
                low[module] = min(low[module], low[imp.imported])
            elif imp.imported in on_stack:
                low[module] = min(low[module], index[imp.imported])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            groups.append(group)

    for module in sorted(modules):
        if module not in index:
            connect(module)
    out = []
    for group in groups:
        inside = [imp for m in sorted(group) for imp in edges[m] if imp.imported in group]
        if inside:  # a group of one is a cycle only when the module imports itself
            out.append(inside)
    return sorted(out, key=lambda c: c[0].importer)


def _report(found: list[Import]) -> str:
    return "\n".join(str(imp) for imp in found)


@pytest.fixture(scope="module")
def package_imports() -> list[Import]:
    return find_imports(REPO / ROOT)


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.rule)
def test_imports_point_down_the_layers(contract: Contract, package_imports: list[Import]) -> None:
    found = violations(package_imports, contract)
    if found:
        pytest.fail(f"{contract.rule}; these imports break it:\n{_report(found)}", pytrace=False)


def test_only_the_export_and_the_torch_embedder_import_torch(
    package_imports: list[Import],
) -> None:
    heavy = [imp for imp in package_imports if imp.imported.split(".")[0] in TORCH_MODULES]
    found = [imp for imp in heavy if imp.importer not in TORCH_IMPORTERS]
    if found:
        pytest.fail(f"torch imported outside {TORCH_IMPORTERS}:\n{_report(found)}", pytrace=False)
    # Both allowed importers exist and do import it: the rule is not holding vacuously.
    assert {imp.importer for imp in heavy} == set(TORCH_IMPORTERS)


def test_no_import_cycle_through_imports_run_at_load(package_imports: list[Import]) -> None:
    cycles = import_cycles(package_imports, set(find_modules(REPO / ROOT)))
    if cycles:
        pytest.fail(
            "import cycles (the modules of each, then the imports that link them):\n"
            + "\n".join(
                f"{' <-> '.join(sorted({i.importer for i in c}))}\n{_report(c)}" for c in cycles
            ),
            pytrace=False,
        )


def test_every_exemption_is_still_needed(package_imports: list[Import]) -> None:
    present = {(imp.importer, imp.imported) for imp in package_imports}
    stale = [pair for pair in EXEMPTIONS if pair not in present]
    assert not stale, f"exemptions no import needs any more (remove them): {stale}"


def test_every_package_the_rules_name_exists() -> None:
    """A misspelt name would make its rule hold vacuously."""
    modules = set(find_modules(REPO / ROOT))
    named = {p for c in CONTRACTS for p in (*c.importers, *c.forbidden, *(c.only or ()))}
    assert sorted(named - NOT_YET_WRITTEN - modules) == []
    assert sorted(NOT_YET_WRITTEN & modules) == [], "written now: remove from NOT_YET_WRITTEN"


def _tree(base: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return base / ROOT


SYNTHETIC = {
    "engramdb/__init__.py": "from engramdb.memory import Memory\n",
    "engramdb/memory.py": "import engramdb.engine.core\n\nMemory = object\n",
    "engramdb/models.py": "import json\n\nfrom engramdb import errors\n",
    "engramdb/errors.py": "",
    "engramdb/engine/__init__.py": "",
    "engramdb/engine/core.py": "from engramdb.stores import opener\n",
    # imports back that would close a cycle if they ran at load
    "engramdb/engine/chunking.py": "from engramdb.engine import fusion\n",
    "engramdb/engine/fusion.py": (
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        "    from engramdb.engine.chunking import Chunk\n\n\ndef fuse():\n"
        "    from engramdb.engine import chunking\n"
    ),
    "engramdb/engine/migrate.py": (
        "def __getattr__(name):\n    from engramdb.ops import migrate\n\n    return migrate\n"
    ),
    "engramdb/ops/__init__.py": "",
    "engramdb/ops/migrate.py": "from engramdb.stores import opener\n",
    # a store importing the engine at load, through a relative import: also a cycle
    "engramdb/stores/__init__.py": "from ..engine import core\n",
    "engramdb/stores/opener.py": "from . import sql\n",
    "engramdb/stores/sql.py": "import sqlite3\n",
    "engramdb/stores/lazy.py": (
        "import importlib\n\n\ndef later():\n    from engramdb.engine.core import run\n"
        "    return importlib.import_module('engramdb.ops.migrate')\n"
    ),
    "engramdb/stores/typed.py": (
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from .. import memory\n"
        "else:\n    from engramdb import models\n"
    ),
    "engramdb/cache/tier.py": "import engramdb\n",
    "engramdb/query/filters.py": "from engramdb.models import Record\nfrom ..stores.sql import x\n",
}


def test_the_checker_catches_upward_imports_wherever_they_hide(tmp_path: Path) -> None:
    imports = find_imports(_tree(tmp_path, SYNTHETIC))
    stores, engine, leaves = CONTRACTS[0], CONTRACTS[1], CONTRACTS[2]
    assert [str(i) for i in violations(imports, stores, {})] == [
        "engramdb/cache/tier.py:1: engramdb.cache.tier imports engramdb",
        "engramdb/stores/__init__.py:1: engramdb.stores imports engramdb.engine.core",
        "engramdb/stores/lazy.py:5: engramdb.stores.lazy imports engramdb.engine.core",
        "engramdb/stores/lazy.py:6: engramdb.stores.lazy imports engramdb.ops.migrate",
        "engramdb/stores/typed.py:4: engramdb.stores.typed imports engramdb.memory",
    ]
    # the exemption table lets the shim through, and only it
    assert [str(i) for i in violations(imports, engine, {})] == [
        "engramdb/engine/migrate.py:2: engramdb.engine.migrate imports engramdb.ops.migrate"
    ]
    assert violations(imports, engine) == []
    assert [str(i) for i in violations(imports, leaves, {})] == [
        "engramdb/query/filters.py:2: engramdb.query.filters imports engramdb.stores.sql"
    ]
    at_load = {(i.importer, i.imported): i.at_load for i in imports}
    assert at_load[("engramdb.stores.typed", "engramdb.models")]  # the else branch runs
    assert not at_load[("engramdb.stores.typed", "engramdb.memory")]
    assert not at_load[("engramdb.stores.lazy", "engramdb.engine.core")]


def test_the_checker_finds_cycles_only_through_imports_run_at_load(tmp_path: Path) -> None:
    root = _tree(tmp_path, SYNTHETIC)
    imports = find_imports(root)
    back = [str(i) for i in imports if i.importer == "engramdb.engine.fusion" and not i.at_load]
    assert back == [
        "engramdb/engine/fusion.py:4: engramdb.engine.fusion imports engramdb.engine.chunking",
        "engramdb/engine/fusion.py:8: engramdb.engine.fusion imports engramdb.engine.chunking",
    ]
    cycles = import_cycles(imports, set(find_modules(root)))
    # engine.core imports stores.opener, which first runs stores/__init__.py, which imports
    # engine.core: one cycle. chunking <-> fusion is none: fusion's imports back do not run
    # at load (one in a function, one under TYPE_CHECKING).
    assert [[str(i) for i in c] for c in cycles] == [
        [
            "engramdb/engine/core.py:1: engramdb.engine.core imports engramdb.stores",
            "engramdb/stores/__init__.py:1: engramdb.stores imports engramdb.engine.core",
        ]
    ]
