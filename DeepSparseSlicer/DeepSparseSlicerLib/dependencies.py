"""Python packages ``deepsparse_core`` needs inside Slicer, and installing the missing ones.

Nothing is checked or installed when the module loads. The Widget calls :meth:`Installer.ensure`
before the first action that needs the engine: it lists the packages that are missing or outside
their version range (read from the installed distributions, without importing them), asks the
user once, installs PyTorch through the PyTorch extension's ``PyTorchUtils`` (it picks the CUDA
build that matches the GPU driver) and the rest with ``slicer.util.pip_install``. Without the
PyTorch extension, torch is not pip-installed (that would silently be a CPU-only build on
Windows): the user is told to install the extension, as SlicerTotalSegmentator and
SlicerMONAIAuto3DSeg do.

Keep :data:`REQUIREMENTS` in step with ``[project] dependencies`` of ``pyproject.toml`` (a test
compares them).
"""

from __future__ import annotations

import contextlib
import importlib.util
import platform
import re
import subprocess
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
    "PIL": "pillow>=9.0",  # the panel draws no captioned figure (the package needs 10.1 for those)
    "setuptools": "setuptools>=61",
}
TORCH_RANGE = REQUIREMENTS["torch"][len("torch"):]  # what PyTorchUtils.installTorch is asked for
NO_PYTORCH_EXTENSION = ("DeepSparse needs PyTorch{why}. Install the PyTorch extension from the Extensions "
                        "Manager (it installs the PyTorch build that matches your GPU driver), restart "
                        "Slicer and try again.")

INTEL_MAC_NUMPY2 = ("DeepSparse cannot run in this Slicer on an Intel Mac: Slicer ships NumPy {numpy}, and the last "
                    "PyTorch built for Intel Macs (2.2) needs NumPy 1 (it cannot make tensors from NumPy 2 "
                    "arrays). Use Slicer 5.8 (NumPy 1) on this Mac, or another computer.")


def _version_tuple(text: str) -> tuple:
    """(2, 13, 0) from '2.13.0+cpu', '2.1.0rc1'...: the leading numbers of each dotted part."""
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~ ]", requirement, maxsplit=1)[0]


def in_range(version: str, requirement: str) -> bool:
    """Whether ``version`` satisfies the comparisons (>=, >, <=, <, ==, !=) of ``requirement``."""
    have = _version_tuple(version)
    for op, bound in re.findall(r"(>=|<=|==|!=|>|<)\s*([\w.]+)", requirement):
        want = _version_tuple(bound)
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        ok = {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b, "==": a == b, "!=": a != b}[op]
        if not ok:
            return False
    return True


def installed_version(requirement: str) -> str | None:
    """The installed distribution's version (no import), None when it is not found."""
    from importlib import metadata

    try:
        return metadata.version(requirement_name(requirement))
    except metadata.PackageNotFoundError:
        return None


def missing() -> dict[str, str]:
    """``{import name: requirement}`` of the packages that cannot be imported or whose installed
    version is outside the requirement's range."""
    out = {}
    for name, requirement in REQUIREMENTS.items():
        if importlib.util.find_spec(name) is None:
            out[name] = requirement
            continue
        version = installed_version(requirement)
        if version is not None and not in_range(version, requirement):
            out[name] = requirement
    return out


def platform_problem(system: str | None = None, machine: str | None = None, numpy_version: str | None = None,
                     torch_version: str | None = None) -> str | None:
    """Why the engine cannot run in this Slicer at all, or None (defaults: this machine, the installed
    versions). PyTorch stopped building for Intel (x86-64) Macs at 2.2, built against NumPy 1, and
    Slicer 5.10+ ships NumPy 2: ``torch.from_numpy`` then fails. Installing NumPy 1 into Slicer's
    Python would downgrade what Slicer itself runs on, so the module refuses with a message instead."""
    system, machine = system or platform.system(), machine or platform.machine()
    if system != "Darwin" or machine not in ("x86_64", "i386"):
        return None
    numpy_version = numpy_version or installed_version("numpy")
    if numpy_version is None or _version_tuple(numpy_version) < (2,):
        return None
    torch_version = torch_version or installed_version("torch")
    if torch_version is not None and _version_tuple(torch_version) >= (2, 3):
        return None  # a build that knows NumPy 2 (not one of PyTorch's Intel-Mac wheels)
    return INTEL_MAC_NUMPY2.format(numpy=numpy_version)


