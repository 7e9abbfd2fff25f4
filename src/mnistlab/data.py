"""Loading MNIST-format datasets: a strict IDX reader, the splits in memory (`DatasetSplits`), normalisation.

MNIST itself ships with mnistlab; Fashion-MNIST is read from Debian's dataset-fashion-mnist
folder when it is installed, each file refused unless its content has the pinned SHA-256 (computed
as the file is read, so checking costs no extra pass); the other datasets (`mnistlab.dataset_info`) are
read from the download cache, where `mnistlab.downloads` keeps only files whose pinned hash matched. A whole
dataset is small (47 MB of uint8 pixels), so it lives in memory as two uint8 tensors per split;
batches are gathered and normalised on the fly by `normalize`, the one place that turns pixels
into model input (training, evaluation and prediction all call it). The facts about each dataset
(classes, statistics, pinned hashes) are in `mnistlab.dataset_info`.
"""

from __future__ import annotations

import gzip
import hashlib
import stat
import warnings
import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ._io import NotRegularFileError, open_regular_file
from .dataset_info import BUNDLED_ROOT, DATASETS, MNIST_MEAN, MNIST_STD, SPLIT_FILES, DatasetInfo, get_dataset
from .downloads import fetch, file_status, source_kind, system_dataset, system_folder
from .errors import DataError
from .limits import IMAGE_SIZE, NUM_CLASSES

__all__ = ["MNIST_MEAN", "MNIST_STD", "DataError", "IMAGE_SIZE", "DatasetSplits", "Split", "load_mnist",
           "load_split", "load_test_split", "normalize", "read_idx", "resolve_data_dir"]


BUNDLED_DIR = BUNDLED_ROOT / "mnist"

# SHA-256 of the decompressed canonical files (see bundled/mnist/README.md).
MNIST_SHA256 = DATASETS["mnist"].content_sha256

_IDX_UINT8 = 0x08  # the only element type MNIST uses


def _read_into(stream: BinaryIO, buffer: memoryview) -> int:
    """Fill `buffer` from `stream` (which may return short reads); return the bytes read."""
    filled = 0
    while filled < len(buffer):
        n = stream.readinto(buffer[filled:])
        if not n:
            break
        filled += n
    return filled


def _read_idx_stream(stream: BinaryIO, name: str, digest) -> np.ndarray:
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(head)} bytes)")
    zero0, zero1, dtype, ndim = head
    if zero0 != 0 or zero1 != 0 or ndim == 0:
        raise DataError(f"{name}: not an IDX file (bad magic number {head.hex()})")
    if dtype != _IDX_UINT8:
        raise DataError(f"{name}: IDX element type 0x{dtype:02x} is not supported (expected 0x08, uint8)")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{name}: truncated header ({4 + len(dims)} bytes, expected {4 + 4 * ndim})")
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    try:
        array = np.empty(shape, dtype=np.uint8)
    except (ValueError, MemoryError):
        raise DataError(f"{name}: header claims shape {shape}, too large to be real") from None
    # Decompress straight into the array: no intermediate copy of the 47 MB of pixels.
    filled = _read_into(stream, memoryview(array.reshape(-1)))
    if filled < array.size:
        raise DataError(f"{name}: truncated: {filled} of the {array.size} data bytes its header {shape} needs")
    if stream.read(1):
        raise DataError(f"{name}: has trailing bytes after the {array.size} its header {shape} needs")
    if digest is not None:
        for part in (head, dims, array):
            digest.update(part)
    return array


