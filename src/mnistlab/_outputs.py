"""Outputs that appear whole or not at all, checked before the long work.

A file is written to a temporary name beside its target and renamed onto it (`atomic_path`); a
folder, such as a run, is written into a temporary sibling folder that is renamed into place in
one step (`StagedFolder`), as git and rsync do. Both targets are checked first (`check_output_file`,
and creating the staging folder), so a bad output path fails before any training or drawing.
Every write failure (full disk, no permission) becomes an `OutputError` naming the path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ._io import PRETRAINED_DIR
from ._signals import signals_deferred
from .errors import OutputError, RunExistsError

TEMP_NAME_CHARS = 100  # of the target's name kept in a temporary name, so that it stays under NAME_MAX


def _cannot_write(path: Path, error: OSError) -> OutputError:
    return OutputError(f"{path}: cannot write ({error.strerror or error})")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not every platform or file system answers
        return 255


def _existing_folder(path: Path, target: Path) -> Path:
    """The nearest folder at or above `path` that exists; an error when a file is in the way."""
    for candidate in (path, *path.parents):
        try:
            if not candidate.exists():
                continue
        except OSError as e:
            raise OutputError(f"{candidate}: cannot look it up ({e.strerror or e}), "
                              f"so {target} cannot be written") from None
        if not candidate.is_dir():
            raise OutputError(f"{candidate}: is a file, not a folder, so {target} cannot be written")
        return candidate
    return Path(".")


def _check_name(path: Path, folder: Path) -> None:
    if path.name in ("", ".", ".."):
        raise OutputError(f"{path}: not a file or folder name")
    if len(os.fsencode(path.name)) > _name_max(folder):
        raise OutputError(f"{path}: file name too long ({len(os.fsencode(path.name))} bytes, "
                          f"the limit is {_name_max(folder)})")


def refuse_pretrained_dir(path: Path) -> None:
    """`OutputError` if `path` is in the package's pretrained folder: a command never writes into the install."""
    try:  # as written, and with links followed: either counts
        inside = any(Path(spelled(path)).is_relative_to(os.path.realpath(PRETRAINED_DIR))
                     for spelled in (os.path.abspath, os.path.realpath))
    except (OSError, ValueError):
        return
    if inside:
        raise OutputError(f"{path}: is inside mnistlab's pretrained weights ({PRETRAINED_DIR}), which are part of "
                          "the installed package; write elsewhere")


def make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return the ones this call made, outermost first.

    A folder that appears meanwhile (another process) is not counted as made. On failure the folders
    already made are removed again, and the OSError names the one that failed (its `filename`).
    """
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    created = []
    try:
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                if not path.is_dir():
                    raise
                continue
            created.append(path)
    except OSError:
        remove_folders(created)
        raise
    return created


def remove_folders(created: list[Path]) -> None:
    """Remove folders that `make_folders` made, innermost first, stopping at one no longer empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:  # something else has put a file there meanwhile: leave it
            break


