"""`load_model`: whatever a model name means, loaded as a `Classifier`.

A name is a run folder (or its config.json / model.safetensors), an exported `.onnx` file, or
pretrained weights (`pretrained:NAME`, `mnistlab.pretrained`); `locate` is the one place that turns
a name into a path. The kind of file then picks the loader.
"""

from __future__ import annotations

import os
from pathlib import Path

from .classifier import Classifier
from .onnx_model import load_onnx
from .pretrained import resolve
from .records import ONNX_SUFFIX


def load_model(name_or_path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None) -> Classifier:
    """A checkpoint (run folder, config.json or model.safetensors), pretrained weights (`pretrained:cnn`), or
    an exported `.onnx` file.

    Args:
        name_or_path: the run folder or file, or `pretrained:NAME`; a name ending in `.onnx` is read as an
            exported model.
        device: where a checkpoint's model runs ('auto' picks one); an ONNX file runs on the CPU.
        threads: an ONNX model's threads per inference (default: the CPU cores this process may use).

    Raises:
        CheckpointError, OnnxModelError, PretrainedError: one line naming the file (or name) and what is wrong.
    """
    path = locate(name_or_path)
    if is_onnx_path(path):
        return load_onnx(path, threads=threads)
    # Imported here, not above: serving an ONNX file must not load PyTorch (checkpoints imports torch).
    from .checkpoints import load_checkpoint

    return load_checkpoint(path, device=device)


def locate(name_or_path: str | os.PathLike) -> Path:
    """The file or folder a model name stands for: `pretrained:NAME`'s folder in the package, its files checked
    against their pins (`PretrainedError` otherwise); any other name as the path it is."""
    return resolve(name_or_path)


def is_onnx_path(path: str | os.PathLike) -> bool:
    """Whether `path` names an exported ONNX file (by its suffix: what the user typed decides, not the bytes)."""
    return Path(path).suffix.lower() == ONNX_SUFFIX
