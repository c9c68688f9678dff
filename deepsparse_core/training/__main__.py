"""``python -m deepsparse_core.training`` = ``deepsparse train`` (the entry point for torchrun)."""

import argparse
import sys

from ..cli import run_command
from .command import add_train_arguments, cmd_train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepsparse_core.training",
                                     description="Train DiCE (same options as `deepsparse train`).")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar")
    add_train_arguments(parser)
    parser.set_defaults(func=cmd_train)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