def check_output_file(path: str | Path) -> Path:
    """Check, before the work, that a file can be written at `path` (an atomic write may then follow).

    The target must be a file or new; the nearest existing folder above it must accept a new file,
    which is tested by creating and removing one (permission bits alone mislead, e.g. for root).
    Raises `OutputError` naming the path; creates nothing that stays.
    """
    path = Path(path)
    refuse_pretrained_dir(path)
    folder = _existing_folder(path.parent, path)
    _check_name(path, folder)
    try:
        if path.is_symlink() and not path.exists():
            raise OutputError(f"{path}: is a broken symbolic link")
        if path.is_dir():
            raise OutputError(f"{path}: is a folder; give a file name")
        if path.exists() and not path.is_file():
            raise OutputError(f"{path}: exists and is not a regular file")
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(f"{path}: cannot look it up ({e.strerror or e})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".mnistlab-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{path}: cannot write in {folder} ({e.strerror or e})") from None
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it.

    A failure to write (full disk, no permission) raises `OutputError` naming `path`.
    """
    path = Path(path)
    refuse_pretrained_dir(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:TEMP_NAME_CHARS]}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        yield tmp
        # mkstemp (and some writers) make files private: give the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OutputError):
            raise
        raise _cannot_write(path, e) from None
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask

class StagedFolder:
    """A folder that appears whole or not at all: written into a hidden sibling, then renamed into place.

    Creating one checks the target: a new name, an empty folder, or (with `overwrite`) a folder that
    `replaceable` accepts, such as an earlier run. Anything else — a file, a symbolic link, a folder
    of other files, a parent that is a file or cannot be written — raises `OutputError` at once, so
    the caller learns of it before the long work. Writability is tested by creating the staging
    folder itself (`.NAME.tmp-XXXXXXXX` beside the target), not guessed from permission bits.

    Use it as a context manager: `write` files (or write to `file(name)`), then `publish()`; leaving
    the block without publishing (an error, Ctrl-C) removes the staging folder and any parent folders
    it created.
    """

    def __init__(self, target: str | Path, *, overwrite: bool = False,
                 replaceable: Callable[[Path], bool] = lambda folder: False):
        self.target = Path(target)
        self.replaces = self._check_target(overwrite, replaceable)  # an old folder will be replaced
        try:
            self._created = make_folders(self.target.parent)  # removed again if the folder is not published
        except OSError as e:
            raise OutputError(f"{self.target}: cannot create the folder {e.filename or self.target.parent} "
                              f"({e.strerror or e})") from None
        try:
            self.path = Path(tempfile.mkdtemp(dir=self.target.parent,
                                              prefix=f".{self.target.name[:TEMP_NAME_CHARS]}.tmp-"))
        except OSError as e:
            remove_folders(self._created)
            raise OutputError(f"{self.target}: cannot write in {self.target.parent} ({e.strerror or e})") from None
        self.published = False

    def _check_target(self, overwrite: bool, replaceable: Callable[[Path], bool]) -> bool:
        try:
            return self._target_kind(overwrite, replaceable)
        except OutputError:
            raise
        except OSError as e:  # e.g. a parent folder that may not be searched
            raise OutputError(f"{self.target}: cannot look it up ({e.strerror or e})") from None

    def _target_kind(self, overwrite: bool, replaceable: Callable[[Path], bool]) -> bool:
        """True when the target is an old run to replace, False when it is new or empty; else raise."""
        target = self.target
        refuse_pretrained_dir(target)
        folder = _existing_folder(target.parent, target)
        _check_name(target, folder)
        if target.is_symlink():
            raise OutputError(f"{target}: is a symbolic link; give a real folder or a new name")
        if not target.exists():
            return False
        if not target.is_dir():
            raise OutputError(f"{target}: exists and is not a folder")
        try:
            empty = next(target.iterdir(), None) is None
        except OSError as e:
            raise OutputError(f"{target}: cannot read the folder ({e.strerror or e})") from None
        if empty:
            return False
        if not replaceable(target):
            raise OutputError(f"{target}: is a folder with other files in it (not an mnistlab run); "
                              "choose a new or empty folder")
        if not overwrite:
            raise RunExistsError(target)
        return True

    def file(self, name: str) -> Path:
        """Where to write `name` so that it is published as `target/name`."""
        return self.path / name

    def write(self, name: str, data: bytes | str) -> Path:
        """Write the file `name` into the staging folder; a failure names the file by its published path."""
        path = self.file(name)
        try:
            path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        except OSError as e:
            raise OutputError(f"{self.target / name}: cannot write ({e.strerror or e}); {self.nothing_new()}") from None
        return path

    def publish(self) -> Path:
        """Rename the staging folder onto the target; an old run is moved aside and removed only after."""
        with signals_deferred():
            os.chmod(self.path, 0o777 & ~_umask())  # mkdtemp made it private
            aside = None
            if self.target.exists() and self.replaces:
                aside = Path(tempfile.mkdtemp(dir=self.target.parent,
                                              prefix=f".{self.target.name[:TEMP_NAME_CHARS]}.old-"))
                os.replace(self.target, aside)  # onto the empty folder mkdtemp just made
            try:
                os.replace(self.path, self.target)
            except BaseException as e:
                if aside is not None:  # put the old run back before anything else
                    os.replace(aside, self.target)
                if isinstance(e, OSError):
                    raise OutputError(f"{self.target}: cannot move the finished folder into place "
                                      f"({e.strerror or e}); {self.nothing_new()}") from None
                raise
            self.published = True
            if aside is not None:
                shutil.rmtree(aside, ignore_errors=True)
        return self.target

    def nothing_new(self) -> str:
        """What is on disk when the folder is not published, in words."""
        if self.replaces:
            return f"nothing was saved; the old run in {self.target} is untouched"
        return "nothing was saved"

    def discard(self) -> None:
        """Remove the staging folder (and the parents it created) unless it was published."""
        if self.published:
            return
        with signals_deferred():
            shutil.rmtree(self.path, ignore_errors=True)
            remove_folders(self._created)

    def __enter__(self) -> StagedFolder:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.discard()
