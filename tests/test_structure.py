"""The package's shape: no import cycles between modules of ``featurestore/`` and no
private name (``_x``) imported from another module. Read from the source with ``ast``
(imports inside functions count too: a lazy import hides a cycle, it does not remove it;
imports under ``if TYPE_CHECKING:`` do not, as they never run).

KNOWN lists what is still to be restructured; it may only shrink."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "featurestore"

KNOWN_CYCLES: list[set[str]] = []
KNOWN_PRIVATE: set[tuple[str, str]] = set()


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str]]:
    """(module imported, name imported or "") for every featurestore import of a module."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in known:
                    out.append((f"{target}.{alias.name}", ""))
                elif target in known:
                    out.append((target, alias.name))
        elif isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name in known]
    return out


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo += child.orelse
                continue
            todo.append(child)
    return out


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_modules() -> None:
    known = modules()
    edges = {m: {target for target, _ in imports(m, p, known)} - {m} for m, p in known.items()}
    # A package's __init__ re-exporting its modules is not a cycle with them.
    for m in edges:
        edges[m] = {t for t in edges[m] if not (m.startswith(t + ".") and t in known)}
    assert [c for c in cycles(edges) if c not in KNOWN_CYCLES] == []


def test_no_private_names_imported_across_modules() -> None:
    known = modules()
    private = {
        (m, target, name)
        for m, p in known.items()
        for target, name in imports(m, p, known)
        if name.startswith("_") and not name.startswith("__") and target != m
    }
    assert sorted(x for x in private if (x[1], x[2]) not in KNOWN_PRIVATE) == []


MAX_MODULE_LINES = 650  # "split a module before it passes ~600 lines"
MAX_FUNCTION_LINES = 80


def test_modules_and_functions_stay_small() -> None:
    big = {
        m: n
        for m, p in modules().items()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert big == {}
    long = []
    for m, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{m}.{node.name}: {size} lines")
    assert long == []


def test_the_walker_sees_cycles_and_private_names() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [{"a", "b", "c"}]
