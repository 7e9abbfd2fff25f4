"""Checkpoints: `model.safetensors` (weights) + `config.json` (everything needed to rebuild and
judge the model). No pickle: loading a checkpoint never runs code from the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from . import __version__
from ._io import StagedFolder
from .device import resolve_device
from .errors import MnistlabError
from .models import create_model

if TYPE_CHECKING:
    from .prediction import Prediction, Source

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "mnistlab.checkpoint"
FORMAT_VERSION = 1
MAX_MARK_BYTES = 1 << 20  # of config.json read to recognise a checkpoint (a real one is ~2 kB)


class CheckpointError(MnistlabError, ValueError):
    """A checkpoint is missing, truncated, foreign, or its weights do not fit its config."""


@dataclass
class Checkpoint:
    """A model rebuilt from disk, with the config it was saved with."""

    model: nn.Module
    config: dict  # the parsed config.json
    path: Path  # the checkpoint's folder

    @property
    def model_name(self) -> str:
        return self.config["model"]["name"]

    @property
    def mean(self) -> float:
        return self.config["normalization"]["mean"]

    @property
    def std(self) -> float:
        return self.config["normalization"]["std"]

    @property
    def metrics(self) -> dict:
        return self.config.get("metrics", {})

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, images: Source | Sequence[Source], top_k: int = 3, invert: str = "auto",
                batch_size: int = 256, progress: bool | None = None) -> list[Prediction]:
        """Classify image files or in-memory images; one `mnistlab.Prediction` per input, in order.

        Each image is first brought to MNIST's convention (`mnistlab.preprocess`); a bad one
        comes back with its `error` set instead of stopping the rest. See `mnistlab.prediction.predict`.
        """
        from .prediction import predict  # here, so that loading a checkpoint does not import scipy

        return predict(self.model, images, mean=self.mean, std=self.std, top_k=top_k, invert=invert,
                       batch_size=batch_size, progress=progress)


def checkpoint_files(model: nn.Module, model_name: str, model_args: dict, *, mean: float, std: float,
                     dataset: dict, metrics: dict, train_config: dict) -> dict[str, bytes]:
    """A checkpoint's two files as bytes: {WEIGHTS_FILE: the weights, CONFIG_FILE: the config that vouches for them}."""
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mnistlab_version": __version__,
        "torch_version": torch.__version__,
        "model": {"name": model_name, "args": model_args},
        "normalization": {"mean": mean, "std": std},
        "dataset": dataset,
        "metrics": metrics,
        "train_config": train_config,
    }
    return {WEIGHTS_FILE: save(weights, metadata={"format": FORMAT}),
            CONFIG_FILE: (json.dumps(config, indent=2) + "\n").encode("utf-8")}


def save_checkpoint(folder: str | Path, model: nn.Module, model_name: str, model_args: dict, *,
                    mean: float, std: float, dataset: dict, metrics: dict, train_config: dict,
                    overwrite: bool = False) -> Path:
    """Write a checkpoint folder whole: staged beside `folder`, then renamed into place; return the folder.

    An existing checkpoint folder is replaced only with `overwrite=True`; see `mnistlab._io.StagedFolder`.
    """
    files = checkpoint_files(model, model_name, model_args, mean=mean, std=std, dataset=dataset,
                             metrics=metrics, train_config=train_config)
    with StagedFolder(folder, overwrite=overwrite, replaceable=is_checkpoint_folder) as staging:
        for name, data in files.items():
            staging.write(name, data)
        return staging.publish()


def is_checkpoint_folder(folder: Path) -> bool:
    """Whether `folder` holds an mnistlab checkpoint, as its config.json or its weights' header says.

    This decides what `overwrite` may replace, so it looks for mnistlab's own mark rather than file names
    (another tool's folder may hold a config.json too).
    """
    # is_file first: only regular files are opened (a FIFO of that name would block the read for ever).
    try:
        if (folder / CONFIG_FILE).is_file():
            with open(folder / CONFIG_FILE, "rb") as f:
                config = json.loads(f.read(MAX_MARK_BYTES))
            if isinstance(config, dict) and config.get("format") == FORMAT:
                return True
    except (OSError, ValueError):
        pass
    try:
        if not (folder / WEIGHTS_FILE).is_file():
            return False
        with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as weights:
            return (weights.metadata() or {}).get("format") == FORMAT
    except Exception:  # any file at all may sit there; only a readable mark counts
        return False


def _resolve_folder(path: Path) -> Path:
    if path.is_dir():
        return path
    if path.name in (WEIGHTS_FILE, CONFIG_FILE) and path.parent.is_dir():
        return path.parent
    if path.exists():
        raise CheckpointError(f"{path}: expected a checkpoint folder (with {CONFIG_FILE} and {WEIGHTS_FILE})")
    raise CheckpointError(f"{path}: no such checkpoint")


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: not a checkpoint (missing {CONFIG_FILE})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an mnistlab checkpoint config (no \"format\": \"{FORMAT}\")")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {config.get('format_version')!r} "
                              f"is not supported (expected {FORMAT_VERSION}); upgrade mnistlab")
    for key, fields in (("model", ("name", "args")), ("normalization", ("mean", "std"))):
        if not isinstance(config.get(key), dict) or any(f not in config[key] for f in fields):
            raise CheckpointError(f"{path}: field {key!r} must hold {', '.join(fields)}")
    return config


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: not a checkpoint (missing {WEIGHTS_FILE})")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({e})") from None


def _check_fit(model: nn.Module, weights: dict[str, torch.Tensor], where: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    problems = [f"missing {k}" for k in expected.keys() - found.keys()]
    problems += [f"unexpected {k}" for k in found.keys() - expected.keys()]
    problems += [f"{k} is {found[k]}, config needs {expected[k]}"
                 for k in expected.keys() & found.keys() if found[k] != expected[k]]
    if problems:
        raise CheckpointError(f"{where}: weights do not match the config: {'; '.join(sorted(problems))}")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild a model from a checkpoint folder (or its config.json / model.safetensors).

    The model comes back in eval mode on `device` ('auto' picks one). Any problem with the
    files raises `CheckpointError` with a one-line message naming the file.
    """
    folder = _resolve_folder(Path(path))
    config = _read_config(folder / CONFIG_FILE)
    weights = _read_weights(folder / WEIGHTS_FILE)
    name, args = config["model"]["name"], config["model"]["args"]
    try:
        model = create_model(name, **args)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{folder / CONFIG_FILE}: cannot build model: {e}") from None
    _check_fit(model, weights, folder / WEIGHTS_FILE)
    model.load_state_dict(weights)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    return Checkpoint(model.to(target).eval(), config, folder)
