"""Command-line wording shared by every subcommand's parser (no heavy imports: ``--help`` stays fast)."""

from __future__ import annotations

import re

DEVICE_HELP = "auto (CUDA when a GPU is usable, else the CPU), cpu or cuda[:N] (default auto)"


def add_device_argument(parser, default: str | None = "auto") -> None:
    """``--device``, worded and defaulted the same everywhere (``default=None`` where a recipe or a
    resumed run supplies it, which then falls back to auto)."""
    parser.add_argument("--device", default=default, help=DEVICE_HELP)


def check_seed(seed, option: str = "--seed") -> None:
    """Seeds are in [0, 2^63): torch's generators take no more, numpy's no negative one."""
    from .errors import InputError

    if seed is not None and not 0 <= seed < 2 ** 63:
        raise InputError(f"{option} must be in [0, 2^63), got {seed}")


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def plain(text: str | None) -> str | None:
    """Docstring text for ``--help``: reST roles and double backquotes removed."""
    if not text:
        return text
    return _ROLE.sub(lambda m: m.group(1).split(".")[-1], text).replace("``", "")
