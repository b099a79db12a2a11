"""The package's shape, read from its source: no import circle (function-level imports
included), no oversized module, and no import of mcem or of a required dependency (numpy,
scipy, emcee) hidden inside a function: only optional or heavy dependencies (matplotlib, tqdm,
ArviZ, Dask, ...) are imported lazily."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mcem"
MAX_LINES = 520


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(mods: dict):
    """(importer, imported module, line, at module level?) for every import of an mcem module."""
    out = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        is_pkg = path.name == "__init__.py"
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node)
                # "from . import x" names a submodule; "from .m import f" names module m
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for n in names:
                out.append((mod, n, node.lineno, id(node) in top))
    return out


def _owner(name: str, mods: dict) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _graph():
    mods = _modules()
    graph = {m: set() for m in mods}
    for mod, name, _, _ in _imports(mods):
        target = _owner(name, mods)
        if target is None or target == mod:
            continue
        if mods[mod].name == "__init__.py" and target.startswith(mod + "."):
            continue  # a package importing its own submodules
        graph[mod].add(target)
        # importing a submodule runs its package's __init__ first
        parent = target.rpartition(".")[0]
        while parent and parent != mod and not mod.startswith(parent + "."):
            graph[mod].add(parent)
            parent = parent.rpartition(".")[0]
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_inside_mcem():
    cycles = _cycles(_graph())
    assert not cycles, f"import circles (function-level imports included): {cycles}"


def test_the_circle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_hidden_inside_a_function():
    mods = _modules()
    hidden = []
    for mod, name, line, top in _imports(mods):
        if not top and name.split(".")[0] in {"mcem", "numpy", "scipy", "emcee"}:
            hidden.append(f"{mods[mod].relative_to(ROOT.parent)}:{line} imports {name}")
    assert not hidden, "imports inside functions (only optional dependencies may be imported lazily):\n" + "\n".join(hidden)


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_no_source_file_over_about_500_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT.parent)} has {n} lines; split it by idea"
