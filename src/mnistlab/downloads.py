"""Where a dataset's files are on this machine, and verified, cached downloads of the ones that are not.

A dataset that ships with mnistlab (MNIST) is read from the package; one that a Debian package
installs (Fashion-MNIST: dataset-fashion-mnist) from `system_root()/<dataset>/`, every file's
decompressed content checked against its pinned SHA-256 as it is read; any other is downloaded.
Each downloaded file goes into `cache_root()/<dataset>/` only after its MD5 matched the one pinned in
`mnistlab.dataset_info`. pooch does the fetching (streaming, a progress bar, hash checking) and
writes into a private staging folder beside the cache files; the checked file is renamed into
place from there, and the staging folder is removed whatever happens (a 404, a timeout, a hash
mismatch, a full disk, Ctrl-C). So no path leaves an unchecked file, or pooch's temporary file,
where a later load could find it. pooch and requests are imported only when a file is fetched.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._io import NotRegularFileError, file_digest, open_regular_file
from ._outputs import make_folders, remove_folders
from .dataset_info import BUNDLED_ROOT, DATASETS, FILE_STEMS, SYSTEM_ROOT, DatasetInfo
from .errors import DataError

CACHE_ENV = "MNISTLAB_DATA_DIR"
SYSTEM_ENV = "MNISTLAB_SYSTEM_DATASETS"  # a folder standing in for /usr/share/datasets (tests, other distributions)
TIMEOUT = 30.0  # seconds to connect, and seconds a server may stay silent mid-transfer, before a URL counts as failed
MAX_DOWNLOAD_BYTES = 100 * 2**20  # the largest published file is 30 MB; a server sending more is not sending it
STAGING_PREFIX = ".download-"
STALE_SECONDS = 24 * 3600  # a staging folder this old belongs to a killed process (SIGKILL, power cut)
STATUSES = ("ok", "missing", "corrupt")


def cache_root() -> Path:
    """Where fetched datasets live: $MNISTLAB_DATA_DIR, else the user's cache folder for mnistlab.

    The latter is `pooch.os_cache("mnistlab")` (e.g. ~/.cache/mnistlab on Linux), named through platformdirs,
    which pooch itself uses, so that listing the cache does not import pooch.
    """
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mnistlab"))


def system_root() -> Path:
    """Where Debian's dataset packages install their folders: $MNISTLAB_SYSTEM_DATASETS, else /usr/share/datasets."""
    chosen = os.environ.get(SYSTEM_ENV)
    return Path(chosen).expanduser() if chosen else SYSTEM_ROOT


def system_folder(info: DatasetInfo) -> Path | None:
    """The folder `info.debian_package` installs, when it is installed (the folder exists); else None."""
    if not info.debian_package:
        return None
    folder = system_root() / info.name
    return folder if folder.is_dir() else None


def source_kind(info: DatasetInfo, data_dir: str | os.PathLike | None = None) -> str:
    """Where `--dataset` reads `info`'s files from, the first that applies: "data-dir" (given), "bundled"
    (MNIST), "system" (its Debian package's folder, when installed) or "cache" (downloaded on first use)."""
    if data_dir:
        return "data-dir"
    if info.bundled:
        return "bundled"
    return "system" if system_folder(info) is not None else "cache"


def describe_source(info: DatasetInfo, data_dir: str | os.PathLike | None = None) -> str:
    """`source_kind` in words, for a line that says where a split was read from."""
    kind = source_kind(info, data_dir)
    if kind == "system":
        return f"{system_folder(info)} (Debian package {info.debian_package})"
    return {"data-dir": f"--data-dir {data_dir}", "bundled": "the bundled copy", "cache": "the cache"}[kind]


def system_dataset(folder: Path) -> DatasetInfo | None:
    """The dataset whose installed Debian package folder `folder` is; None for any other folder.

    Whoever reads such a folder, by any path, checks every file against the dataset's pinned content
    SHA-256s and refuses a mismatch (`mnistlab.data.load_split`).
    """
    for info in DATASETS.values():
        system = system_folder(info)
        if system is not None and system.resolve() == folder.resolve():
            return info
    return None


