"""The folder layout is the architecture: layers import only downward, and no two modules import
each other when they load.

Layers, lowest first: the shared utilities at the package's top (errors, atomic, outputs, resources,
limits, progress, arguments, safetensors_io, devices) <- physics <- data <- model <- reconstruct and
inference <- evaluation <- training <- demo and the command lines (``cli``, every ``__main__``).
Read from the source with ``ast`` (function-level imports count for the layers too).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "deepsparse_core"
LAYERS = {"physics": 1, "data": 2, "model": 3, "reconstruct": 4, "inference": 4, "evaluation": 5,
          "training": 6, "demo": 7, "cli": 7}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    if parts[-1] == "__main__":
        return 7  # an entry point: the command line's layer
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def _imports(module: str, path: Path, module_level_only: bool) -> list[tuple[str, int]]:
    """(imported deepsparse_core module, line) of ``module``; with ``module_level_only``, only the
    statements that run when it loads (not inside functions, classes or ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    if module_level_only:
        nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        nodes += [n for t in tree.body if isinstance(t, ast.Try) for n in t.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    else:
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("deepsparse_core")]
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.startswith("deepsparse_core"):
            found += [(target, node.lineno)] if node.module else [(f"{target}.{a.name}", node.lineno) for a in node.names]
    return found


def test_layers_import_only_downward():
    upward = [f"{m} (line {line}) imports {t}" for m, p in _modules().items()
              for t, line in _imports(m, p, module_level_only=False) if _layer(t) > _layer(m)]
    assert upward == []


def test_no_import_cycle():
    """Not even through a function-level import (issue 17: physics.backends <-> fdk, inference <->
    reconstruct): two modules that need each other are one concern split badly."""
    modules = _modules()
    graph = {m: {t if t in modules else t.rsplit(".", 1)[0] for t, _ in _imports(m, p, module_level_only=False)}
             for m, p in modules.items()}
    graph = {m: {t for t in targets if t in modules and t != m} for m, targets in graph.items()}
    # a package's __init__ importing its own submodules is how packages load, not a cycle of two modules
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open" and not m.startswith(t + "."):
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_checks_see_a_violation(tmp_path, monkeypatch):
    """The checks are not vacuous: an upward import and a cycle written into a copy are found."""
    import shutil

    copy = tmp_path / "deepsparse_core"
    shutil.copytree(ROOT, copy)
    (copy / "physics" / "filters.py").write_text((copy / "physics" / "filters.py").read_text()
                                                 + "\nfrom ..training import loop  # noqa\n\n\ndef f():\n    from . import fdk  # noqa\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", copy)
    import pytest

    with pytest.raises(AssertionError, match="physics.filters"):
        test_layers_import_only_downward()
    with pytest.raises(AssertionError, match="physics.filters"):
        test_no_import_cycle()
