"""Predicting the digits in people's images: collect the files, preprocess each, classify in batches.

A bad input (not an image, truncated, blank...) does not stop the others: it comes back as a
`Prediction` whose `error` says what went wrong, in the same place as the input.

Nothing here imports torch: the model is any `mnistlab.classifier.Classifier`, a checkpoint (PyTorch)
or an exported ONNX file (onnxruntime), so a deployment without PyTorch predicts with the same code.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from ._outputs import atomic_path, refuse_pretrained_dir
from ._signals import progress_bar
from .classifier import Classifier
from .config import PredictOptions, check_value
from .dataset_info import DIGIT_CLASSES
from .decoding import IMAGE_SUFFIXES, ImageLike, load_image
from .errors import FILE_TYPE_NAMES, DataError, MnistlabError, OutputError, escape, escape_surrogates
from .preprocessing import preprocess_array
from .rejection import NOT_A_DIGIT, Threshold, threshold_for

BATCH_SIZE = PredictOptions.batch_size  # images preprocessed, then classified in one forward pass
PROGRESS_MIN_FILES = 300  # a progress bar only for batches larger than this
NOT_A_NUMBER = "the model's output is not a number (NaN or infinity): are its weights or normalisation broken?"
MAX_STEM_BYTES = 100  # a saved file's name, before "-N.png": far below NAME_MAX (255) with a temporary suffix

Source = str | os.PathLike | bytes | BinaryIO | ImageLike


@dataclass
class Prediction:
    """The model's answer for one image, or why there is none (`error`)."""

    source: str  # the file's path, or "<image N>" for an image passed in memory
    label: int | None = None  # the predicted class's index (for MNIST, the digit)
    probabilities: list[float] | None = None  # softmax over the classes, in label order
    top_k: list[tuple[int, float]] | None = None  # the k likeliest (label, probability), best first
    image: np.ndarray | None = None  # the preprocessed input: float32 (28, 28) in [0, 1], white on black
    error: str | None = None  # one line; set when the input could not be classified, or was "not a digit"
    # "not a digit" when the reject rule refused the mark (`mnistlab.rejection`): `label` is None, `error`
    # says the same, and the probabilities (hence `confidence`) are kept, to study the threshold.
    reason: str | None = None
    classes: tuple[str, ...] | None = field(default=None, repr=False)  # the model's class names, in label order

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def not_a_digit(self) -> bool:
        return self.reason == NOT_A_DIGIT

    @property
    def confidence(self) -> float | None:
        """The probability of the answer, or of the likeliest class of a mark refused as not a digit."""
        return None if self.top_k is None else self.top_k[0][1]

    @property
    def class_name(self) -> str | None:
        """The predicted class's name ("7", "Trouser"), as the model's classes give it."""
        return None if self.label is None or self.classes is None else self.classes[self.label]

    def pixels(self) -> np.ndarray:
        """The preprocessed input as uint8 (28, 28) pixels 0-255, as saved and shown."""
        return (np.clip(self.image, 0, 1) * 255).round().astype(np.uint8)

    def set_output(self, probabilities: np.ndarray, classes: Sequence[str], top_k: int,
                   refused: bool = False) -> Prediction:
        """Fill in label, probabilities and top-k from the model's output for this input, (classes,);
        an output that is not finite (NaN weights, a zero std) sets `error` instead. `refused`: the
        reject rule found it is not a digit (`label` stays None, `reason` and `error` say so). Returns self."""
        if not np.isfinite(probabilities).all():
            self.error = NOT_A_NUMBER
            return self
        best = np.argsort(-probabilities, kind="stable")[:top_k]  # likeliest first
        self.label, self.probabilities, self.classes = int(best[0]), probabilities.tolist(), tuple(classes)
        self.top_k = [(int(k), float(probabilities[k])) for k in best]
        if refused:
            self.label, self.reason, self.error = None, NOT_A_DIGIT, NOT_A_DIGIT
        return self

    def to_dict(self) -> dict:
        """A JSON-ready dict: file and either the prediction or the error.

        Strings hold no lone surrogates (a file name's undecodable bytes become the text `\\xff`),
        so any strict JSON encoder takes it.
        """
        source = escape_surrogates(self.source)
        names = self.classes or DIGIT_CLASSES
        if self.not_a_digit:  # no label, and the answers it was refused on
            return {"file": source, "label": None, "class": None, "error": self.error, "reason": self.reason,
                    "confidence": round(self.confidence, 6), **self._answers(names)}
        if not self.ok:
            return {"file": source, "error": escape_surrogates(self.error)}
        return {"file": source, "label": self.label, "class": names[self.label],
                "confidence": round(self.confidence, 6), **self._answers(names)}

    def _answers(self, names: Sequence[str]) -> dict:
        return {"top_k": [{"label": k, "class": names[k], "probability": round(p, 6)} for k, p in self.top_k],
                "probabilities": [round(p, 6) for p in self.probabilities]}