def dataset_folder(info: DatasetInfo, root: Path | None = None) -> Path:
    """Where a dataset's files are: the copy bundled with mnistlab (MNIST), else its cache folder under `root`."""
    if info.bundled:
        return BUNDLED_ROOT / info.name
    return (root or cache_root()) / info.name


def md5_of(path: Path) -> str:
    """The MD5 of a regular file (a FIFO or a device of that name raises `NotRegularFileError`, never hangs)."""
    return file_digest(path, "md5")  # MD5 is what torchvision pins; it checks, it does not sign


def content_problems(info: DatasetInfo, folder: Path) -> dict[str, str | None]:
    """{file name: None, or why it is not the pinned file} for each of the dataset's four .gz files in `folder`.

    Each is decompressed and its content's SHA-256 compared with `info.content_sha256` (how a copy with
    recompressed .gz files is known: the bundled one, Debian's). A symbolic link, a FIFO or any other
    file that is not regular is refused unopened; a missing file reads "missing".
    """
    return {f"{stem}.gz": _content_problem(folder / f"{stem}.gz", info.content_sha256[stem]) for stem in FILE_STEMS}


def _content_problem(path: Path, sha256: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open_regular_file(path, follow_symlinks=False) as file, gzip.GzipFile(fileobj=file) as content:
            while chunk := content.read(1 << 20):
                digest.update(chunk)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except NotRegularFileError as e:
        return f"is {e.kind}, not a regular file"
    except (EOFError, zlib.error, gzip.BadGzipFile):
        return "is not a whole gzip file (truncated or corrupt)"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if digest.hexdigest() != sha256:
        return "its content differs from the pinned SHA-256 (changed or truncated)"
    return None


def file_status(info: DatasetInfo, folder: Path | None = None) -> dict[str, str]:
    """{file name: "ok" | "missing" | "corrupt"} for each of the dataset's .gz files in `folder`, each re-hashed.

    `folder` defaults to `dataset_folder(info)`. A downloaded file is checked by the MD5 of the published
    file; the bundled copy, whose files are recompressed, by the SHA-256 of each file's content.
    """
    folder = folder or dataset_folder(info)
    if not info.md5:
        return {name: "ok" if problem is None else "missing" if problem == "missing" else "corrupt"
                for name, problem in content_problems(info, folder).items()}
    status = {}
    for name, digest in info.md5.items():
        try:
            status[name] = "ok" if md5_of(folder / name) == digest else "corrupt"
        except (FileNotFoundError, NotADirectoryError):  # NotADirectory: the cache root is a file
            status[name] = "missing"
        except OSError:  # a folder or FIFO of that name, no permission
            status[name] = "corrupt"
    return status


def fetch(info: DatasetInfo, root: Path | None = None, *, timeout: float = TIMEOUT, progress: bool = True) -> Path:
    """Make sure the cache holds every file of `info`, each with its pinned MD5; return the dataset's folder.

    A file already there is re-hashed and kept when it matches; a missing or corrupt one is fetched
    (`fetch_file`) and replaces it only once the download matched. Raises `DataError` when a file
    cannot be had from any URL.
    """
    if info.md5 is None:
        raise DataError(f"{info.name}: ships with mnistlab; there is nothing to download")
    folder = dataset_folder(info, root)
    for name, status in file_status(info, folder).items():
        if status == "ok":
            continue
        try:
            fetch_file(name, info.md5[name], [base + name for base in info.urls], folder, timeout=timeout,
                       progress=progress)
        except DataError as e:
            if status == "corrupt":
                raise DataError(f"{e}; the cached copy {folder / name} is corrupt and was not used: "
                                f"`mnistlab data download {info.name}` replaces it once a URL above answers") from None
            raise
    return folder


def fetch_file(name: str, md5: str, urls: list[str], folder: Path, *, timeout: float = TIMEOUT,
               progress: bool = True) -> Path:
    """Download `name` into `folder` from the first of `urls` that serves it with MD5 `md5`; return its path.

    A 404, a connection error, a timeout, a transfer broken off or a hash mismatch moves on to the
    next URL; when all fail, one `DataError` names the file and each URL's reason.
    """
    try:
        created = make_folders(folder)
    except OSError as e:
        raise DataError(f"{folder}: cannot create the cache folder ({e.strerror or e}); "
                        f"set ${CACHE_ENV} to a folder you can write") from None
    _remove_stale_staging(folder)
    try:
        return _fetch_from_first(name, md5, urls, folder, timeout, progress)
    except BaseException:  # a failed or interrupted fetch leaves no folder it made, either
        remove_folders(created)
        raise


def _fetch_from_first(name: str, md5: str, urls: list[str], folder: Path, timeout: float, progress: bool) -> Path:
    failures = []
    for url in urls:
        try:
            with _staging(folder) as staging, _quiet_pooch():
                if progress:
                    print(f"fetching {url}", file=sys.stderr, flush=True)  # beside the progress bar, not in the output
                got = _retrieve(url, name, md5, staging, timeout, progress)
                os.replace(got, folder / name)  # checked: renamed into place whole
            return folder / name
        except OSError as e:
            if isinstance(e, _request_errors()):  # requests' errors are OSErrors too
                failures.append(f"{url}: {_reason(e, timeout)}")
                continue
            raise DataError(f"{folder / name}: cannot write to the cache ({e.strerror or e})") from None
        except _FileTooLarge:
            failures.append(f"{url}: sent more than {MAX_DOWNLOAD_BYTES:,} bytes, far more than the file is")
        except ValueError as e:  # pooch's hash mismatch
            failures.append(f"{url}: {_reason(e, timeout)}")
    raise DataError(f"{name}: could not be fetched: {'; '.join(failures)}")


def _retrieve(url: str, name: str, md5: str, staging: Path, timeout: float, progress: bool) -> str:
    import pooch

    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout)

    def capped(url: str, output_file: str, pooch_: object) -> None:
        with open(output_file, "w+b") as file:
            downloader(url, _CappedWriter(file), pooch_)

    return pooch.retrieve(url, known_hash=f"md5:{md5}", fname=name, path=staging, downloader=capped)


