"""User-facing errors: one line, no traceback, non-zero exit from the CLI."""

import re


class DeepSparseError(Exception):
    """An error caused by the user's input or environment (bad file, bad geometry...).

    The command line prints ``error: <message>`` on one line and exits with status 2.
    """


class InputError(DeepSparseError):
    """The input data cannot be used (unreadable, wrong dimensionality, NaN...)."""


class GeometryError(DeepSparseError):
    """The acquisition geometry is invalid or does not match the data."""


def library_reason(exc: BaseException, default: str = "unreadable") -> str:
    """The reason in an ITK, SimpleITK or RTK exception, as one phrase for an error line.

    Their messages put a source location first and sometimes matrices last (RTK's geometry reader
    prints the matrix it read and the one it computed, row by row): the reason is the last line that
    is text, not a row of numbers, without the ``itk::ERROR: Class(0x...):`` prefixes. RTK's
    matrix check becomes one sentence with the largest element difference.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if any("Matrix and parameters are not consistent" in ln for ln in lines):
        rows = [[float(t) for t in ln.split()] for ln in lines if _numeric_row(ln)]
        half = len(rows) // 2
        read, computed = rows[:half], rows[half:]
        diff = ""
        if half and all(len(a) == len(b) for a, b in zip(read, computed)):
            diff = f", largest element difference {max(abs(x - y) for a, b in zip(read, computed) for x, y in zip(a, b)):.6g}"
        return ("a projection's <Matrix> does not match the matrix RTK computes from its angles, distances and "
                f"offsets{diff}")
    text = [ln for ln in lines if not _numeric_row(ln) and not re.fullmatch(r".*\.(cxx|h|hxx|cpp):\d+:", ln)]
    if not text:
        return default
    reason = text[-1]
    reason = re.sub(r"^(Exception thrown in SimpleITK \S+: )", "", reason)
    reason = re.sub(r"^(s?itk::ERROR:|ITK ERROR:)\s*", "", reason)
    reason = re.sub(r"^\w+\(0x[0-9a-fA-F]+\):\s*", "", reason)   # the ITK object that raised it
    reason = re.sub(r"^\[\w+\] \w+: ", "", reason)                # NRRD's "[nrrd] function: "
    return reason.strip() or default


def _numeric_row(line: str) -> bool:
    try:
        [float(t) for t in line.split()]
    except ValueError:
        return False
    return bool(line.split())
