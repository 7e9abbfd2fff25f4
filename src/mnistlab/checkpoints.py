"""Checkpoints: `model.safetensors` (weights) + `config.json` (everything needed to rebuild and
judge the model). No pickle: loading a checkpoint never runs code from the file.

A checkpoint may come from anyone, so `load_checkpoint` trusts nothing it has not checked: the
config against its schema (`records.CHECKPOINT`, then the model's own arguments), the weights' names,
shapes and dtypes from the safetensors header against the model built on the meta device (no
memory), and only then reads the weights, refusing any that are not finite.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from ._io import json_text, native_path
from ._outputs import StagedFolder
from .calibration import Calibration, scaled_softmax
from .classifier import Recorded
from .data import normalize
from .dataset_info import DIGIT_CLASSES, layout_of, recorded_dataset
from .device import resolve_device
from .errors import CheckpointError, FieldError, ForeignRecordError, MissingFileError, SchemaError, one_line
from .models import create_model, model_arguments
from .pretrained import PREFIX, list_pretrained, resolve
from .records import CHECKPOINT, CONFIG_FILE, MAX_HEADER_BYTES, WEIGHTS_FILE, read_json, read_prefix

MAX_PROBLEMS = 5  # weights that do not fit: list this many, then count the rest

# safetensors' dtype names → torch's, for the dtypes a model's parameters and buffers use.
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


@dataclass
class Checkpoint(Recorded):
    """A model rebuilt from disk, with the config it was saved with."""

    model: nn.Module
    config: dict  # config.json as checked: only the fields `records.CHECKPOINT` knows, each of its type and range
    path: Path  # the checkpoint's folder

    @property
    def mean(self) -> float:
        return self.config["normalization"]["mean"]

    @property
    def std(self) -> float:
        return self.config["normalization"]["std"]

    @property
    def classes(self) -> tuple[str, ...]:
        """The name of each class, in label order (a checkpoint from before names were saved: the digits)."""
        return tuple(self.config.get("dataset", {}).get("classes") or DIGIT_CLASSES)

    @property
    def layout(self) -> str:
        """How `predict` places an image in 28×28: as its dataset's images are ("digit" or "fill")."""
        return layout_of(recorded_dataset(self.config.get("dataset", {})))

    @property
    def calibration(self) -> Calibration | None:
        """How its confidence was calibrated (config.json's "calibration", checked when loaded); None: never."""
        record = self.config.get("calibration")
        return None if record is None else Calibration(**record)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.inference_mode()
    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (N, 28, 28) pixels in [0, 1] → float32 (N, 10) calibrated probabilities, softmax(logits / T)
        (`temperature`); NaN rows where the output is not finite."""
        x = normalize(torch.from_numpy(pixels).to(self.device), self.mean, self.std)  # (N, 1, 28, 28)
        logits = self.model.eval()(x).float()  # (N, 10)
        finite = torch.isfinite(logits).all(1) & torch.isfinite(x.flatten(1)).all(1)
        probabilities = scaled_softmax(logits, self.temperature)
        probabilities[~finite] = float("nan")
        return probabilities.cpu().numpy()


def checkpoint_files(model: nn.Module, model_name: str, model_args: dict, *, mean: float, std: float,
                     dataset: dict, metrics: dict, train_config: dict, command: str | None = None,
                     finetune: dict | None = None, calibration: dict | None = None,
                     reject: dict | None = None) -> dict[str, bytes]:
    """A checkpoint's two files as bytes: {WEIGHTS_FILE: the weights, CONFIG_FILE: the config that vouches for them}.

    `command`: the command line that made it (shell-quoted), recorded when given.
    `finetune`: the record of `mnistlab finetune` (`records.FINETUNE`), for a model adapted to someone's handwriting.
    `calibration`: how its confidence was calibrated (`records.CALIBRATION`); absent: at temperature 1.
    `reject`: its "not a digit" thresholds (`records.REJECT`); absent: it refuses nothing.
    """
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config = {
        **CHECKPOINT.header(torch.__version__),
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        **({"command": command} if command is not None else {}),
        "model": {"name": model_name, "args": model_args},
        "normalization": {"mean": mean, "std": std},
        "dataset": dataset,
        "metrics": metrics,
        "train_config": train_config,
        **({"finetune": finetune} if finetune is not None else {}),
        **({"calibration": calibration} if calibration is not None else {}),
        **({"reject": reject} if reject is not None else {}),
    }
    return {WEIGHTS_FILE: save(weights, metadata={"format": CHECKPOINT.name}),
            CONFIG_FILE: json_text(config).encode("utf-8")}


def save_checkpoint(folder: str | Path, model: nn.Module, model_name: str, model_args: dict, *,
                    mean: float, std: float, dataset: dict, metrics: dict, train_config: dict,
                    overwrite: bool = False) -> Path:
    """Write a checkpoint folder whole: staged beside `folder`, then renamed into place; return the folder.

    An existing checkpoint folder is replaced only with `overwrite=True`; see `mnistlab._outputs.StagedFolder`.
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
    try:  # read_json opens only a regular file (a FIFO of that name would block the read for ever)
        config = read_json(folder / CONFIG_FILE)
        if isinstance(config, dict) and config.get("format") == CHECKPOINT.name:
            return True
    except (OSError, ValueError):
        pass
    try:
        if not (folder / WEIGHTS_FILE).is_file():
            return False
        with native_path(folder / WEIGHTS_FILE) as name, safe_open(name, framework="pt") as weights:
            return (weights.metadata() or {}).get("format") == CHECKPOINT.name
    except Exception:  # any file at all may sit there; only a readable mark counts
        return False


