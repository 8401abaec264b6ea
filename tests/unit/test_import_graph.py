"""The module graph of ``app/`` and ``compress/`` has no cycles, and HTTP never imports the gRPC package.

Edges are module-level imports, ``if TYPE_CHECKING:`` blocks included (a type-only cycle still ties two modules
together for a reader and for mypy); imports inside functions are deliberate lazy loads and are not edges.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "compress")
SKIP = ("app/grpc/generated",)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if any(str(rel).startswith(s) for s in SKIP):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _top_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports in the module body and in module-level ``if``/``try`` blocks (not in functions or classes)."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            stack.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])


def _targets(node: ast.Import | ast.ImportFrom, here: str, is_pkg: bool, known: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    base = node.module or ""
    if node.level:
        parts = here.split(".")
        anchor = parts if is_pkg else parts[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    out = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
    if base in known and len(out) < len(node.names):
        out.add(base)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports at module level."""
    known = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        is_pkg = path.name == "__init__.py"
        graph[name] = set()
        for node in _top_level_imports(tree):
            graph[name] |= _targets(node, name, is_pkg, known) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_known_edges() -> None:
    """Guards the walker itself: a graph without edges would pass the cycle test trivially."""
    graph = import_graph()
    assert "app.tasks.base" in graph.get("app.tasks.registry", set()), graph.get("app.tasks.registry")
    assert "compress.config" in graph.get("compress.pipeline", set()), graph.get("compress.pipeline")


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles (modules importing each other at module level): " + "; ".join(
        " <-> ".join(c) for c in found
    )


def test_cycle_finder_reports_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_http_does_not_import_grpc() -> None:
    graph = import_graph()
    bad = sorted(
        f"{m} -> {t}" for m, ts in graph.items() if m.startswith("app.api") for t in ts if t.startswith("app.grpc")
    )
    assert not bad, f"the HTTP layer imports the gRPC package: {bad}"


def _all_imports(path: Path) -> set[str]:
    """Every imported module name in a file, lazy imports inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_task_packages_do_not_import_each_other() -> None:
    """Shared code lives in app/tasks/text.py, compress/minilm/, compress/embedding_int8.py, not in a task."""
    tasks = {p.parent.name for p in (ROOT / "app" / "tasks").glob("*/task.py")}
    assert {"ctr", "chat", "recommend", "search"} <= tasks, tasks
    bad = []
    for side in ("app/tasks", "compress"):
        for task in tasks:
            for path in sorted((ROOT / side / task).rglob("*.py")):
                prefix = side.replace("/", ".")
                for name in _all_imports(path):
                    other = name.removeprefix(prefix + ".").split(".")[0] if name.startswith(prefix + ".") else None
                    if other in tasks and other != task:
                        bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, f"task packages importing another task's package: {bad}"
