"""`load_model`: whatever a model name means, loaded as a `Classifier`.

A name is a run folder (or its config.json / model.safetensors), or an exported `.onnx` file;
`_locate` is the one place that turns a name into a path, so that a new kind of name (issue 16's
`pretrained:NAME`) is one branch there. The kind of file then picks the loader.
"""

from __future__ import annotations

import os
from pathlib import Path

from .classifier import Classifier
from .onnx_model import load_onnx
from .records import ONNX_SUFFIX


def load_model(name_or_path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None) -> Classifier:
    """A checkpoint (run folder, config.json or model.safetensors) or an exported `.onnx` file.

    Args:
        name_or_path: the run folder or file; a name ending in `.onnx` is read as an exported model.
        device: where a checkpoint's model runs ('auto' picks one); an ONNX file runs on the CPU.
        threads: an ONNX model's threads per inference (default: the CPU cores this process may use).

    Raises:
        CheckpointError, OnnxModelError: one line naming the file and what is wrong with it.
    """
    path = _locate(name_or_path)
    if is_onnx_path(path):
        return load_onnx(path, threads=threads)
    # Imported here, not above: serving an ONNX file must not load PyTorch (checkpoints imports torch).
    from .checkpoints import load_checkpoint

    return load_checkpoint(path, device=device)


def _locate(name_or_path: str | os.PathLike) -> str | os.PathLike:
    """The file or folder a model name stands for: for now, the path as given."""
    return name_or_path


def is_onnx_path(path: str | os.PathLike) -> bool:
    """Whether `path` names an exported ONNX file (by its suffix: what the user typed decides, not the bytes)."""
    return Path(path).suffix.lower() == ONNX_SUFFIX