def expand_argument(argument: str | os.PathLike) -> tuple[list[str], list[str]]:
    """One command-line argument → (the image paths it names, the special files it passed over).

    A folder gives its regular files with an image suffix (sorted, not recursive); a pattern with
    *, ? or [ ] that names no existing file gives the regular files it matches (sorted; ** spans
    folders). What a folder or pattern holds that is not a regular file (a FIFO, a socket, a
    folder, a broken link), and a folder that cannot be listed, are passed over, as "path (why)".
    Any other argument is kept as it is, so that it gets its own error if it cannot be read.
    """
    argument = os.fspath(argument)
    if os.path.isdir(argument):
        try:
            with os.scandir(argument) as entries:
                found = sorted(e.path for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)
        except OSError as e:  # no permission to list it: reported, and the other arguments still run
            return [], [f"{argument} (cannot list it: {e.strerror})"]
    elif not os.path.lexists(argument) and any(c in argument for c in "*?["):
        found = sorted(glob.glob(argument, recursive=True))
    else:
        return [argument], []
    regular = [path for path in found if os.path.isfile(path)]  # follows links; False for a FIFO or a loop
    skipped = [f"{path} ({_describe(path)})" for path in found if not os.path.isfile(path)]
    return regular, skipped


def _describe(path: str) -> str:
    """What a path that is not a regular file is, in a few words."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return {errno.ENOENT: "a broken link", errno.ELOOP: "a symlink loop"}.get(e.errno, e.strerror or "unreadable")
    return FILE_TYPE_NAMES.get(stat.S_IFMT(mode), "not a regular file")


def collect_images(arguments: Iterable[str | os.PathLike]) -> list[str]:
    """Expand command-line arguments into image paths, in order (see `expand_argument`).

    Repeats are kept: each occurrence of a file gets its own prediction, as the caller asked for it.
    """
    return [path for argument in arguments for path in expand_argument(argument)[0]]


def predict(model: Classifier, images: Source | Sequence[Source], *, top_k: int = PredictOptions.top_k,
            invert: str = PredictOptions.invert, batch_size: int = BATCH_SIZE,
            progress: bool | None = None, reject: str = PredictOptions.reject) -> list[Prediction]:
    """Classify images: files (paths) or in-memory images, one `Prediction` per input, in order.

    Args:
        model: any `Classifier`: a checkpoint or an exported ONNX model, as `mnistlab.load_model` loads
            them (or `mnistlab.load_checkpoint`, `mnistlab.load_onnx`).
        images: paths, files' bytes, binary file objects, Pillow images, (H, W) arrays or tensors;
            one of them alone; or an (N, H, W) array or tensor (a batch). Each is checked on its
            own: a bad one (unreadable, a wrong shape or dtype, NaN pixels...) comes back with its
            `error` set, as does one the model gives a non-finite output for; none raises.
        top_k: how many of the likeliest classes each prediction lists.
        invert: "auto", "yes" or "no"; see `mnistlab.preprocessing.preprocess`.
        batch_size: images preprocessed and classified together.
        progress: a progress bar on stderr; None shows one past PROGRESS_MIN_FILES inputs.
        reject: "off", "normal" or "strict": how readily a mark is answered "not a digit" (its `reason`,
            with no label) by the model's reject rule (`mnistlab.rejection.rule_of`).

    Raises:
        ValueError: `top_k`, `invert`, `batch_size` or `reject` is not what `mnistlab.config.PredictOptions`
            declares (raised at the call, before any image is read).
    """
    for name, value in (("top_k", top_k), ("invert", invert), ("batch_size", batch_size), ("reject", reject)):
        check_value(PredictOptions, name, value)
    threshold = threshold_for(model, reject)
    items = as_sources(images)
    show = len(items) > PROGRESS_MIN_FILES if progress is None else progress
    layout = model.layout  # read off the model's record once, not once per image
    results: list[Prediction] = []
    with progress_bar(total=len(items), unit="image", disable=not show, file=sys.stderr, leave=False) as bar:
        for batch in _chunks(enumerate(items), batch_size):
            prepared = [_prepare(item, index, invert, layout) for index, item in batch]
            results += _classify(model, prepared, top_k, threshold)
            bar.update(len(batch))
    return results


def evaluate_arrays(model: Classifier, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000, *,
                    progress: bool | None = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on uint8 images (N, 28, 28) already in its dataset's convention.

    The test set's own images: no preprocessing, as training evaluated them. A NaN row (a model that
    gave a non-finite output) counts as wrong, with an infinite loss. `progress`: a bar on stderr
    (None: only when stderr is a terminal).

    Raises:
        DataError: no images (the means would be 0 / 0).
    """
    return score_probabilities(array_probabilities(model, images, batch_size, progress=progress), labels)