def question(packages: dict[str, str], torch_by_extension: bool = True) -> str:
    lines = []
    for name, requirement in packages.items():
        have = installed_version(requirement) if importlib.util.find_spec(name) is not None else None
        state = f"installed {have}, needs {requirement}" if have else requirement
        how = " (through the PyTorch extension; about 1-3 GB)" if name == "torch" and torch_by_extension else ""
        lines.append(f"  - {state}{how}")
    return ("DeepSparse needs these Python packages:\n" + "\n".join(lines) + "\n\n"
            "Install them now into Slicer's Python? (It can take several minutes. "
            "Restart Slicer afterwards if a package was upgraded.)")


def install(packages: dict[str, str], pip_install: Callable[[str], None],
            torch_installer: Callable[[], object] | None = None) -> None:
    """Install ``packages``: torch with ``torch_installer`` (PyTorchUtils; required for torch), the
    rest with ``pip_install``. Raises ``RuntimeError`` with a message for the user."""
    rest = dict(packages)
    if "torch" in rest:
        if torch_installer is None:
            raise RuntimeError(NO_PYTORCH_EXTENSION.format(why=f" ({rest['torch']})"))
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
    return lambda: logic.installTorch(askConfirmation=ask_confirmation, torchVersionRequirement=TORCH_RANGE)


class Installer:
    """Asks when an action needs missing packages (a "no" holds for that action only: the next one
    asks again); :attr:`message` says what went wrong. ``busy(text)`` is a context manager shown
    around the installation (the panel's wait cursor and message: pip can block for minutes)."""

    def __init__(self, ask: Callable[[str], bool], pip_install: Callable[[str], None],
                 torch_installer_factory: Callable[[], object] = pytorchutils_installer, busy=None):
        self.ask, self.pip_install = ask, pip_install
        self.torch_installer_factory = torch_installer_factory
        self.busy = busy or (lambda text: contextlib.nullcontext())
        self.message = ""

    def ensure(self) -> bool:
        """True when every package is importable in range (installing after the user agreed), and
        this Slicer can run the engine at all (:func:`platform_problem`)."""
        problem = platform_problem()
        if problem:
            self.message = problem
            return False
        packages = missing()
        if not packages:
            return True
        torch_installer = self.torch_installer_factory() if "torch" in packages else None
        if "torch" in packages and torch_installer is None:  # nothing to ask: say what to do
            self.message = NO_PYTORCH_EXTENSION.format(why=f" ({packages['torch']})")
            return False
        if not self.ask(question(packages)):
            self.message = "DeepSparse needs its Python packages; they were not installed (you are asked again next time)."
            return False
        try:
            with self.busy(f"Installing {', '.join(packages.values())}: this can take several minutes..."):
                install(packages, self.pip_install, torch_installer)
        except RuntimeError as exc:
            self.message = str(exc)
            return False
        except (subprocess.CalledProcessError, OSError) as exc:  # pip itself failed
            code = f" (exit status {exc.returncode})" if isinstance(exc, subprocess.CalledProcessError) else f": {exc}"
            self.message = (f"installing {', '.join(packages.values())} failed{code}; pip's output is in the "
                            "Python console log")
            return False
        importlib.invalidate_caches()
        left = missing()
        self.message = f"still missing or out of range: {', '.join(left.values())}" if left else ""
        return not left
