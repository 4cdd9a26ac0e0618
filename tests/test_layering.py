"""Layering: the installed package stands alone, and the method's stages know no world.

Product code never imports the maintainer tools; discovery, training, generation and
evaluation never import the toy world, the CLI or the demo (a world reaches ``eval``
through the reference-scorer entry points, docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import creaturekit

SRC = Path(creaturekit.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, lazily or not; ``from creaturekit import x`` counts as
    importing ``creaturekit.x`` when x is a module, else the package itself."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            if node.module == "creaturekit":
                for alias in node.names:
                    module = SRC / alias.name
                    is_module = module.is_dir() or module.with_suffix(".py").is_file()
                    found.add(f"creaturekit.{alias.name}" if is_module else "creaturekit.__init__")
    return found


def test_product_code_never_imports_the_maintainer_tools() -> None:
    offenders = {
        str(path.relative_to(SRC)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] == "tools"
        )
        for path in SRC.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_maintainer_tools_are_not_installed_with_the_package() -> None:
    assert not (SRC / "toy" / "train_base.py").exists()
    assert not (SRC / "assets" / "toy-base-parts").exists()  # one copy of the toy VAE
    assert (SRC / "assets" / "toy-base" / "vae").is_dir()


@pytest.mark.parametrize("stage", ["discovery", "training", "generation", "evaluation"])
def test_the_method_stages_know_no_world_and_no_command(stage: str) -> None:
    above = ("creaturekit.toy", "creaturekit.cli", "creaturekit.demo")
    offenders = {
        str(path.relative_to(SRC)): sorted(
            m for m in _imported_modules(path) if m.startswith(above)
        )
        for path in (SRC / stage).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_demo_is_below_the_command_line() -> None:
    """``cli`` calls the demo, never the other way round (no import cycle)."""
    imported = _imported_modules(SRC / "demo.py")
    assert not any(m.startswith("creaturekit.cli") for m in imported), imported


def test_conditioning_is_below_training_and_generation() -> None:
    """training and generation share the conditioning layer; it imports neither, and
    training never imports generation (no cycle)."""
    above = {
        "conditioning": ("creaturekit.training", "creaturekit.generation"),
        "training": ("creaturekit.generation", "creaturekit.evaluation"),
    }
    offenders = {
        str(path.relative_to(SRC)): sorted(m for m in _imported_modules(path) if m.startswith(up))
        for package, up in above.items()
        for path in (SRC / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _top_level_graph() -> dict[str, set[str]]:
    """Edges between the package's top-level modules and subpackages (lazy imports too)."""
    edges: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        source = path.relative_to(SRC).parts[0].removesuffix(".py")
        for module in _imported_modules(path):
            if module.startswith("creaturekit."):
                target = module.split(".")[1]
                if target != source:
                    edges.setdefault(source, set()).add(target)
    return edges


def test_the_import_graph_has_no_cycle() -> None:
    """Every top-level module or subpackage sits in one layer: the graph is acyclic."""
    edges = _top_level_graph()
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*path, target]))
            if target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_every_creaturekit_import_resolves() -> None:
    """Lazy (function-local) imports too: a module renamed or moved breaks no code path that
    the type checker cannot see (mypy is told to ignore missing imports)."""
    import importlib.util

    missing = {
        f"{path.relative_to(SRC)}: {module}"
        for path in SRC.rglob("*.py")
        for module in _imported_modules(path)
        if module.startswith("creaturekit.") and importlib.util.find_spec(module) is None
    }
    assert missing == set()
