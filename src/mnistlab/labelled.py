"""Folders of labelled digit images: `DIR/0/ … DIR/9/`, each holding image files of that digit.

This is how a user measures a model on their own handwriting: `mnistlab serve --collect DIR` saves
drawings into such a folder (`save_labelled`), `mnistlab evaluate RUN --images DIR` evaluates a model
on one (`read_labelled`, `evaluate_folder`), and `mnistlab finetune` learns from one (`read_pixels`,
the images as the model sees them). The folder may come from anywhere, so it is read as
hostile: only regular files in the ten digit folders count (no symlinks, no sub-folders, no other
names), and writing never follows a symlink out of it.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._outputs import refuse_pretrained_dir
from .classifier import Classifier
from .dataset_info import DIGIT_CLASSES
from .decoding import IMAGE_SUFFIXES
from .errors import LabelledError, OutputError, SchemaError, escape, escape_surrogates
from .prediction import Prediction, predict
from .records import read_bounded

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from .evaluation import SplitPredictions

DIGITS = tuple(range(10))
MAX_FOLDER_IMAGES = 100_000  # a folder with more is refused before anything is decoded
READ_BATCH = 256  # files read and preprocessed at a time by `read_pixels`
PNG_MODES = ("1", "L", "LA", "I;16", "P", "RGB", "RGBA")  # saved as they are; any other mode as gray (`png_ready`)


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int  # the digit folder it was found in


def read_labelled(folder: str | Path) -> list[LabelledImage]:
    """The image files in `folder/0` … `folder/9`, sorted by digit then name.

    Only regular files with an image suffix count; symlinks (to files or folders), sub-folders and
    any other name in `folder` are ignored, so a folder cannot point the reader elsewhere.

    Raises:
        LabelledError: `folder` is not a folder, holds no such images, or too many.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LabelledError(f"{folder}: expected a folder with sub-folders 0/ … 9/ of images"
                            f"{'' if folder.exists() else ' (no such folder)'}")
    images: list[LabelledImage] = []
    for digit in DIGITS:
        sub = folder / str(digit)
        if sub.is_symlink() or not sub.is_dir():
            continue
        try:
            with os.scandir(sub) as entries:
                names = sorted(e.name for e in entries
                               if e.is_file(follow_symlinks=False) and Path(e.name).suffix.lower() in IMAGE_SUFFIXES)
        except OSError as e:
            raise LabelledError(f"{sub}: cannot read ({e.strerror})") from None
        images += [LabelledImage(sub / name, digit) for name in names]
        if len(images) > MAX_FOLDER_IMAGES:
            raise LabelledError(f"{folder}: more than {MAX_FOLDER_IMAGES:,} images; split it up")
    if not images:
        raise LabelledError(f"{folder}: no image files in sub-folders 0/ … 9/ "
                            f"(expected e.g. {folder / '7' / 'mine.png'})")
    return images


def list_digit_images(folder: str | Path) -> list[LabelledImage]:
    """`read_labelled`, with a folder of some other classes' sub-folders (cat/, dog/) named as such.

    Raises:
        LabelledError: the folder is missing, holds no images (naming the other sub-folders it holds), too
            many, or cannot be listed.
    """
    try:
        _check_class_folders(Path(folder))
        return read_labelled(folder)
    except OSError as e:  # a name too long, a folder that may not be listed
        raise LabelledError(f"{folder}: cannot be read ({e.strerror or e})") from None


def _check_class_folders(folder: Path) -> None:
    """A folder of some other classes' sub-folders says what it found, rather than only "no images"."""
    if not folder.is_dir() or any((folder / str(digit)).is_dir() for digit in DIGITS):
        return
    with os.scandir(folder) as entries:  # a folder of a million entries: the first thousand tell enough
        others = sorted(e.name for e in itertools.islice(entries, 1000) if e.is_dir(follow_symlinks=False))
    if others:
        shown = ", ".join(escape(name) for name in others[:5]) + (", …" if len(others) > 5 else "")
        raise LabelledError(f"{folder}: no image files in sub-folders 0/ … 9/ (found other sub-folders: {shown}); "
                            f"each digit's images go in a folder named by the digit")


@dataclass
class LabelledPixels:
    """Labelled images as a model sees them: float32 (N, 28, 28) in [0, 1], their labels and files."""

    pixels: np.ndarray
    labels: np.ndarray  # int64 (N,)
    files: list[LabelledImage]
    unreadable: list[tuple[LabelledImage, str]]  # (file, why), shown apart as `evaluate --images` does
    sha256: str  # of the labels, names and bytes of the readable files, in order


