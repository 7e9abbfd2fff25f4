"""The `mnistlab` command: a thin layer that parses flags and calls the library.

torch is imported only inside the command handlers, so `mnistlab --help` answers at once.
Bad flags exit with code 2 (argparse's convention), in two lines: the error, then a hint (the
closest valid name, or the command's --help); bad files and devices with code 1; a closed
pipe on stdout with 141, quietly (see `_output`). Ctrl-C exits with 130 and SIGTERM with 143
(the shell's 128 + signal number), after the same clean-up.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .._version import __version__
from ..errors import MnistlabError, one_line
from . import data, evaluate, export, finetune, pictures, predict, read, serve, show, train
from ._output import guard_output
from ._parser import CommandParser

__all__ = ["build_parser", "main"]

# The modules of mnistlab's own dependencies → their pip names: a deployment may install mnistlab without
# some (predicting with an exported .onnx file needs no torch), and a command that needs one says so. The
# extras' packages say so where they are imported (serve, export, onnx_model), naming the extra.
PIP_NAMES = {"torch": "torch", "safetensors": "safetensors", "matplotlib": "matplotlib", "pooch": "pooch",
             "platformdirs": "platformdirs", "requests": "requests", "numpy": "numpy", "PIL": "pillow",
             "scipy": "scipy", "tqdm": "tqdm"}


def build_parser() -> CommandParser:
    parser = CommandParser(prog="mnistlab", description="Handwritten-digit recognition with PyTorch.")
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (train, evaluate, finetune, show, pictures, predict, read, serve, export, data):
        group.add_commands(commands)
    for command in _commands(parser):  # a handler's usage errors speak for its own command, not the top level
        command.set_defaults(command_parser=command)
    return parser


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every command that runs a handler (`train`, `plot grid`, ...), sub-commands included."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        yield parser
    for group in groups:
        for command in dict.fromkeys(group.choices.values()):
            yield from _commands(command)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every clean-up runs the same way."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While a command runs, SIGTERM raises `Terminated` (Python's default would die without cleaning up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@guard_output  # a closed pipe: exit 141, quietly; stdout unwritable: one line, exit 1
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `train` records as its command line
    try:
        with sigterm_interrupts():
            return args.handler(args, args.command_parser)
    except KeyboardInterrupt as e:  # a command that writes re-raises it with what is on disk as its message
        print(f"\nmnistlab: interrupted{f'; {e}' if str(e) else ''}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except MnistlabError as e:  # one line, whatever a file name in it holds
        print(f"mnistlab: error: {one_line(e, None, fold=False)}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        module = (e.name or "").partition(".")[0]
        if module not in PIP_NAMES:
            raise
        print(f"mnistlab: error: {args.command} needs {module}, which is not installed: "
              f"pip install {PIP_NAMES[module]}", file=sys.stderr)
        return 1
    finally:
        if argv is None:  # the process's own command (not a test or a notebook): it ends right after this
            # At exit CPython collects every object once more; with torch loaded that is ~1 s of a 2-core
            # machine. Frozen objects are skipped, and the process frees all its memory anyway.
            gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
