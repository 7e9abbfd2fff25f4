"""The `mnistlab` command: a thin layer that parses flags and calls the library.

torch is imported only inside the command handlers, so `mnistlab --help` answers at once.
Bad flags exit with code 2 (argparse's convention); bad files and devices with code 1; a closed
pipe on stdout with 141, quietly (see `_output`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import MnistlabError
from . import pictures, predict, serve, train
from ._args import DEFAULTS
from ._output import guard_output
from .predict import INVERT_CHOICES, PREDICT_DEFAULTS

__all__ = ["DEFAULTS", "INVERT_CHOICES", "PREDICT_DEFAULTS", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnistlab", description="Handwritten-digit recognition with PyTorch.")
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (train, pictures, predict, serve):
        group.add_commands(commands)
    return parser


@guard_output  # a closed pipe: exit 141, quietly; stdout unwritable: one line, exit 1
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args, parser)
    except KeyboardInterrupt:
        print("\nmnistlab: interrupted; nothing was saved", file=sys.stderr)
        return 130
    except MnistlabError as e:
        print(f"mnistlab: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