def read_pixels(files: list[LabelledImage], model: Classifier, max_bytes: int) -> LabelledPixels:
    """Read and preprocess `files` for `model` (its layout), in order, by the pipeline `predict` uses.

    Each file is read once, bounded by `max_bytes`, and hashed from the bytes that were decoded; one
    that cannot be read or holds no digit is set apart with its reason, never fatal.
    """
    import numpy as np

    digest = hashlib.sha256()
    kept: list[LabelledImage] = []
    pixels: list[np.ndarray] = []
    unreadable: list[tuple[LabelledImage, str]] = []
    for start in range(0, len(files), READ_BATCH):
        chunk, sources = [], []
        for image in files[start:start + READ_BATCH]:
            try:
                data = read_bounded(image.path, max_bytes)
            except SchemaError as e:
                unreadable.append((image, str(e)))
                continue
            source = io.BytesIO(data)
            source.name = str(image.path)  # what predict's messages call it
            chunk.append((image, data))
            sources.append(source)
        for (image, data), prediction in zip(chunk, predict(model, sources, progress=False), strict=True):
            if not prediction.ok:
                unreadable.append((image, prediction.error))
                continue
            kept.append(image)
            pixels.append(prediction.image)
            # a name's undecodable bytes as the text `\\xff`, as the records hold it
            digest.update(f"{image.label}/{escape_surrogates(image.path.name)}\n".encode())
            digest.update(hashlib.sha256(data).digest())
    stacked = np.stack(pixels) if pixels else np.zeros((0, 28, 28), np.float32)
    return LabelledPixels(stacked, np.array([i.label for i in kept], dtype=np.int64), kept, unreadable,
                          digest.hexdigest())


@dataclass
class FolderEvaluation:
    """A model's answers on a labelled folder: `predictions[i]` answers `images[i]`."""

    images: list[LabelledImage]
    predictions: list[Prediction]
    classes: tuple[str, ...] = DIGIT_CLASSES  # the model's name for each label (folder)

    @property
    def read(self) -> list[tuple[LabelledImage, Prediction]]:
        """The images the model could classify (not failed: blank, not an image...)."""
        return [(i, p) for i, p in zip(self.images, self.predictions, strict=True) if p.ok]

    @property
    def wrong(self) -> list[tuple[LabelledImage, Prediction]]:
        return [(i, p) for i, p in self.read if p.label != i.label]

    @property
    def failed(self) -> list[tuple[LabelledImage, Prediction]]:
        return [(i, p) for i, p in zip(self.images, self.predictions, strict=True) if not p.ok]

    @property
    def accuracy(self) -> float | None:
        """Share of the classified images read right; None when none could be classified."""
        return 1 - len(self.wrong) / len(self.read) if self.read else None

    def per_digit(self) -> dict[int, tuple[int, int]]:
        """digit → (right, classified), for the digits that have classified images."""
        counts = {d: [0, 0] for d in DIGITS}
        for image, p in self.read:
            counts[image.label][0] += p.label == image.label
            counts[image.label][1] += 1
        return {d: (right, total) for d, (right, total) in counts.items() if total}

    def to_dict(self) -> dict:
        """A JSON-ready summary: accuracy, per-digit accuracy, the wrong and the failed files."""
        return {
            "images": len(self.images), "classified": len(self.read), "accuracy": self.accuracy,
            "classes": list(self.classes),
            "per_digit": {str(d): {"right": r, "total": t, "accuracy": r / t}
                          for d, (r, t) in self.per_digit().items()},
            "wrong": [{"file": str(i.path), "label": i.label, "predicted": p.label,
                       "confidence": round(p.confidence, 6)} for i, p in self.wrong],
            "failed": [{"file": str(i.path), "label": i.label, "error": p.error} for i, p in self.failed],
        }

    def split_predictions(self) -> SplitPredictions:
        """The classified images as a `SplitPredictions`, for `mnistlab.confusion_matrix` and friends."""
        import torch  # here, with plots (matplotlib): reading and scoring a folder needs neither

        from .evaluation import SplitPredictions

        read = self.read
        if not read:
            folder = f"{self.images[0].path.parent.parent}: " if self.images else ""
            raise LabelledError(f"{folder}no image could be classified, so there is nothing to plot")
        images = torch.stack([torch.from_numpy(p.pixels()) for _, p in read])  # (N, 28, 28)
        labels = torch.tensor([i.label for i, _ in read])
        return SplitPredictions(images, labels, torch.tensor([p.probabilities for _, p in read]))


def evaluate_folder(model: Classifier, folder: str | Path, batch_size: int = 256) -> FolderEvaluation:
    """Classify every image of a labelled folder (`read_labelled`) with `model` (a checkpoint or an exported file)."""
    images = read_labelled(folder)
    predictions = predict(model, [str(i.path) for i in images], batch_size=batch_size)
    return FolderEvaluation(images, predictions, tuple(model.classes))