def array_probabilities(model: Classifier, images: np.ndarray, batch_size: int = 1000, *,
                        progress: bool | None = False) -> np.ndarray:
    """`model`'s (N, classes) probabilities of uint8 images (N, 28, 28) already in its dataset's convention.

    Raises:
        DataError: no images.
    """
    if len(images) == 0:
        raise DataError("nothing to score: no images given")
    batches = []
    with progress_bar(total=len(images), desc="evaluating", unit="image", leave=False, file=sys.stderr,
                      disable=None if progress is None else not progress) as bar:
        for start in range(0, len(images), batch_size):
            batches.append(model.probabilities(images[start:start + batch_size].astype(np.float32) / 255))
            bar.update(len(batches[-1]))
    return np.concatenate(batches)


def score_probabilities(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of (N, classes) probabilities against (N,) labels; a NaN row is wrong."""
    picked = probabilities[np.arange(len(labels)), labels]
    losses = -np.log(np.maximum(np.nan_to_num(picked, nan=0.0), np.finfo(np.float32).tiny)).astype(np.float64)
    correct = np.nan_to_num(probabilities, nan=-1.0).argmax(1) == labels
    return float(losses.sum()) / len(labels), int(correct.sum()) / len(labels)


def as_sources(images: Source | Sequence[Source]) -> list[Source]:
    """`images` as a list of sources: one path, file, array or image is a list of one."""
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)) or hasattr(images, "read"):
        return [images]
    torch = sys.modules.get("torch")  # an object can be a tensor only once torch is imported
    if isinstance(images, np.ndarray) or (torch is not None and isinstance(images, torch.Tensor)):
        # a batch is (N, H, W), (N, 1, H, W) or (N, H, W, C)
        single = images.ndim < 3 or (images.ndim == 3 and images.shape[-1] in (3, 4))
        return [images] if single else list(images)
    return list(images)


def _chunks(iterable: Iterable, size: int) -> Iterator[list]:
    iterator = iter(iterable)
    while batch := list(islice(iterator, size)):
        yield batch


def _prepare(item: Source, index: int, invert: str, layout: str) -> Prediction:
    """Load and preprocess one input; any failure becomes the Prediction's error, never the batch's."""
    source = source_name(item, index)
    try:
        if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(item, "read"):
            item = load_image(item, name=source)
        return Prediction(source, image=preprocess_array(item, invert=invert, name=source, layout=layout))
    except MnistlabError as e:
        return Prediction(source, error=str(e).removeprefix(f"{source}: "))
    except Exception as e:  # a bug met by one odd input must not lose the answers for the others
        return Prediction(source, error=f"cannot preprocess ({type(e).__name__}: {e})")


def source_name(item: Source, index: int) -> str:
    """A path as given; an in-memory image by its file name if it has one, else by its place."""
    if isinstance(item, (str, os.PathLike)):
        return os.fsdecode(item)
    name = getattr(item, "name", None) if hasattr(item, "read") else getattr(item, "filename", None)
    return name if isinstance(name, str) and name else f"<image {index}>"


def _classify(model: Classifier, prepared: list[Prediction], top_k: int, threshold: Threshold) -> list[Prediction]:
    """Fill in label, probabilities and top-k of the prepared inputs, in one call of the model.

    An input whose output is not finite (NaN weights, a zero std) gets an error, not an answer; one whose
    score is under the reject rule's `threshold` is "not a digit".
    """
    ready = [p for p in prepared if p.ok]
    if not ready:
        return prepared
    probabilities = model.probabilities(np.stack([p.image for p in ready]))  # (B, classes)
    classes = tuple(model.classes)
    refusals = threshold.refuses(probabilities)
    for p, row, no in zip(ready, probabilities, refusals, strict=True):
        p.set_output(row, classes, top_k, refused=bool(no))
    return prepared


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Check, before any work, that `folder` is a folder that can be written, or can be made.

    Raises:
        OutputError: it is a file (or other non-folder), or neither it nor its parent can be written.
    """
    folder = Path(folder)
    refuse_pretrained_dir(folder)
    shown = escape(str(folder))
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "exists and is not a folder" if existing == folder else f"cannot be made ({escape(str(existing))} " \
            f"is not a folder)"
        raise OutputError(f"{shown}: {what}")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == folder else f" in {escape(str(existing))}"
        raise OutputError(f"{shown}: cannot write{where} (permission denied)")
    return folder


def save_preprocessed(predictions: Iterable[Prediction], folder: str | Path) -> list[Path | None]:
    """Write each prediction's 28×28 input as a PNG in `folder`, named after its source.

    Names are made safe (`safe_file_stem`); names that repeat (`a.png` and `a.jpg`, or one name in
    two folders) get `-2`, `-3`... appended. A file that cannot be written becomes its prediction's
    error. Returns the path written for each prediction (None where there is none).
    """
    folder, taken, written = Path(folder), set(), []
    for p in predictions:
        if p.image is None or not p.ok:
            written.append(None)
            continue
        stem = safe_file_stem(p.source)
        name, n = f"{stem}.png", 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}.png"
        taken.add(name)
        try:
            with atomic_path(folder / name) as tmp:
                Image.fromarray(p.pixels()).save(tmp, format="PNG")
        except OSError as e:
            p.error = f"cannot save its preprocessed image as {folder / name} ({e.strerror or e})"
            written.append(None)
        else:
            written.append(folder / name)
    return written


