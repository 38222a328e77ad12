"""The package's import graph has no cycle: no module imports one that imports it back (imports
inside functions count too), and every module imports on its own."""

import ast
import importlib
import pathlib

import pytest

import synth_jax

ROOT = pathlib.Path(synth_jax.__file__).parent


def module_names() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (`from a import b` names a.b when b is a module,
    else a; `import a.b.c` names a.b.c)."""
    modules = module_names()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert "synth_jax.transfer.runs" in graph["synth_jax.transfer.bridged"]
    assert "synth_jax.fractals.family" in graph["synth_jax.fractals.dataset"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("name", [n for n in module_names() if n != "synth_jax.__main__"])
def test_every_module_imports(name):
    importlib.import_module(name)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_training_and_rendering_never_import_the_sequential_references():
    """The NumPy references are for tests and `bench render` only: the CLI's training, transfer
    and rendering verbs reach them through no import."""
    graph = import_graph()
    references = {n for n in graph if n.startswith("synth_jax.fractals.references")}
    assert references, "the references moved: update this test"
    for entry in ("synth_jax.train.pretrain", "synth_jax.transfer.finetune", "synth_jax.fractals"):
        assert not reachable(graph, entry) & references, entry
    engine_users = {n for n in graph if n.startswith("synth_jax.fractals.engine")}
    families = {n for n in graph if n.startswith("synth_jax.fractals.families")}
    for name in engine_users:  # one direction: the engine knows no family
        assert not graph[name] & families, name