def _resolve_folder(path: Path) -> Path:
    try:
        if path.is_dir():
            return path
        if path.name in (WEIGHTS_FILE, CONFIG_FILE) and path.parent.is_dir():
            return path.parent
        exists = path.exists()
    except OSError as e:  # a name too long, a path through a file: is_dir() raises for some
        raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None
    if exists:
        raise CheckpointError(f"{path}: expected a checkpoint folder (with {CONFIG_FILE} and {WEIGHTS_FILE})")
    raise CheckpointError(f"{path}: no such checkpoint; the shipped models need no training: "
                          f"{', '.join(PREFIX + name for name in list_pretrained())} (`mnistlab models`)")


def _read_config(path: Path) -> dict:
    """config.json, read bounded and strict, checked field by field (the model's arguments too)."""
    try:
        config = CHECKPOINT.check(read_json(path))
    except MissingFileError:
        raise CheckpointError(f"{path.parent}: not a checkpoint (missing {CONFIG_FILE})") from None
    except ForeignRecordError as e:  # another tool's config.json
        raise CheckpointError(f"{path}: not an mnistlab checkpoint config ({e})") from None
    except SchemaError as e:  # not JSON, too large, another format version, a field of the wrong type or range
        raise CheckpointError(f"{path}: {e}") from None
    try:
        arguments = model_arguments(config["model"]["name"])
    except (ValueError, TypeError) as e:  # unknown model, a plugin that fails to load, an odd signature
        raise CheckpointError(f"{path}: field 'model.name': {e}") from None
    try:
        config["model"]["args"] = arguments.check(config["model"]["args"], "model.args")
    except FieldError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return config


def _read_header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{tensor name: (shape, safetensors dtype)} from the file's header alone; no tensor is read."""
    try:
        prefix = read_prefix(path, 8)  # the header's length, little-endian u64
    except MissingFileError:
        raise CheckpointError(f"{path.parent}: not a checkpoint (missing {WEIGHTS_FILE})") from None
    except SchemaError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if len(prefix) == 8 and int.from_bytes(prefix, "little") > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: safetensors header claims {int.from_bytes(prefix, 'little'):,} bytes "
                              f"(at most {MAX_HEADER_BYTES:,})")
    try:
        # safetensors checks the header (valid JSON, offsets that tile the file exactly) before mapping a byte.
        with native_path(path) as name, safe_open(name, framework="pt") as file:
            return {name: (tuple(file.get_slice(name).get_shape()), file.get_slice(name).get_dtype())
                    for name in file.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({one_line(e)})") from None


def _check_fit(expected: dict[str, torch.Tensor], header: dict[str, tuple[tuple[int, ...], str]], where: Path) -> None:
    """The header's names, shapes and dtypes against the model's (a float tensor may hold any float dtype)."""
    problems = [f"missing {name}" for name in sorted(expected.keys() - header.keys())]
    problems += [f"unexpected {one_line(name, 80)}" for name in sorted(header.keys() - expected.keys())]
    for name in sorted(expected.keys() & header.keys()):
        want, (shape, dtype) = expected[name], header[name]
        found = SAFETENSORS_DTYPES.get(dtype)
        if shape != tuple(want.shape):
            problems.append(f"{name} is {shape}, config needs {tuple(want.shape)}")
        elif found is None or (found != want.dtype and not (found.is_floating_point and want.is_floating_point)):
            needs = "a float dtype (F16, BF16, F32 or F64)" if want.is_floating_point else str(want.dtype)
            problems.append(f"{name} is {dtype}, config needs {needs}")
    if problems:
        more = f"; and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise CheckpointError(f"{where}: weights do not match the config: "
                              f"{'; '.join(problems[:MAX_PROBLEMS])}{more}")


def _read_weights(path: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors, each in its parameter's dtype (F16, BF16, F64 become F32 for an F32 model), all finite."""
    try:
        with native_path(path) as name:
            weights = load_file(name)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({one_line(e)})") from None
    converted = {name: stored.to(expected[name].dtype) for name, stored in weights.items()}
    name = non_finite_tensor(converted)
    if name is not None:
        how = f" once converted to {converted[name].dtype}" if weights[name].dtype != converted[name].dtype else ""
        raise CheckpointError(f"{path}: tensor {name} holds non-finite values (NaN or infinity){how}")
    return converted


def non_finite_tensor(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None when all are finite.

    Training, fine-tuning and loading each refuse such weights: a model with them answers NaN for every image.
    """
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None


def _build(name: str, args: dict, where: Path) -> nn.Module:
    try:
        return create_model(name, **args)
    except Exception as e:  # the model's own code (maybe a plugin's) refused these arguments
        raise CheckpointError(f"{where}: cannot build model {name!r}: {one_line(e)}") from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild a model from a checkpoint folder (or its config.json / model.safetensors).

    The model comes back in eval mode on `device` ('auto' picks one). Any problem with the
    files raises `CheckpointError` with a one-line message naming the file and the field,
    before any memory is spent on weights that would not fit.
    """
    folder = _resolve_folder(resolve(path))  # `pretrained:NAME`: the package's folder, its files checked
    config = _read_config(folder / CONFIG_FILE)
    header = _read_header(folder / WEIGHTS_FILE)
    name, args = config["model"]["name"], config["model"]["args"]
    with torch.device("meta"):  # shapes and dtypes without memory: a config may ask for billions of weights
        expected = _build(name, args, folder / CONFIG_FILE).state_dict()
    _check_fit(expected, header, folder / WEIGHTS_FILE)
    weights = _read_weights(folder / WEIGHTS_FILE, expected)
    model = _build(name, args, folder / CONFIG_FILE)
    model.load_state_dict(weights)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    return Checkpoint(model.to(target).eval(), config, folder)
