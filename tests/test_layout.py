"""The package's shape (issue 21): every module says what it exports, in at most 20 names and 600 lines, and
no module imports, directly or around a circle, one that imports it back (``TYPE_CHECKING`` and
function-level imports included). Read from the source with ``ast``, so a lazy import cannot hide a cycle."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "resnas"
MODULES = {(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)).removesuffix(".__init__"): p
           for p in sorted(PACKAGE.rglob("*.py"))}


def _static_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def _imports(name: str, path: Path) -> set[str]:
    """The resnas modules that ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in MODULES and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules), or None: depth-first search for a back edge."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)) is not None:
                return found
        state[m] = 2
        path.pop()
        return None

    return next((c for m in sorted(graph) if m not in state and (c := visit(m)) is not None), None)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_exports_at_most_20_names_in_at_most_600_lines(name):
    path = MODULES[name]
    exported = _static_all(ast.parse(path.read_text()))
    if path.name == "__main__.py":
        assert exported is None or exported == []
        return
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) <= 20 and len(path.read_text().splitlines()) <= 600


def test_no_import_cycle_between_resnas_modules():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert sum(map(len, graph.values())) > 50  # the graph was read (resnas's modules import each other)
    # a package imports its own modules; that is not a cycle of jobs
    graph = {m: {n for n in deps if not m.startswith(n + ".")} for m, deps in graph.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
