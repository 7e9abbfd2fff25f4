"""Standard output that cannot fail loudly: a closed pipe ends a command quietly, a full disk in one line.

`mnistlab ... | head -1` closes the pipe while the command is still writing; `> /dev/full` makes
every write fail. Python would print a traceback, then "Exception ignored" at exit. `guard_output`
wraps the CLI's `main` so that, for every command:

- a closed pipe (on stdout or stderr) ends the command with exit code 141, as a Unix tool killed
  by SIGPIPE does (`yes | head -1` exits 141 too), and nothing on stderr;
- stdout that cannot be written is one line, `mnistlab: error: cannot write the output (...)`, exit 1.

`say` tells a person at a terminal what a command is doing before a wait of seconds, and
`wrote` reports each file a command wrote, saying so when it replaced one the user did not name.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ..errors import escape, escape_surrogates
from ..pretrained import is_pretrained_name

SIGPIPE_EXIT = 128 + 13  # what a shell reports for a command ended by SIGPIPE (signal 13)


def say(text: str) -> None:
    """Print `text` ("evaluating pretrained:cnn on its test set...") on stderr, before the work it names.

    Only on a terminal: piped output and logs stay exactly what the command produces.
    """
    stream = sys.stderr
    if stream is not None and stream.isatty():
        print(escape(text), file=stream, flush=True)


def model_shown(argument: str, path: object) -> str:
    """How a header names a model: a shipped one by its `pretrained:` name, not the folder it is installed in."""
    return argument if is_pretrained_name(argument) else str(path)


def existed(path: str | os.PathLike) -> bool:
    """Whether a file is at `path` now, before a command writes it (so that `wrote` can say it was replaced)."""
    try:
        return os.path.isfile(path)
    except (OSError, ValueError):  # a name too long or with a NUL: the write reports it
        return False


def wrote(path: str | os.PathLike, *, replaced: bool = False) -> None:
    """`wrote PATH` on stdout; a default file that was already there says so, as it is gone."""
    print(f"wrote {Path(path)}{' (replacing the one that was there)' if replaced else ''}")


def guard_output(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate `main` so that write errors on stdout (and a closed pipe on stderr) end it cleanly."""

    @functools.wraps(main)
    def guarded(*args: object, **kwargs: object) -> int:
        real_stdout = sys.stdout
        guard = None if real_stdout is None else _GuardedOutput(real_stdout)
        if guard is not None:
            if hasattr(real_stdout, "reconfigure"):  # a character the terminal cannot show is escaped, not a crash
                real_stdout.reconfigure(errors="backslashreplace")
            sys.stdout = guard
        failure: OSError | None = None
        try:
            try:
                code = main(*args, **kwargs)
            finally:
                if guard is not None:
                    guard.flush()  # so that a closed pipe or a full disk is met here, not at exit
        except SystemExit:
            if guard is None or guard.failure is None:  # --help and bad flags, unless --help met a closed pipe
                raise
        except BrokenPipeError as e:  # on stdout or stderr
            failure = e
        except _OutputWriteError:
            pass
        finally:
            sys.stdout = real_stdout
        failure = failure or (guard.failure if guard is not None else None)  # also one that was swallowed (argparse)
        if failure is None:
            return code
        if isinstance(failure, BrokenPipeError):
            _discard_pending_output(real_stdout, sys.stderr)
            return SIGPIPE_EXIT
        _discard_pending_output(real_stdout)
        with contextlib.suppress(OSError):  # stderr may be just as full
            print(f"mnistlab: error: cannot write the output ({failure.strerror or failure})", file=sys.stderr)
        return 1

    return guarded


class _OutputWriteError(Exception):
    """stdout cannot be written (a full disk, an I/O error); not a MnistlabError, so no handler reports it."""


class _GuardedOutput:
    """sys.stdout, remembering the first error in writing it, its write errors told apart from other files'."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.failure: OSError | None = None

    def write(self, text: str) -> int:
        if not text.isascii():  # an undecodable byte of a file name, shown as error lines show it: \xff
            text = escape_surrogates(text)
        return self._guard(self._stream.write, text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)

    def _guard(self, call: Callable, *args: object) -> object:
        try:
            return call(*args)
        except OSError as e:
            self.failure = self.failure or e
            if isinstance(e, BrokenPipeError):
                raise
            raise _OutputWriteError(e.strerror or str(e)) from None


def _discard_pending_output(*streams: TextIO | None) -> None:
    """Point the streams' descriptors at /dev/null, so that what is still buffered in them is
    dropped at exit instead of failing again (Python's own recipe for SIGPIPE)."""
    for stream in streams:
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # None, or an in-memory stream (tests): nothing to drop
            continue
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def image_paths(arguments: list[str]) -> tuple[list[str], list[str]]:
    """The image files the IMAGE arguments name (folders and globs expanded, every occurrence kept), and the
    arguments that named none, escaped for printing. Entries skipped inside a folder are said on stderr."""
    from ..errors import ImageError
    from ..prediction import expand_argument

    expanded = [(argument, *expand_argument(argument)) for argument in arguments]
    paths = [path for _, found, _ in expanded for path in found]
    empty = [escape(argument) for argument, found, _ in expanded if not found]
    for _, _, skipped in expanded:
        for entry in skipped:
            print(f"mnistlab: skipped {escape(entry)}", file=sys.stderr)
    if not paths:
        raise ImageError(f"no images found in {', '.join(empty)}")
    return paths, empty
