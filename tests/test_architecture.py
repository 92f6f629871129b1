"""The import graph of ``src/medtoken``: imports point downward and never form a circle.

Every ``import`` in the source is read with :mod:`ast`, including imports inside functions and
under ``TYPE_CHECKING`` (a lazy import is still a dependency). The layer order is the README's
("Architecture"); a layer may import itself and any layer below it, never one above it nor a
neighbour on its own level (the names on one level are independent of each other).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medtoken"

# Top to bottom. ``medtoken`` is the package root (public API: create_model, load_model; it
# installs the registry's family loader, so it sits above models).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "medtoken"),
    ("cli",),
    ("benchmark",),  # times train steps with the trainer's optimiser (train.optim)
    ("train",),  # validates through inference
    ("inference",),  # predicts from checkpoints or exports, applies post-processing plans
    ("export", "postprocessing"),
    ("metrics", "plots"),
    ("models",),  # with models/checkpoint.py: saving and loading models is below train/
    ("registry",),  # decorators and tables only; imports no family
    ("tokens",),  # token algorithms, built on the shared blocks of layers/
    ("layers",),
    ("planning",),  # nnU-Net fingerprint and plans, read from data/ only
    ("data", "config"),
    ("utils",),
)
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}

Edge = tuple[str, str, str]  # importer module, imported module, "file:line"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by a (possibly relative) ``from ... import``."""
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    """Every medtoken-internal import of every module (``from pkg import mod`` -> ``pkg.mod``)."""
    edges: list[Edge] = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            where = f"{path.relative_to(SRC.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = _resolve(name, _is_package(path), node)
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
                           for a in node.names]
            else:
                continue
            edges += [(name, t, where) for t in targets if t.split(".")[0] == "medtoken"]
    return list(dict.fromkeys(edges))  # one edge per import line and target


def component(module: str) -> str:
    """``medtoken.models.scd.model`` -> ``models``; the root package is ``medtoken``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(edges: Iterable[Edge]) -> list[str]:
    """Imports of a layer above the importer's, or of a neighbour on the same level."""
    bad = []
    for src, dst, where in edges:
        a, b = component(src), component(dst)
        if a != b and LEVEL[a] >= LEVEL[b]:
            bad.append(f"{where}: {src} ({a}, level {LEVEL[a]}) imports {dst} ({b}, level "
                       f"{LEVEL[b]})")
    return bad


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one node, or with a self-loop."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is ~100 nodes, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1 or v in graph[v]:
                found.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package_of(module: str, modules: dict[str, Path]) -> str:
    """The folder of ``module``; a top-level module (``registry``, ``config``) is its own layer."""
    if _is_package(modules[module]) or module.count(".") == 1:
        return module
    return module.rpartition(".")[0]


def package_edges(edges: Iterable[Edge], modules: dict[str, Path]) -> list[tuple[str, str]]:
    """Edges between folders (packages). A package's ``__init__`` importing its own sub-packages
    (registration, re-exports) is not a dependency of the parent on the child's parent."""
    result = []
    for src, dst, _ in edges:
        a, b = _package_of(src, modules), _package_of(dst, modules)
        if a == b or (_is_package(modules[src]) and b.startswith(f"{src}.")):
            continue
        result.append((a, b))
    return result


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Edge]]:
    modules = _modules()
    return modules, import_edges(modules)


def test_every_top_level_module_has_a_layer(graph: tuple[dict[str, Path], list[Edge]]) -> None:
    modules, _ = graph
    assert {component(m) for m in modules} - set(LEVEL) == set()


def test_imports_point_downward(graph: tuple[dict[str, Path], list[Edge]]) -> None:
    _, edges = graph
    assert len(edges) > 100  # the walk sees the imports (a broken walk would pass vacuously)
    assert upward_imports(edges) == []


def test_no_import_cycle_between_modules(graph: tuple[dict[str, Path], list[Edge]]) -> None:
    _, edges = graph
    assert cycles((a, b) for a, b, _ in edges) == []


def test_no_import_cycle_between_packages(graph: tuple[dict[str, Path], list[Edge]]) -> None:
    modules, edges = graph
    assert cycles(package_edges(edges, modules)) == []


def test_the_checks_catch_a_fake_upward_import_and_a_fake_circle(
        graph: tuple[dict[str, Path], list[Edge]]) -> None:
    modules, edges = graph
    fake_up = ("medtoken.plots.pareto", "medtoken.benchmark.spec", "fake:1")
    assert upward_imports([fake_up]) != []
    fake_sideways = ("medtoken.export.pipeline", "medtoken.train.fit", "fake:2")
    assert upward_imports([fake_sideways]) != []
    with_loop = [(a, b) for a, b, _ in edges] + [("medtoken.utils.errors", "medtoken.registry")]
    assert any({"medtoken.registry", "medtoken.utils.errors"} <= set(c) for c in cycles(with_loop))
    fake_folders = [*edges, ("medtoken.models.scd.model", "medtoken.models.tokenseg.config", ""),
                    ("medtoken.models.tokenseg.model", "medtoken.models.scd.config", "")]
    assert ["medtoken.models.scd", "medtoken.models.tokenseg"] in cycles(
        package_edges(fake_folders, modules))
