"""``python -m deepsparse_core.training`` = ``deepsparse train`` (the entry point for torchrun)."""

import argparse
import sys

from ..errors import DeepSparseError
from ..progress import Cancelled, emit, set_mode
from .command import add_train_arguments, cmd_train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepsparse_core.training",
                                     description="Train DiCE (same options as `deepsparse train`).")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    set_mode(json_lines=args.progress == "json", quiet=args.progress == "none")
    try:
        return cmd_train(args)
    except DeepSparseError as e:
        emit("error", message=str(e))
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Cancelled as e:
        print(f"cancelled: {e}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
