"""Reading files that come from outside, and the JSON text mnistlab writes.

`open_regular_file` opens only a regular file (a FIFO or a device never hangs a reader), `native_path`
spells a path so that a library in C or Rust can open it, `file_sha256` hashes a file in blocks, and
`json_text` is the strict JSON every record is written as. Writing outputs is `mnistlab._outputs`'s job.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import NotRegularFileError, escape_surrogates

# The pretrained weights that ship in the package (`mnistlab.pretrained`): part of the install, never an output.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
HASH_BLOCK = 1 << 20  # bytes read at a time while hashing: a file of any size costs one block of memory

def open_regular_file(path: str | os.PathLike, *, follow_symlinks: bool = True) -> BinaryIO:
    """Open `path` for reading in binary if it is a regular file; `NotRegularFileError` otherwise, never a hang.

    O_NONBLOCK makes opening a FIFO return instead of waiting for a writer (it does nothing to a regular
    file), and the type is read from the opened descriptor (fstat), so a file swapped in after a check
    cannot slip by. Other failures (no such file, no permission) raise as `os.open` raises them; a path
    holding a NUL byte raises ValueError. With `follow_symlinks=False` a symbolic link is refused too,
    by the same open (O_NOFOLLOW), so a link swapped in after a check cannot slip by either: a package
    installs regular files, and a link in its folder points somewhere nobody checked.
    """
    flags = (os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_BINARY", 0) | (0 if follow_symlinks else os.O_NOFOLLOW))
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow_symlinks and os.path.islink(path):
            raise NotRegularFileError(stat.S_IFLNK) from None
        if e.errno != errno.ENXIO:  # ENXIO: a socket (or a device with nothing behind it)
            raise
        fd = None
    try:
        mode = os.stat(path, follow_symlinks=follow_symlinks).st_mode if fd is None else os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(stat.S_IFMT(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise


@contextmanager
def native_path(path: str | os.PathLike) -> Iterator[str]:
    """`path` spelled so that a library in Rust or C (safetensors) can open it: the path itself, or, for a
    name with a byte that is not UTF-8 (Python keeps it as a lone surrogate, which has no UTF-8
    spelling), /dev/fd/N of the file opened here. What mnistlab writes under such a name it reads back."""
    text = os.fspath(path)
    if escape_surrogates(text) == text:
        yield text
        return
    with open_regular_file(path) as file:
        yield f"/dev/fd/{file.fileno()}"


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes as it is on disk (read in blocks), as 64 lowercase hex digits."""
    return file_digest(path, "sha256")


def file_digest(path: str | os.PathLike, algorithm: str, *, follow_symlinks: bool = True) -> str:
    """The hex digest of a regular file by `algorithm` ("sha256", "md5"): a FIFO or a device of that name
    raises `NotRegularFileError` rather than hanging the read."""
    digest = hashlib.new(algorithm, usedforsecurity=False)  # a checksum that checks, it signs nothing
    with open_regular_file(path, follow_symlinks=follow_symlinks) as file:
        while block := file.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def json_text(obj: object) -> str:
    """Strict, indented JSON that mnistlab's readers take back: a float that is not finite (a diverged run's
    loss) becomes null, not `NaN`; a file name's undecodable byte becomes `\\xff` (see `finite_or_null`)."""
    return json.dumps(finite_or_null(obj), indent=2, allow_nan=False) + "\n"


def finite_or_null(obj: object) -> object:
    """`obj` (dicts, lists, numbers, text) with every float that is not finite as None: JSON has no NaN.

    Text is made valid UTF-8 as well: a lone surrogate (an undecodable byte of a path such as a data folder's,
    as Python decodes it) is written as error lines show it (`\\xff`), since no reader takes a lone surrogate.
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str):
        return escape_surrogates(obj)
    if isinstance(obj, dict):
        return {finite_or_null(key): finite_or_null(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_null(value) for value in obj]
    return obj

