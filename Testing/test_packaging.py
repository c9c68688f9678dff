"""The installed package holds its data files: every file of deepsparse_core that is not Python is
named by pyproject's package-data (presets, bundled models), and every pattern there matches."""

import fnmatch
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "deepsparse_core"


def test_package_data_names_every_data_file_of_the_engine():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["deepsparse_core"]
    data = [p.relative_to(CORE).as_posix() for p in CORE.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data, "the engine ships presets and models"
    assert [f for f in data if not any(fnmatch.fnmatch(f, pat) for pat in patterns)] == []
    for pattern in patterns:
        if "safetensors" in pattern or pattern.endswith(".yaml"):
            assert any(fnmatch.fnmatch(f, pattern) for f in data), pattern


def test_the_package_exposes_the_readme_api_lazily():
    """Issue 17: ``import deepsparse_core`` gives the README's entry points without importing torch."""
    import subprocess
    import sys

    code = ("import sys, deepsparse_core as ds; assert 'torch' not in sys.modules, 'torch imported'; "
            "names = ['Geometry', 'simulate', 'reconstruct', 'evaluate', 'DiceReconstructor', 'read_volume', "
            "'write_volume']; assert all(callable(getattr(ds, n)) for n in names); assert set(names) <= set(dir(ds))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    import deepsparse_core

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        deepsparse_core.nothing  # noqa: B018


def test_reconstruct_is_callable_whichever_import_came_first():
    """``deepsparse_core.reconstruct`` names both a submodule and the README's function: after
    ``from deepsparse_core.reconstruct import METHODS`` (the submodule imported first) the package
    attribute is the module, which must still be callable (and keep its attributes)."""
    import subprocess
    import sys

    code = ("from deepsparse_core.reconstruct import METHODS; import deepsparse_core as ds; "
            "assert callable(ds.reconstruct) and ds.reconstruct.METHODS == METHODS; "
            "import deepsparse_core.reconstruct as r; assert r is ds.reconstruct and r.OPTIONS")
    for first in (code, "import deepsparse_core as ds; f = ds.reconstruct; " + code):
        run = subprocess.run([sys.executable, "-c", first], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
