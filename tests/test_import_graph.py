"""The module graph has no circle, through module-level or function-level imports.

The layers and the package-level circles are import-linter's contract (pyproject.toml,
tests/test_import_contract.py). This walker checks the two things that contract cannot:

- a circle through a package's ``__init__`` (``pkg/__init__.py`` imports ``pkg.a``, which imports
  ``pkg``): the acyclic-siblings contract compares the children of a package, and the package's
  own ``__init__`` is none of them;
- module circles across ``ar``, ``tokenizer`` and ``weights``: those siblings import each other by
  design (weights builds the model classes for its shape check, the loaders fetch through
  weights), so the contract ignores that package-level circle, and only the modules are left to
  check (``ar.gpt`` must never import ``weights``).

Every ``import`` / ``from ... import`` of every module of gigatok_core and gigatok_cli is read with
``ast`` (inside functions too: a lazy import still ties two modules together), resolved to the
module it loads (``from pkg import sub`` -> ``pkg.sub`` when ``sub`` is a module, else ``pkg``'s
``__init__``), and the graph is searched for strongly connected components.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("gigatok_core", "gigatok_cli")


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the packages (``__init__`` = the package)."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """module -> the internal modules it imports anywhere in its body."""
    files = module_files(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, up level-1 more
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join([*pkg, *([base] if base else [])])
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                    for alias in node.names
                ]
            for target in targets:
                while target and target not in files:  # `import a.b.c` of a name inside a.b.c
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (a -> ... -> a) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
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
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_circle(graph, set(comp), comp[0]) for comp in components]


def _circle(graph: dict[str, set[str]], comp: set[str], start: str) -> list[str]:
    """A shortest path start -> ... -> start inside one component (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is in a component but on no circle")


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------
def test_the_package_imports_form_no_circle() -> None:
    graph = import_graph(REPO)
    assert "gigatok_core.hub.fetch" in graph and "gigatok_cli.main" in graph  # the walk saw the package
    cycles = find_cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


def fake_graph(root: Path, files: dict[str, str]) -> dict[str, set[str]]:
    """Write ``files`` (path under a fake ``gigatok_core`` -> source) and walk their imports."""
    for name, text in {"__init__.py": "", **files}.items():
        path = root / "gigatok_core" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(root, ("gigatok_core",))


def test_a_circle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    graph = fake_graph(
        tmp_path,
        {
            "sub/__init__.py": "from gigatok_core.sub.a import f\n",
            "sub/a.py": "from . import b\n\ndef f():\n    return b\n",
            "sub/b.py": "def g():\n    from gigatok_core.c import h\n    return h\n",
            "c.py": "def h():\n    import gigatok_core.sub.a.f\n",  # a name inside a module
        },
    )
    assert graph["gigatok_core.sub.a"] == {"gigatok_core.sub.b"}
    assert graph["gigatok_core.c"] == {"gigatok_core.sub.a"}
    assert find_cycles(graph) == [
        ["gigatok_core.c", "gigatok_core.sub.a", "gigatok_core.sub.b", "gigatok_core.c"]
    ]
    assert find_cycles(fake_graph(tmp_path, {"c.py": "def h():\n    return 1\n"})) == []


def test_a_circle_through_an_init_is_found(tmp_path: Path) -> None:
    graph = fake_graph(
        tmp_path,
        {
            "sub/__init__.py": "from gigatok_core.sub.a import f\n",
            "sub/a.py": "def f():\n    from gigatok_core.sub import f\n    return f\n",
        },
    )
    assert find_cycles(graph) == [["gigatok_core.sub", "gigatok_core.sub.a", "gigatok_core.sub"]]