class _FileTooLarge(Exception):
    pass


class _CappedWriter:
    """A file that refuses to grow past MAX_DOWNLOAD_BYTES (a server streaming without end would fill the disk)."""

    def __init__(self, file):
        self.file, self.written = file, 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > MAX_DOWNLOAD_BYTES:
            raise _FileTooLarge()
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def _request_errors() -> tuple[type[Exception], ...]:
    import requests

    return (requests.RequestException,)


def _reason(error: Exception, timeout: float) -> str:
    """One short phrase for why one URL failed."""
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code} {error.response.reason or ''}".rstrip()
    if isinstance(error, requests.Timeout) or "timed out" in str(error).lower():
        return f"no answer within {timeout:g} s (timed out)"
    if isinstance(error, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return "transfer broken off before the end (truncated)"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS failed (certificate or handshake)"
    if isinstance(error, requests.ConnectionError):
        text = str(error).lower()
        why = ("host name not resolved" if "resolve" in text or "name or service" in text
               else "connection refused" if "refused" in text else "")
        return f"cannot connect ({why})" if why else "cannot connect"
    if isinstance(error, requests.RequestException):
        return f"request failed ({type(error).__name__})"
    got = re.search(r"but got ([0-9a-f]{32})", str(error))
    return f"MD5 mismatch: got {got.group(1) if got else 'another'}, expected the pinned one"


@contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A private folder in `folder` for one download; removed on the way out, whatever happened."""
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_stale_staging(folder: Path) -> None:
    """Staging folders a killed process left (no clean-up runs on SIGKILL); a live download's is younger."""
    for stale in folder.glob(f"{STAGING_PREFIX}*"):
        try:
            if time.time() - stale.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass


@contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch logs each download with its staging path; mnistlab prints its own line instead."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
