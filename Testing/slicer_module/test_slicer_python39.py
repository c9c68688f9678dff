"""The module and the engine it ships run in Slicer 5.8's Python 3.9 (static checks: this machine
may have no 3.9 interpreter).

* Always: every file parses with Python 3.9's grammar (``ast.parse(feature_version=(3, 9))``:
  no ``match``, no ``except*``...); ``X | Y`` annotations only under
  ``from __future__ import annotations`` (so they are never evaluated); none of the 3.10+ library
  calls that a 3.9 grammar check cannot see.
* With ``vermin`` (the test extra; required when ``CI=true``): its full check for 3.9.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess

import pytest
from slicer_helpers import MODULE_DIR, ROOT

SOURCES = sorted([*MODULE_DIR.rglob("*.py"), *(ROOT / "deepsparse_core").rglob("*.py")])
SOURCES = [p for p in SOURCES if "__pycache__" not in p.parts]
# 3.10+ names a grammar check does not catch: module attributes and keyword arguments
NEWER_ATTRIBUTES = {("itertools", "pairwise"), ("contextlib", "chdir"), ("enum", "StrEnum"), ("datetime", "UTC"),
                    ("typing", "TypeAlias"), ("typing", "ParamSpec"), ("typing", "Self"), ("typing", "TypeGuard"),
                    ("typing", "Concatenate"), ("importlib.metadata", "packages_distributions")}
NEWER_MODULES = {"tomllib"}
NEWER_KEYWORDS = {("zip", "strict"), ("dataclass", "slots"), ("dataclass", "kw_only"), ("field", "kw_only")}


def _has_future_annotations(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
               any(a.name == "annotations" for a in n.names) for n in tree.body)


def _annotations(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
                if a is not None and a.annotation is not None:
                    yield a.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _problems(path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
    except SyntaxError as exc:
        return [f"line {exc.lineno}: not Python 3.9 syntax ({exc.msg})"]
    problems = []
    if not _has_future_annotations(tree):
        for annotation in _annotations(tree):
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(annotation)):
                problems.append(f"line {annotation.lineno}: 'X | Y' annotation without "
                                "'from __future__ import annotations'")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems += [f"line {node.lineno}: imports {n} (3.11+)" for n in names if n.split(".")[0] in NEWER_MODULES]
            if isinstance(node, ast.ImportFrom):
                problems += [f"line {node.lineno}: {node.module}.{a.name} is 3.10+" for a in node.names
                             if (node.module, a.name) in NEWER_ATTRIBUTES]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in NEWER_ATTRIBUTES:
                problems.append(f"line {node.lineno}: {node.value.id}.{node.attr} is 3.10+")
        elif isinstance(node, ast.Call):
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            problems += [f"line {node.lineno}: {func}({k.arg}=...) is 3.10+" for k in node.keywords
                         if (func, k.arg) in NEWER_KEYWORDS]
    return problems


def test_sources_are_python_39_compatible():
    assert len(SOURCES) > 40
    found = {str(p.relative_to(ROOT)): _problems(p) for p in SOURCES}
    bad = {k: v for k, v in found.items() if v}
    assert not bad, bad


def test_the_check_catches_what_it_should(tmp_path):
    cases = {"match x:\n    case 1:\n        pass\n": "syntax",
             "def f(x: int | None) -> None:\n    pass\n": "annotation",
             "import tomllib\n": "3.11+",
             "import itertools\nitertools.pairwise([1, 2])\n": "3.10+",
             "zip([1], [2], strict=True)\n": "3.10+"}
    for code, expected in cases.items():
        path = tmp_path / "case.py"
        path.write_text(code)
        assert any(expected in p for p in _problems(path)), (code, _problems(path))
    path.write_text("from __future__ import annotations\n\ndef f(x: int | None) -> None:\n    pass\n")
    assert _problems(path) == []


@pytest.mark.skipif(shutil.which("vermin") is None and os.environ.get("CI") != "true",
                    reason="vermin is not installed (pip install vermin; the test extra has it)")
def test_vermin_finds_nothing_newer_than_python_39():
    assert shutil.which("vermin"), "vermin is missing in CI: the test extra installs it"
    run = subprocess.run(["vermin", "--no-tips", "-t=3.9-", "--violations", "--eval-annotations",
                          "--no-parse-comments", str(MODULE_DIR), str(ROOT / "deepsparse_core")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
