"""The package's import graph: no cycles between blackbox_zo modules (imports inside functions count),
and the engine never imports the objectives (it sees an objective only as a callable)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

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


def test_no_folder_cycles():
    """Folders only look down (step, weights < lm < vllm, faces < setup < distributed, prefer < running)."""
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
    # import machinery (old paths, exports imported on first use) and the torch-free error objectives/ share
    plumbing = ("__init__", "_moved", "_lazy", "errors")
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in plumbing)
    assert top == []


@pytest.mark.parametrize("old, new", [("blackbox_zo.trainer", "blackbox_zo.running.trainer"),
                                      ("blackbox_zo.backends", "blackbox_zo.weights"),
                                      ("blackbox_zo.spaces", "blackbox_zo.weights.spaces"),
                                      ("blackbox_zo.running.config", "blackbox_zo.setup.config"),
                                      ("blackbox_zo.running.assembly", "blackbox_zo.setup.assembly"),
                                      ("blackbox_zo.weights.vllm_worker", "blackbox_zo.vllm.worker")])
def test_old_import_paths_still_work(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_moved_names_still_resolve():
    """`blackbox_zo.weights.VLLMBackend` (0.2) is the class now in blackbox_zo.vllm; vLLM itself loads only on use."""
    import blackbox_zo.weights as weights

    assert "VLLMBackend" in dir(importlib.import_module("blackbox_zo.vllm"))
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
