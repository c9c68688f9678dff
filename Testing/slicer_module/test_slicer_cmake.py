"""The extension's CMake files, configured against a stand-in for Slicer's CMake package.

The stand-in records what ``slicerMacroBuildScriptedModule`` and ``slicer_add_python_unittest``
receive and places each script where Slicer's macro would (CTK's rule: a relative script at its
relative path, an absolute one at its path relative to the current build folder), so the test can
check that every module file and the whole ``deepsparse_core`` package reach the module folder.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
from slicer_helpers import MODULE_DIR, ROOT

MODULES_DIR = "lib/Slicer-5.8/qt-scripted-modules"

SLICER_CONFIG = r"""
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "@MODULES_DIR@")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "@MODULES_DIR@")
set(BUILD_TESTING ON)
set(MANIFEST "${CMAKE_BINARY_DIR}/manifest.txt")
file(WRITE "${MANIFEST}" "")
foreach(var EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_CONTRIBUTORS EXTENSION_DESCRIPTION
            EXTENSION_ICONURL EXTENSION_SCREENSHOTURLS EXTENSION_DEPENDS EXTENSION_LICENSE_FILE
            EXTENSION_README_FILE DEEPSPARSE_REPOSITORY_URL)
  file(APPEND "${MANIFEST}" "var ${var}=${${var}}\n")
endforeach()

macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "unknown arguments ${MY_UNPARSED_ARGUMENTS}")
  endif()
  file(APPEND "${MANIFEST}" "module ${MY_NAME} generic_tests=${MY_WITH_GENERIC_TESTS}\n")
  foreach(file ${MY_SCRIPTS})
    if(IS_ABSOLUTE ${file})
      set(src ${file})
      file(RELATIVE_PATH tgt ${CMAKE_CURRENT_BINARY_DIR} ${file})
    else()
      set(src ${CMAKE_CURRENT_SOURCE_DIR}/${file})
      set(tgt ${file})
    endif()
    if(NOT EXISTS ${src})
      message(FATAL_ERROR "nonexistent script ${file}")
    endif()
    file(APPEND "${MANIFEST}" "script ${src}|${tgt}\n")
  endforeach()
  foreach(file ${MY_RESOURCES})
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${file})
      message(FATAL_ERROR "nonexistent resource ${file}")
    endif()
    file(APPEND "${MANIFEST}" "resource ${CMAKE_CURRENT_SOURCE_DIR}/${file}|${file}\n")
  endforeach()
endmacro()

function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT" "" ${ARGN})
  file(APPEND "${MANIFEST}" "unittest ${MY_SCRIPT}\n")
endfunction()
"""


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    tmp = tmp_path_factory.mktemp("cmake")
    stub = tmp / "SlicerStub"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(SLICER_CONFIG.replace("@MODULES_DIR@", MODULES_DIR))
    (stub / "empty.cmake").write_text("")
    build, prefix = tmp / "build", tmp / "install"
    run = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), f"-DSlicer_DIR={stub}",
                          f"-DCMAKE_INSTALL_PREFIX={prefix}"], capture_output=True, text=True)
    if run.returncode != 0 and "CMAKE_C_COMPILER" in run.stderr + run.stdout:
        pytest.skip("no C/C++ compiler for CMake's project() check")
    assert run.returncode == 0, run.stdout + run.stderr
    install = subprocess.run(["cmake", "--install", str(build)], capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    entries = {"script": {}, "resource": {}, "var": {}, "module": [], "unittest": []}
    for line in (build / "manifest.txt").read_text().splitlines():
        kind, rest = line.split(" ", 1)
        if kind in ("script", "resource"):
            src, tgt = rest.split("|")
            entries[kind][tgt] = Path(src)
        elif kind == "var":
            key, value = rest.split("=", 1)
            entries["var"][key] = value
        else:
            entries[kind].append(rest)
    return entries, build, prefix


def test_extension_metadata(configured):
    import ast

    variables = configured[0]["var"]
    assert variables["EXTENSION_CATEGORY"] == "Reconstruction"
    assert variables["EXTENSION_DEPENDS"] == "PyTorch"
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION"):
        assert variables[key]
    # one repository URL: homepage, icon, screenshot and the module's help link follow it
    repo = variables["DEEPSPARSE_REPOSITORY_URL"]
    raw = repo.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main"
    assert variables["EXTENSION_HOMEPAGE"].startswith(repo)
    assert variables["EXTENSION_ICONURL"] == f"{raw}/DeepSparseSlicer.png"
    assert variables["EXTENSION_SCREENSHOTURLS"] == f"{raw}/docs/slicer_compare.png"
    tree = ast.parse((MODULE_DIR / "DeepSparseSlicer.py").read_text())
    urls = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
            if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    assert urls["PROJECT_URL"] == repo
    assert (ROOT / "DeepSparseSlicer.png").is_file() and (ROOT / "docs" / "slicer_compare.png").is_file()
    # our MIT licence is packaged, not Slicer's
    assert Path(variables["EXTENSION_LICENSE_FILE"]).resolve() == (ROOT / "LICENSE").resolve()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert Path(variables["EXTENSION_README_FILE"]).is_file()
    # the description promises bundled models only when there are some, and names the Slicer versions
    bundled = list((ROOT / "deepsparse_core" / "models").glob("*.safetensors"))
    assert ("bundled models" in variables["EXTENSION_DESCRIPTION"]) == bool(bundled)
    assert "Slicer 5.8 or later" in variables["EXTENSION_DESCRIPTION"]


def test_every_module_file_is_listed(configured):
    entries = configured[0]
    assert entries["module"] == ["DeepSparseSlicer generic_tests=TRUE"]
    assert entries["unittest"] == ["DeepSparseSlicer.py"]
    assert "DEEPSPARSE_FULL_SELFTEST" in (MODULE_DIR / "CMakeLists.txt").read_text()
    module_scripts = {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    listed = {t for t in entries["script"] if not t.startswith("deepsparse_core/")}
    assert listed == module_scripts
    resources = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    assert set(entries["resource"]) == resources


def test_the_whole_engine_is_installed_next_to_the_module(configured):
    entries, _, prefix = configured
    core = ROOT / "deepsparse_core"
    expected = {"deepsparse_core/" + p.relative_to(core).as_posix() for p in core.rglob("*.py")
                if "__pycache__" not in p.parts}
    listed = {t: src for t, src in entries["script"].items() if t.startswith("deepsparse_core/")}
    assert set(listed) == expected
    for target, staged in listed.items():
        assert staged.read_bytes() == (ROOT / target).read_bytes()
    import re  # the package's data files (pyproject's package-data line) are the extension's too

    line = re.search(r"^deepsparse_core = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    patterns = re.findall(r'"([^"]+)"', line)
    data = [p for pattern in patterns for p in core.glob(pattern)]
    assert any(p.name == "sample_series.json" for p in data)
    assert any(p.suffix == ".yaml" for p in data)
    for p in data:
        installed = prefix / MODULES_DIR / "deepsparse_core" / p.relative_to(core)
        assert installed.read_bytes() == p.read_bytes(), installed
