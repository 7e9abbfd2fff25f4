"""The `mnistlab` command: a thin layer that parses flags and calls the library.

torch is imported only inside the command handlers, so `mnistlab --help` answers at once.
Bad flags exit with code 2 (argparse's convention); bad files and devices with code 1; a closed
pipe on stdout with 141, quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from .. import __version__
from ..errors import MnistlabError
from . import pictures, predict, train
from ._args import DEFAULTS
from .predict import INVERT_CHOICES, PREDICT_DEFAULTS

__all__ = ["DEFAULTS", "INVERT_CHOICES", "PREDICT_DEFAULTS", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnistlab", description="Handwritten-digit recognition with PyTorch.")
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (train, pictures, predict):
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code.

    Output goes through a guard: when the reader of stdout goes away (`| head -1`) the command
    ends quietly with 141, as a Unix tool killed by SIGPIPE does; when stdout cannot be written
    (`> /dev/full`) it is a one-line error with exit 1. Never a traceback, nor Python's
    "Exception ignored" at exit.
    """
    real_stdout = sys.stdout
    if real_stdout is not None:
        if hasattr(real_stdout, "reconfigure"):  # a name that is not UTF-8 is shown as \udcff, never a crash
            real_stdout.reconfigure(errors="backslashreplace")
        sys.stdout = _GuardedOutput(real_stdout)
    try:
        try:
            code = _run(argv)
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()  # so that a closed pipe or a full disk is met here, not at exit
    except BrokenPipeError:
        _discard_pending_output(real_stdout, sys.stderr)
        return SIGPIPE_EXIT
    except _OutputWriteError as e:
        _discard_pending_output(real_stdout)
        with contextlib.suppress(OSError):  # stderr may be just as full
            print(f"mnistlab: error: cannot write the output ({e})", file=sys.stderr)
        return 1
    finally:
        sys.stdout = real_stdout
    return code


def _run(argv: Sequence[str] | None) -> int:
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


SIGPIPE_EXIT = 128 + 13  # what a shell reports for a command ended by SIGPIPE (signal 13)


class _OutputWriteError(Exception):
    """stdout cannot be written (a full disk, an I/O error); not a MnistlabError, so no handler reports it."""


class _GuardedOutput:
    """sys.stdout, with its write errors told apart from the OSErrors of other files."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._guard(self._stream.write, text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)

    @staticmethod
    def _guard(call: Callable, *args: object) -> object:
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _OutputWriteError(e.strerror or str(e)) from None


def _discard_pending_output(*streams: TextIO | None) -> None:
    """Point the streams' descriptors at /dev/null, so that what is still buffered in them is
    dropped at exit instead of failing again (Python's own recipe for SIGPIPE)."""
    for stream in streams:
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # None, or an in-memory stream (tests): nothing to flush
            continue
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
