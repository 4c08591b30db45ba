"""The package's import graph: no cycles between blackbox_zo modules (imports inside functions count),
and the engine never imports the objectives (it sees an objective only as a callable)."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

from blackbox_zo._moved import MOVED

PACKAGE = Path(__file__).resolve().parents[1] / "blackbox_zo"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every module named by an import anywhere in the file (relative imports resolved), mapped to a known module."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules and not t.startswith("objectives"):
                t = t.rpartition(".")[0]
            if t:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    # a module's own packages are not edges: importing a sibling runs the package's __init__, which is not a cycle
    return {m: {t for t in imports_of(p, set(files)) if t != m and not m.startswith(t + ".")} for m, p in files.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, f"import cycles: {found}"


def folder_graph(g: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed onto blackbox_zo's folders: an edge a -> b when a module in a imports one in b.
    Top-level modules (the package's `__init__`, `_lazy`, `_moved`) are import plumbing, not a layer."""

    def folder(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None

    out: dict[str, set[str]] = {}
    for m, deps in g.items():
        a = folder(m)
        if a is None:
            continue
        out.setdefault(a, set()).update(b for b in map(folder, deps) if b is not None and b != a)
    return out


LAYERS = [["weights"], ["step", "lm"], ["faces", "vllm"], ["setup"], ["distributed", "prefer"], ["running"]]  # low to high
ORDER = " < ".join(", ".join(layer) for layer in LAYERS)  # as docs/architecture.md writes it


def test_folders_import_only_the_layers_below_them_as_the_docs_draw():
    rank = {folder: i for i, layer in enumerate(LAYERS) for folder in layer}
    g = {a: deps for a, deps in folder_graph(graph()).items() if f"blackbox_zo.{a}" not in MOVED}  # stubs: plumbing
    assert sorted(g) == sorted(rank), "a folder was added or removed: place it in LAYERS (and the docs)"
    upward = sorted(f"{a} -> {b}" for a, deps in g.items() for b in deps if rank[b] >= rank[a])
    assert not upward, f"folders that import their own layer or one above: {upward}"
    assert f"({ORDER})" in " ".join((PACKAGE.parent / "docs" / "architecture.md").read_text().split())


def test_no_folder_cycles():
    """No two folders import each other, even through others (the layer test above says which way they look)."""
    found = cycles(folder_graph(graph()))
    assert not found, f"folders that import each other: {found}"


def test_folder_graph_sees_a_folder_cycle():
    g = {"blackbox_zo.running.run": {"blackbox_zo.prefer.cli"}, "blackbox_zo.prefer.cli": {"blackbox_zo.running.parser"},
         "blackbox_zo.running.parser": set()}
    assert cycles(folder_graph(g)) == [["prefer", "running"]]


def test_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_engine_never_imports_objectives():
    offenders = sorted(m for m, deps in graph().items() if any(d.split(".")[0] == "objectives" for d in deps))
    assert not offenders, f"blackbox_zo modules that import objectives/: {offenders}"


def test_folders_group_the_core():
    """No flat core modules left at the top: each lives in the folder that names its part of the design."""
    # import machinery (exports imported on first use, the stubs of old paths) and the torch-free error objectives/ share
    plumbing = ("__init__", "_moved", "_lazy", "errors", *(old.split(".")[1] for old in MOVED if old.count(".") == 1))
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in plumbing)
    assert top == []


def stub_file(old: str) -> Path:
    """Where the stub of an old path lives: a package when other old paths sit under it."""
    path = PACKAGE.parent.joinpath(*old.split("."))
    return path / "__init__.py" if any(o.startswith(old + ".") for o in MOVED) else path.with_suffix(".py")


@pytest.mark.parametrize("old", MOVED)
def test_every_old_path_imports_with_a_warning_naming_its_new_home(old):
    new = MOVED[old]
    for name in [m for m in sys.modules if m == old or m.startswith(old + ".")]:
        del sys.modules[name]  # a stub warns when it is imported, once per process
    with pytest.warns(DeprecationWarning, match=rf"^{re.escape(old)} moved to {re.escape(new)}: ") as caught:
        __import__(old)  # as an import statement does (importlib.import_module would be the line warned about)
    assert caught[0].filename == __file__  # the warning points at the importing line, not at the import machinery
    stub = sys.modules[old]
    home = importlib.import_module(new)
    public = [n for n in dir(home) if not n.startswith("_")]
    assert public and all(getattr(stub, n) is getattr(home, n) for n in public)  # the same objects, by any name
    assert f"`{new}`" in stub_file(old).read_text()  # the stub names its new home in its docstring


def test_moved_names_still_resolve():
    """`blackbox_zo.weights.VLLMBackend` (0.2) is the class now in blackbox_zo.vllm; vLLM itself loads only on use."""
    import blackbox_zo.weights as weights

    with pytest.warns(DeprecationWarning, match="^blackbox_zo.weights.VLLMBackend moved to blackbox_zo.vllm.backend"):
        assert weights.VLLMBackend is importlib.import_module("blackbox_zo.vllm.backend").VLLMBackend
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        weights.Nope  # noqa: B018


def test_logs_written_before_the_move_still_open(tmp_path):
    """Trap: rewriting module paths after the move also rewrote the trajectory's format name, a file-format
    string that logs from 0.1 carry; they must keep opening."""
    from blackbox_zo.step.trajectory import Trajectory

    log = tmp_path / "old.jsonl"
    log.write_text('{"format": "blackbox_zo.trajectory", "version": 2, "config": {}, "base_fingerprint": null}\n')
    assert Trajectory(log).header["format"] == "blackbox_zo.trajectory"


def backend_uses(path: Path) -> set[str]:
    """Names read off a backend in a file: `backend.x`, `self.backend.x`, `engine.backend.x`."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "backend") or (
                    isinstance(owner, ast.Attribute) and owner.attr == "backend"):
                used.add(node.attr)
    return used


def test_the_backend_protocol_declares_what_the_engine_uses_and_nothing_is_probed():
    """The engine and the faces read a backend only through members the Backend protocol declares (no getattr or
    hasattr to find out what a backend can do)."""
    from blackbox_zo.weights.backend import Backend, DenseBackend

    declared = {n for n in dir(DenseBackend) if not n.startswith("_")} | set(Backend.__annotations__)
    for name in ("step/engine.py", "step/transforms.py", "faces/engine_face.py", "faces/mezo.py", "faces/ask_tell.py"):
        path = PACKAGE / name
        assert backend_uses(path) <= declared, f"{name} uses {sorted(backend_uses(path) - declared)}"
        probes = [n.func.id for n in ast.walk(ast.parse(path.read_text()))
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "hasattr")]
        assert not probes, f"{name} probes with {probes}"
    assert {"evaluate_mode", "population", "map_dense", "apply", "fingerprint"} <= declared