def read_idx(path: str | Path, digest=None, *, follow_symlinks: bool = True) -> np.ndarray:
    """Read one IDX file (raw, or gzipped when its name ends in .gz) into a uint8 array.

    Checks the magic number, element type, dimensions and length against the header and raises
    `DataError` naming the file. `digest`, a hashlib object, is fed the decompressed content. A FIFO
    or device is refused unopened (never a hang), and a symbolic link too unless `follow_symlinks`.
    """
    path = Path(path)
    try:
        with (open_regular_file(path, follow_symlinks=follow_symlinks) as file,
              gzip.GzipFile(fileobj=file) if path.suffix == ".gz" else nullcontext(file) as stream):
            return _read_idx_stream(stream, str(path), digest)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip file ({e})") from None
    except (IsADirectoryError, NotRegularFileError) as e:
        kind = "a directory" if isinstance(e, IsADirectoryError) or e.file_type == stat.S_IFDIR else e.kind
        raise DataError(f"{path}: is {kind}, expected an IDX file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


@dataclass(frozen=True)
class Split:
    """One split of the dataset: uint8 images (N, 28, 28) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))

    def subset(self, n: int) -> Split:
        """The first `n` examples (all of them when `n` is larger)."""
        return Split(self.images[:n], self.labels[:n])


@dataclass(frozen=True)
class DatasetSplits:
    """One MNIST-format dataset in memory: its splits, where they were read from, and the SHA-256 of each file."""

    train: Split
    test: Split
    source: str
    sha256: dict[str, str]
    dataset: str = "mnist"  # the registry name (`mnistlab.dataset_info`) these files were read as
    canonical: bool | None = None  # every file the published one; None: judged by MNIST's SHA-256s

    @property
    def name(self) -> str:
        return self.dataset

    @property
    def is_canonical(self) -> bool:
        if self.canonical is not None:
            return self.canonical
        return self.sha256 == get_dataset(self.dataset).content_sha256  # judged by the content read

    def record(self, train_size: int | None = None) -> dict:
        """The run's "dataset" field (config.json and metrics.json): what it was trained and tested on."""
        return {"name": self.dataset, "canonical": self.is_canonical, "source": self.source, "sha256": self.sha256,
                "train_size": len(self.train) if train_size is None else train_size, "test_size": len(self.test),
                "classes": list(get_dataset(self.dataset).classes)}


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The folder to read: `data_dir`, else the copy of MNIST bundled with mnistlab."""
    path = Path(data_dir or BUNDLED_DIR).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: data directory not found")
    return path


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder}: missing {stem}.gz (or {stem})")


def _read_pinned(folder: Path, stem: str, info: DatasetInfo, digest) -> np.ndarray:
    """Read `stem`.gz from the system folder of `info`, refusing it unless its content has the pinned SHA-256."""
    path = folder / f"{stem}.gz"
    fix = (f"`sudo apt-get install --reinstall {info.debian_package}` restores the package's files "
           f"(or --data-dir DIR reads another copy)")
    if not path.exists() and not path.is_symlink():
        raise DataError(f"{path}: missing from {info.debian_package}'s folder: {fix}")
    try:
        array = read_idx(path, digest, follow_symlinks=False)
    except DataError as e:
        raise DataError(f"{e}: not the file {info.debian_package} installs; {fix}") from None
    if digest.hexdigest() != info.content_sha256[stem]:
        raise DataError(f"{path}: its content's SHA-256 is not the pinned one: not the file {info.debian_package} "
                        f"installs (changed or truncated); {fix}")
    return array


def load_split(folder: Path, split: str) -> tuple[Split, dict[str, str]]:
    """Read one split's images and labels, checking that they agree; also return their SHA-256.

    A Debian package's folder (`mnistlab.downloads.system_dataset`) is read strictly, by whoever asks:
    its .gz files only, no symbolic link, and each file's content must have its pinned SHA-256.
    """
    images_stem, labels_stem = SPLIT_FILES[split]
    package = system_dataset(folder)
    arrays, digests = {}, {}
    for stem, ndim in ((images_stem, 3), (labels_stem, 1)):
        digest = hashlib.sha256()
        if package:
            path = folder / f"{stem}.gz"
            array = _read_pinned(folder, stem, package, digest)
        else:
            path = _find(folder, stem)
            array = read_idx(path, digest)
        if array.ndim != ndim:
            raise DataError(f"{path}: expected {ndim} dimensions, found shape {array.shape}")
        if len(array) == 0:  # an empty split would divide every mean by zero
            raise DataError(f"{path}: holds no {'images' if ndim == 3 else 'labels'}; the {split} split is empty")
        arrays[stem], digests[stem] = array, digest.hexdigest()
    images, labels = arrays[images_stem], arrays[labels_stem]
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{folder / images_stem}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(f"{folder}: {split} split has {len(images)} images but {len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(f"{folder / labels_stem}: label {labels.max()} is outside 0-9")
    return Split(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))), digests


def dataset_dir(dataset: str | DatasetInfo = "mnist", data_dir: str | Path | None = None,
                progress: bool = True) -> tuple[Path, bool | None]:
    """The folder holding `dataset`'s four files, and whether they are known to be the published ones.

    The first of: `data_dir`, read as given; MNIST's bundled copy; the folder of the dataset's Debian
    package when it is installed (Fashion-MNIST: /usr/share/datasets/fashion-mnist, checked as it is
    read); the download cache, fetching a file that is missing or corrupt, each file's MD5 re-checked
    (`mnistlab.downloads.fetch`). None: canonical or not is judged from the content's SHA-256 as the
    files are read. Raises `DataError`.
    """
    info = dataset if isinstance(dataset, DatasetInfo) else get_dataset(dataset)
    kind = source_kind(info, data_dir)
    if kind == "data-dir":
        folder = resolve_data_dir(data_dir)
        if info.content_sha256:
            return folder, None
        return folder, all(state == "ok" for state in file_status(info, folder).values())  # by the pinned MD5s
    if kind == "bundled":
        return BUNDLED_DIR, None
    if kind == "system":
        return system_folder(info), None
    return fetch(info, progress=progress), True


def load_test_split(dataset: str | DatasetInfo = "mnist", data_dir: str | Path | None = None,
                    progress: bool = True) -> tuple[Split, dict[str, str]]:
    """The test split of `dataset` (found as `dataset_dir` finds it) and its files' SHA-256s."""
    folder, _ = dataset_dir(dataset, data_dir, progress)
    return load_split(folder, "test")


def load_mnist(data_dir: str | Path | None = None, dataset: str = "mnist", progress: bool = True) -> DatasetSplits:
    """Load both splits of `dataset` (a name from `mnistlab.dataset_info`) into memory.

    Read from `data_dir` when given (no download), else MNIST's bundled copy, else the folder of the
    dataset's Debian package, else the download cache, fetching what is missing. Raises `ValueError`
    for an unknown name, `DataError` for bad files.
    """
    info = get_dataset(dataset)
    folder, canonical = dataset_dir(info, data_dir, progress)
    train, train_digests = load_split(folder, "train")
    test, test_digests = load_split(folder, "test")
    return DatasetSplits(train, test, str(folder), {**train_digests, **test_digests}, info.name, canonical)


def normalize(images: torch.Tensor, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> torch.Tensor:
    """Pixels → model input of shape (B, 1, 28, 28).

    Takes uint8 pixels (0-255) or floats on a 0-1 scale, shaped (B, 28, 28), (B, 1, 28, 28)
    or (28, 28); returns float32 `(x - mean) / std` on the same device.
    """
    if images.dtype == torch.uint8:
        # One pass over fresh memory: (p/255 - mean)/std == (p - 255*mean) * 1/(255*std).
        x = images.to(torch.float32).sub_(255 * mean).mul_(1 / (255 * std))
    else:
        x = (images.to(torch.float32) - mean) / std
    return x.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)


def __getattr__(name: str) -> object:
    if name == "MNIST":  # its old name, which `mnistlab.dataset_info.MNIST` (MNIST's facts) also bears
        warnings.warn("mnistlab.data.MNIST is now mnistlab.data.DatasetSplits", DeprecationWarning, stacklevel=2)
        return DatasetSplits
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
