"""What `predict` and `serve` run: a `Classifier`, loaded by `load_model` from a run folder or an exported file.

Two kinds exist: a checkpoint (`mnistlab.Checkpoint`, PyTorch) and an exported ONNX file
(`mnistlab.onnx_model.OnnxModel`, onnxruntime). This module imports neither torch nor
onnxruntime: `load_model` imports only the one the path asks for, so serving an ONNX file never
loads PyTorch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .pretrained import resolve

if TYPE_CHECKING:
    from .prediction import Prediction, Source

ONNX_SUFFIX = ".onnx"


class Classifier(Protocol):
    """A model that reads preprocessed 28×28 images, with what `serve` shows about it."""

    path: Path  # the run folder, or the exported file

    @property
    def classes(self) -> tuple[str, ...]:
        """The name of each class, in label order."""

    @property
    def layout(self) -> str:
        """How `predict` places an image in 28×28, as the model's dataset does ("digit" or "fill")."""

    @property
    def model_name(self) -> str:
        """The registered architecture, e.g. "mlp"."""

    @property
    def config(self) -> dict:
        """What the model records about itself (a checkpoint's config.json; an export's metadata)."""

    @property
    def metrics(self) -> dict:
        """The evaluation recorded at training (may be empty)."""

    @property
    def parameter_count(self) -> int:
        """The number of weights."""

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (N, 28, 28) pixels in [0, 1], white on black → float32 (N, classes) probabilities.

        A row is NaN where the model's output is not finite.
        """

    def predict(self, images: Source | Sequence[Source], top_k: int = 3, invert: str = "auto",
                batch_size: int = 256, progress: bool | None = None) -> list[Prediction]:
        """Classify image files or in-memory images (`mnistlab.prediction.predict`)."""


class Recorded:
    """What a model says of itself, read off its record: a checkpoint's config.json, an export's metadata."""

    config: dict

    @property
    def model_name(self) -> str:
        return self.config["model"]["name"]

    @property
    def metrics(self) -> dict:
        return self.config.get("metrics", {})


def score(model: Classifier, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on uint8 images (N, 28, 28) already in its dataset's convention.

    The test set's own images: no preprocessing, as training evaluated them. A NaN row (a model that
    gave a non-finite output) counts as wrong, with an infinite loss.
    """
    losses, correct = 0.0, 0
    for start in range(0, len(images), batch_size):
        p = model.probabilities(images[start:start + batch_size].astype(np.float32) / 255)
        y = labels[start:start + batch_size]
        picked = p[np.arange(len(y)), y]
        losses += float(-np.log(np.maximum(np.nan_to_num(picked, nan=0.0), np.finfo(np.float32).tiny)).sum())
        correct += int((np.nan_to_num(p, nan=-1.0).argmax(1) == y).sum())
    return losses / len(images), correct / len(images)


def is_onnx_path(path: str | os.PathLike) -> bool:
    """Whether `path` names an exported ONNX file (by its suffix: what the user typed decides, not the bytes)."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


def load_model(path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None) -> Classifier:
    """A checkpoint (run folder, config.json or model.safetensors), pretrained weights (`pretrained:cnn`,
    see `mnistlab.pretrained`), or an exported `.onnx` file.

    Args:
        path: the run folder or file, or `pretrained:NAME`; a name ending in `.onnx` is read as an exported model.
        device: where a checkpoint's model runs ('auto' picks one); an ONNX file runs on the CPU.
        threads: an ONNX model's threads per inference (default: the CPU cores this process may use).

    Raises:
        CheckpointError, OnnxModelError, PretrainedError: one line naming the file (or name) and what is wrong.
    """
    path = resolve(path)  # the pretrained folder, its files checked against their pins; a path as it is
    if is_onnx_path(path):
        from .onnx_model import load_onnx

        return load_onnx(path, threads=threads)
    from .checkpoints import load_checkpoint

    return load_checkpoint(path, device=device)
