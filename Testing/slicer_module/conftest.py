"""Tests of the DeepSparseSlicer module (the 3D Slicer extension), run with pytest.

Tests marked ``slicer`` need the ``slicer`` package of the ``slicer-core`` wheels (Kitware's Slicer
core libraries on PyPI: a real MRML scene, volume and storage nodes, slice logics; no Qt, no
``slicer.app``) and are skipped with a reason when it is missing. (Never install the unrelated
PyPI package named ``slicer``: it replaces ``slicer/__init__.py``.)

This folder is not called ``slicer``: slicer-core's ``slicer/__init__.py`` extends its package path
with every ``slicer`` folder on ``sys.path`` and imports all modules it finds there, so a test
folder of that name (pytest puts ``Testing/`` on ``sys.path``) would be imported into ``slicer``.
"""

from __future__ import annotations

import sys

import pytest
from slicer_helpers import MODULE_DIR, ROOT, make_scene

for path in (MODULE_DIR, ROOT):  # DeepSparseSlicerLib, deepsparse_core
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def _slicer_core_reason() -> str | None:
    try:
        import slicer
    except ImportError:
        return "needs the slicer-core wheels (pip install slicer-core)"
    if not hasattr(slicer, "vtkMRMLScene"):
        return "the installed 'slicer' package is not slicer-core (pip install slicer-core)"
    return None


SLICER_MISSING = _slicer_core_reason()


def pytest_configure(config):
    config.addinivalue_line("markers", "slicer: needs slicer-core (MRML scene, nodes, slice logic); "
                                       "skipped when it is not installed")


def pytest_collection_modifyitems(config, items):
    if SLICER_MISSING is None:
        return
    skip = pytest.mark.skip(reason=SLICER_MISSING)
    for item in items:
        if item.get_closest_marker("slicer") is not None:
            item.add_marker(skip)


@pytest.fixture
def scene_and_app():
    return make_scene()


@pytest.fixture
def logic(scene_and_app, tmp_path):
    from DeepSparseSlicerLib.logic import DeepSparseLogic

    scene, app = scene_and_app
    return DeepSparseLogic(scene, app, temp_root=tmp_path / "work", user_models_dir=tmp_path / "models")
