"""Predicting the digits in people's images: collect the files, preprocess each, classify in batches.

A bad input (not an image, truncated, blank...) does not stop the others: it comes back as a
`Prediction` whose `error` says what went wrong, in the same place as the input.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ._io import atomic_path
from .data import MNIST_MEAN, MNIST_STD, normalize
from .errors import MnistlabError
from .preprocessing import ImageLike, load_image, preprocess

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # what a folder yields
BATCH_SIZE = 256  # images preprocessed, then classified in one forward pass
PROGRESS_MIN_FILES = 300  # a progress bar only for batches larger than this

Source = str | os.PathLike | ImageLike


@dataclass
class Prediction:
    """The model's answer for one image, or why there is none (`error`)."""

    source: str  # the file's path, or "<image N>" for an image passed in memory
    label: int | None = None  # the predicted digit
    probabilities: list[float] | None = None  # softmax over the digits 0-9
    top_k: list[tuple[int, float]] | None = None  # the k likeliest (digit, probability), best first
    image: torch.Tensor | None = None  # the preprocessed input: float32 (28, 28) in [0, 1], white on black
    error: str | None = None  # one line; set when the input could not be classified

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def confidence(self) -> float | None:
        return None if self.label is None else self.probabilities[self.label]

    def to_dict(self) -> dict:
        """A JSON-ready dict: file and either the prediction or the error."""
        if not self.ok:
            return {"file": self.source, "error": self.error}
        return {"file": self.source, "label": self.label, "confidence": round(self.confidence, 6),
                "top_k": [{"label": k, "probability": round(p, 6)} for k, p in self.top_k],
                "probabilities": [round(p, 6) for p in self.probabilities]}


def collect_images(arguments: Iterable[str | os.PathLike]) -> list[str]:
    """Expand command-line arguments into image paths, in order and without repeats.

    A folder gives its image files (by suffix, sorted, not recursive); a pattern with *, ? or [ ]
    that names no existing file is expanded as a glob (** spans folders). Anything else, including
    a missing file or a pattern that matches nothing, is kept, so that it gets its own error.
    """
    paths: list[str] = []
    for argument in map(str, arguments):
        if os.path.isdir(argument):
            found = sorted(str(p) for p in Path(argument).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif not os.path.lexists(argument) and any(c in argument for c in "*?["):
            found = sorted(glob.glob(argument, recursive=True)) or [argument]
        else:
            found = [argument]
        paths += found
    return list(dict.fromkeys(paths))


def predict(model: nn.Module, images: Source | Sequence[Source], *, mean: float = MNIST_MEAN,
            std: float = MNIST_STD, top_k: int = 3, invert: str = "auto", batch_size: int = BATCH_SIZE,
            progress: bool | None = None) -> list[Prediction]:
    """Classify images: files (paths) or in-memory images, one `Prediction` per input, in order.

    Args:
        model: a classifier of normalised (B, 1, 28, 28) input, e.g. `Checkpoint.model`.
        images: paths, Pillow images, (H, W) arrays or tensors; one of them alone; or an (N, H, W)
            array or tensor (a batch).
        mean, std: the normalisation the model was trained with (`Checkpoint.mean`, `.std`).
        top_k: how many of the likeliest digits each prediction lists.
        invert: "auto", "yes" or "no"; see `mnistlab.preprocessing.preprocess`.
        batch_size: images preprocessed and classified together.
        progress: a progress bar on stderr; None shows one past PROGRESS_MIN_FILES inputs.
    """
    if not 1 <= top_k <= 10:
        raise ValueError(f"top_k must be between 1 and 10, got {top_k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    items = _as_list(images)
    show = len(items) > PROGRESS_MIN_FILES if progress is None else progress
    results: list[Prediction] = []
    with tqdm(total=len(items), unit="image", disable=not show, file=sys.stderr, leave=False) as bar:
        for batch in _chunks(enumerate(items), batch_size):
            prepared = [_prepare(item, index, invert) for index, item in batch]
            results += _classify(model, prepared, mean, std, top_k)
            bar.update(len(batch))
    return results


def _as_list(images: Source | Sequence[Source]) -> list[Source]:
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        single = images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (3, 4))
        return [images] if single else list(images)
    return list(images)


def _chunks(iterable: Iterable, size: int) -> Iterator[list]:
    iterator = iter(iterable)
    while batch := list(islice(iterator, size)):
        yield batch


def _prepare(item: Source, index: int, invert: str) -> Prediction:
    """Load and preprocess one input; a failure becomes the Prediction's error."""
    is_path = isinstance(item, (str, os.PathLike))
    source = str(item) if is_path else getattr(item, "filename", "") or f"<image {index}>"
    try:
        image = load_image(item) if is_path else item
        return Prediction(source, image=preprocess(image, invert=invert))
    except MnistlabError as e:
        message = str(e)
        return Prediction(source, error=message.removeprefix(f"{source}: "))


@torch.inference_mode()
def _classify(model: nn.Module, prepared: list[Prediction], mean: float, std: float,
              top_k: int) -> list[Prediction]:
    """Fill in label, probabilities and top-k of the prepared inputs, in one forward pass."""
    ready = [p for p in prepared if p.ok]
    if not ready:
        return prepared
    device = next(model.parameters()).device
    x = normalize(torch.stack([p.image for p in ready]).to(device), mean, std)  # (B, 1, 28, 28)
    probabilities = model.eval()(x).softmax(1).cpu()
    best_p, best_k = probabilities.topk(top_k, dim=1)
    for p, probs, ks, ps in zip(ready, probabilities.tolist(), best_k.tolist(), best_p.tolist(), strict=True):
        p.label, p.probabilities, p.top_k = ks[0], probs, list(zip(ks, ps, strict=True))
    return prepared


def save_preprocessed(predictions: Iterable[Prediction], folder: str | Path) -> list[Path | None]:
    """Write each prediction's 28×28 input as a PNG in `folder`, named after its source.

    Returns the path written for each prediction (None where it failed). Names that repeat
    (`a.png` and `a.jpg`, or one name in two folders) get `-2`, `-3`... appended.
    """
    folder, taken, written = Path(folder), set(), []
    for p in predictions:
        if p.image is None:
            written.append(None)
            continue
        stem = Path(p.source).stem.strip("<>").replace(" ", "-") or "image"
        name, n = f"{stem}.png", 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}.png"
        taken.add(name)
        pixels = (p.image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        with atomic_path(folder / name) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
        written.append(folder / name)
    return written


def format_table(predictions: Sequence[Prediction]) -> str:
    """One row per file: file, digit, confidence, the top-k; a failure shows its error instead."""
    k = next((len(p.top_k) for p in predictions if p.ok), 0)
    rows = [("file", "digit", "confidence", f"top {k}" if k else "top")]
    for p in predictions:
        if p.ok:
            top = "  ".join(f"{k} {prob:.1%}" for k, prob in p.top_k)
            rows.append((p.source, str(p.label), f"{p.confidence:.1%}", top))
        else:
            rows.append((p.source, "-", "-", f"error: {p.error}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}"
                     for row in rows)


def format_json(predictions: Sequence[Prediction]) -> str:
    """A JSON array with one object per file (`Prediction.to_dict`), one object per line."""
    if not predictions:
        return "[]"
    return "[\n" + ",\n".join(json.dumps(p.to_dict(), ensure_ascii=False) for p in predictions) + "\n]"
