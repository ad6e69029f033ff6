"""The package's import graph: no circles, and every import goes down the declared layers.

The graph is read from the source with ``ast`` (nothing is imported), one node per module, one
arrow per ``import``/``from ... import`` of another ``interp`` module, wherever it stands: an
import inside a function or under ``TYPE_CHECKING`` counts like one at the top of the file.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "interp"

#: The layers, lowest first: a module may import from its own layer or a lower one, never from a
#: higher one. A prefix names a package and every module inside it. docs/patterns/core.md
#: explains what each layer holds.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("interp.errors", "interp._types", "interp._version")),
    ("core", ("interp.core",)),
    ("figures", ("interp.figures",)),
    ("models", ("interp.models",)),
    ("instruments", ("interp.recording", "interp.gradients", "interp.patching", "interp.sinks")),
    ("training", ("interp.training",)),
    ("probes", ("interp.probes",)),
    ("controls", ("interp.controls",)),
    ("reporting", ("interp.reporting",)),
    ("api", ("interp",)),
    ("cli", ("interp.cli", "interp.__main__")),
]


def _modules() -> dict[str, Path]:
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``interp`` modules it imports (a name imported from a package counts as
    the submodule when one of that name exists, else as the package)."""
    files = _modules()

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    stem = ".".join(parts + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem
                           for a in node.names]
            else:
                continue
            for t in targets:
                target = known(t) if t.split(".")[0] == "interp" else None
                if target is not None and target != mod:
                    graph[mod].add(target)
    return graph


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of the longest prefix that names ``module``."""
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules around it, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    # one arrow of each kind the reader must see: a top-level relative import, a lazy import
    # inside a function, and a submodule imported by name from its package
    assert "interp.core.model" in graph["interp.models"]
    assert "interp.figures.patching" in graph["interp.patching"]
    assert "interp.core.hooks" in graph["interp.patching"]


def test_no_import_circles():
    cycle = _cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_every_module_has_a_layer_and_imports_only_down():
    graph = import_graph()
    up = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
          for m, targets in sorted(graph.items()) for t in sorted(targets)
          if layer_of(t) > layer_of(m)]
    assert up == [], "imports from a higher layer:\n" + "\n".join(up)


def test_the_checks_catch_a_circle_and_a_climb():
    """The two checks above fail on a graph that breaks them (so a pass means something)."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("interp.core.model") < layer_of("interp.figures.sinks") < layer_of(
        "interp.sinks._registers") < layer_of("interp.reporting.pause_compare")