def safe_file_stem(source: str, max_bytes: int = MAX_STEM_BYTES) -> str:
    """A file name stem from a source name: no folders, control characters, spaces or leading dots
    or dashes, and at most `max_bytes` bytes of UTF-8 (room left for a suffix and a temporary name)."""
    stem = Path(source.replace("\\", "/")).stem.strip("<>")  # "<image 3>" → "image-3"
    kept = "".join(c if c.isprintable() and c not in '<>:"|?*' and not c.isspace() else "-" for c in stem)
    kept = kept.lstrip(".-")
    return kept.encode("utf-8")[:max_bytes].decode("utf-8", "ignore") or "image"


def format_table(predictions: Sequence[Prediction]) -> str:
    """One row per file: file, digit, confidence, the top-k; a failure shows its error instead.

    A model whose classes are not the digits (Fashion-MNIST's "Trouser"...) gets a column with the
    predicted class's name after its label. Names and errors are escaped (`escape`), so that a file
    name cannot fake a row or drive the terminal.
    """
    k = next((len(p.top_k) for p in predictions if p.top_k), 0)
    named = any(p.ok and p.class_name != str(p.label) for p in predictions)
    header = ("file", "label", "class") if named else ("file", "digit")
    rows = [(*header, "confidence", f"top {k}" if k else "top")]
    for p in predictions:
        if p.ok:
            top = "  ".join(f"{k} {prob:.1%}" for k, prob in p.top_k)
            name = (escape(p.class_name),) if named else ()
            rows.append((escape(p.source), str(p.label), *name, f"{p.confidence:.1%}", top))
        elif p.not_a_digit:
            top = "  ".join(f"{k} {prob:.1%}" for k, prob in p.top_k)
            rows.append((escape(p.source), "-", *(("-",) if named else ()), f"{p.confidence:.1%}",
                         f"{p.reason}  ({top})"))
        else:
            rows.append((escape(p.source), "-", *(("-",) if named else ()), "-", f"error: {escape(p.error)}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) + 1)]
    return "\n".join("  ".join([f"{row[0]:<{widths[0]}}", *(f"{cell:>{width}}" for cell, width in
                                                           zip(row[1:-1], widths[1:], strict=True)), row[-1]])
                     for row in rows)


def format_json(predictions: Sequence[Prediction]) -> str:
    """A JSON array with one object per file (`Prediction.to_dict`), one object per line.

    Always valid, strict JSON: ASCII only (other characters as \\u escapes), no NaN or Infinity.
    """
    if not predictions:
        return "[]"
    return "[\n" + ",\n".join(json.dumps(p.to_dict(), allow_nan=False) for p in predictions) + "\n]"