def format_folder_evaluation(score: FolderEvaluation) -> str:
    """The report `mnistlab evaluate --images` prints: accuracy, a per-digit table, wrong and failed files.

    A model whose classes are not the digits (Fashion-MNIST's) gets its class names beside the folder numbers.
    """
    named = score.classes != DIGIT_CLASSES

    def shown(label: int) -> str:
        return f"{score.classes[label]} ({label})" if named else str(label)

    lines = []
    if score.accuracy is None:
        lines.append(f"none of the {len(score.images)} images could be classified")
    else:
        right = len(score.read) - len(score.wrong)
        lines.append(f"accuracy {score.accuracy:.2%} ({right}/{len(score.read)})")
        lines.append("digit  right  total  accuracy" + ("  class" if named else ""))
        lines += [f"{d:>5}  {r:>5}  {t:>5}  {r / t:>8.1%}" + (f"  {score.classes[d]}" if named else "")
                  for d, (r, t) in score.per_digit().items()]
    if score.wrong:
        lines.append(f"wrong ({len(score.wrong)}):")
        lines += [f"  {i.path}  is {shown(i.label)}, read as {shown(p.label)} ({p.confidence:.1%})"
                  for i, p in score.wrong]
    if score.failed:
        lines.append(f"could not classify ({len(score.failed)}):")
        lines += [f"  {i.path}  {p.error}" for i, p in score.failed]
    return "\n".join(lines)


def check_collect_folder(folder: str | Path) -> Path:
    """Make sure `folder` is (or can be made) a folder that files can be created in, before any drawing comes.

    Raises:
        LabelledError: `folder` is a file or a device, or cannot be created or written in.
    """
    folder = Path(folder)
    try:
        refuse_pretrained_dir(folder)
    except OutputError as e:
        raise LabelledError(str(e)) from None
    probe = folder / f".probe-{secrets.token_hex(4)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        probe.unlink()
    except FileExistsError:  # mkdir: a file (or a device) of that name
        raise LabelledError(f"{folder}: exists and is not a folder") from None
    except OSError as e:
        raise LabelledError(f"{folder}: cannot collect drawings there ({e.strerror})") from None
    return folder


def png_ready(image: Image.Image) -> Image.Image:
    """`image` in a mode PNG holds: as it is, or (CMYK, YCbCr, LAB, 32-bit or float pixels) as the gray image
    preprocessing reads from it, 16-bit where its pixels are finer than 8 bits. So every drawing an upload could
    be read from is saved, and reads back as the same digit."""
    if image.mode in PNG_MODES:
        return image
    import numpy as np
    from PIL import Image

    from .decoding import gray_mode

    gray = gray_mode(image)  # "L", "LA" or "F" (0-1)
    if gray.mode != "F":
        return gray
    return Image.fromarray((np.asarray(gray, dtype=np.float32) * 65535 + 0.5).astype(np.uint16))  # I;16


def save_labelled(folder: str | Path, label: int, image: Image.Image) -> Path:
    """Save `image` as a new PNG in `folder/<label>/`, named by the time and a random suffix.

    Nothing from the caller becomes part of the path but the digit, checked to be an int 0-9. The
    digit folder is opened without following symlinks and the file is created in it relative to
    that open folder, exclusively, then renamed into place: a symlink planted in the folder (or
    swapped in for it) cannot redirect the write, and a reader never sees a half-written file.

    Raises:
        LabelledError: `label` is not a digit, or the folder cannot be written.
    """
    if isinstance(label, bool) or not isinstance(label, int) or label not in DIGITS:
        raise LabelledError(f"label must be a digit 0-9, got {label!r}")
    image = png_ready(image)
    folder = Path(folder)
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.png"
    temporary = f".{name}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        root = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                os.mkdir(str(label), dir_fd=root)
            except FileExistsError:
                pass
            digit_dir = os.open(str(label), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root)
        finally:
            os.close(root)
    except OSError as e:
        raise LabelledError(f"{folder / str(label)}: cannot write there ({e.strerror})") from None
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=digit_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                image.save(out, format="PNG")
            os.replace(temporary, name, src_dir_fd=digit_dir, dst_dir_fd=digit_dir)
        except BaseException:
            os.unlink(temporary, dir_fd=digit_dir)
            raise
    except OSError as e:
        raise LabelledError(f"{folder / str(label) / name}: cannot write ({e.strerror})") from None
    finally:
        os.close(digit_dir)
    return folder / str(label) / name
