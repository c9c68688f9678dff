"""Python packages ``deepsparse_core`` needs inside Slicer, and installing the missing ones.

Nothing is checked or installed when the module loads. The Widget calls :func:`ensure` before the
first action that needs the engine: it lists what is missing, asks the user once (one question for
all packages) and installs PyTorch through the PyTorch extension's ``PyTorchUtils`` when that
extension is present (it picks the CUDA build matching the GPU driver), everything else (and torch
without the extension) with ``slicer.util.pip_install``.

Keep :data:`REQUIREMENTS` in step with ``[project] dependencies`` of ``pyproject.toml`` (a test
compares them).
"""

from __future__ import annotations

import importlib.util
from typing import Callable

# import name -> pip requirement
REQUIREMENTS = {
    "torch": "torch>=2.1,<3",
    "numpy": "numpy>=1.24",
    "scipy": "scipy>=1.10",
    "SimpleITK": "SimpleITK>=2.3",
    "nibabel": "nibabel>=5.0",
    "yaml": "pyyaml>=6.0",
    "tqdm": "tqdm>=4.60",
    "safetensors": "safetensors>=0.4",
    "PIL": "pillow>=9.0",
    "setuptools": "setuptools>=61",
}
TORCH_MINIMUM = ">=2.1"


def missing() -> dict[str, str]:
    """``{import name: requirement}`` of the packages that cannot be imported."""
    return {name: req for name, req in REQUIREMENTS.items() if importlib.util.find_spec(name) is None}


def question(packages: dict[str, str]) -> str:
    names = ", ".join(req.split(">")[0].split("<")[0] for req in packages.values())
    size = " PyTorch alone is about 1-3 GB." if "torch" in packages else ""
    return (f"DeepSparse needs these Python packages, which are not installed: {names}.{size}\n\n"
            "Install them now into Slicer's Python? (This is asked once; it can take several minutes.)")


def install(packages: dict[str, str], pip_install: Callable[[str], None],
            torch_installer: Callable[[], object] | None = None) -> None:
    """Install ``packages``; torch with ``torch_installer`` when given (PyTorchUtils), else pip."""
    rest = dict(packages)
    if "torch" in rest and torch_installer is not None:
        if torch_installer() is None:
            raise RuntimeError("PyTorch was not installed (declined or failed in the PyTorch extension)")
        rest.pop("torch")
    if rest:
        pip_install(" ".join(rest.values()))


def pytorchutils_installer(ask_confirmation: bool = False):
    """``installTorch`` of the PyTorch extension as a callable, or None without the extension."""
    try:
        import PyTorchUtils
    except ImportError:
        return None
    logic = PyTorchUtils.PyTorchUtilsLogic()
    return lambda: logic.installTorch(askConfirmation=ask_confirmation,
                                      torchVersionRequirement=TORCH_MINIMUM)


class Installer:
    """Asks once per session, then remembers the answer."""

    def __init__(self, ask: Callable[[str], bool], pip_install: Callable[[str], None],
                 torch_installer_factory: Callable[[], object] = pytorchutils_installer):
        self.ask, self.pip_install = ask, pip_install
        self.torch_installer_factory = torch_installer_factory
        self.declined = False

    def ensure(self) -> bool:
        """True when every package is importable (installing after the user agreed)."""
        packages = missing()
        if not packages:
            return True
        if self.declined:
            return False
        if not self.ask(question(packages)):
            self.declined = True
            return False
        install(packages, self.pip_install, self.torch_installer_factory() if "torch" in packages else None)
        importlib.invalidate_caches()
        return not missing()
