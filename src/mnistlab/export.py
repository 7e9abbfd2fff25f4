"""`mnistlab export`: a checkpoint as one file that runs without mnistlab (ONNX, or TorchScript).

The exported model takes raw pixels, (N, 28, 28) with N free, white on black and placed as the
run's dataset places its images, and returns the class probabilities (N, 10): the checkpoint's
normalisation and the softmax are folded in, so a user needs nothing but onnxruntime (or torch)
and an image. The contract and the metadata are those of `mnistlab.onnx_model`, which reads the
ONNX file back.

    ONNX         one input dtype per file: uint8 0-255 (default) or float32 0-1; metadata_props
    TorchScript  either dtype at run time (the module branches on it); the metadata in _extra_files
"""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ._outputs import atomic_path, check_output_file
from ._version import __version__
from .checkpoints import Checkpoint, load_checkpoint
from .config import EXPORT_FORMATS, EXPORT_INPUTS, ExportConfig
from .dataset_info import recorded_dataset
from .errors import ExportError
from .limits import IMAGE_SIZE, NUM_CLASSES
from .pretrained import outputs_folder
from .records import (
    CONFIG_FILE,
    EXPORT,
    INPUT_CONVENTIONS,
    INPUT_DTYPES,
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    TORCHSCRIPT_METADATA,
    WEIGHTS_FILE,
)

FORMATS, INPUTS = EXPORT_FORMATS, EXPORT_INPUTS  # format → its default file name; --input → the ONNX dtype
DEFAULT_EXPORT = ExportConfig()
ONNX_OPSET = 18  # onnxruntime ≥ 1.14 runs it


class Deployable(nn.Module):
    """Raw pixels (N, 28, 28), uint8 0-255 or float 0-1 → calibrated class probabilities (N, 10).

    The checkpoint's temperature is a constant of the graph, as its normalisation is, so an export
    answers exactly as `Checkpoint.probabilities` does.
    """

    def __init__(self, model: nn.Module, mean: float, std: float, temperature: float = 1.0):
        super().__init__()
        self.model, self.mean, self.std, self.temperature = model, mean, std, temperature

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(torch.float32)
        if pixels.dtype == torch.uint8:  # TorchScript keeps both branches; ONNX export keeps the example's
            x = x / 255.0
        x = (x - self.mean) / self.std
        return (self.model(x.unsqueeze(1)).float() / self.temperature).softmax(1)  # (N, 1, 28, 28) → (N, 10)


def metadata(checkpoint: Checkpoint, dtype: str | None) -> dict:
    """The record an export carries: what it takes and returns, the classes, where it came from.

    `dtype` is the ONNX file's input dtype; None for TorchScript, which takes either.
    """
    dtypes = [dtype] if dtype else list(INPUT_DTYPES)
    accuracy = checkpoint.metrics.get("test_acc")
    return {
        **EXPORT.header(torch.__version__),
        "model": checkpoint.config["model"],
        "dataset": {"name": recorded_dataset(checkpoint.config.get("dataset", {}))},
        "classes": list(checkpoint.classes),
        "input": {"name": INPUT_NAME, "dtype": " or ".join(dtypes), "shape": ["N", IMAGE_SIZE, IMAGE_SIZE],
                  "scale": " or ".join(f"{INPUT_DTYPES[d][1]} ({d})" for d in dtypes),
                  "convention": INPUT_CONVENTIONS[checkpoint.layout], "layout": checkpoint.layout},
        "output": {"name": OUTPUT_NAME, "shape": ["N", NUM_CLASSES],
                   "meaning": "float32 probabilities of the classes, in label order (softmax applied, "
                              "calibrated: logits divided by the temperature first)"},
        "normalization": {"mean": checkpoint.mean, "std": checkpoint.std, "applied": "inside the model"},
        "parameters": checkpoint.parameter_count,
        "metrics": {"test_acc": accuracy} if isinstance(accuracy, float) else {},
        **({"calibration": checkpoint.config["calibration"]} if "calibration" in checkpoint.config else {}),
        **({"reject": checkpoint.config["reject"]} if "reject" in checkpoint.config else {}),
    }


def export(run: str | Path, config: ExportConfig = DEFAULT_EXPORT) -> Path:
    """Export the checkpoint in `run` as one file; return its path.

    The output is checked before the work and written whole or not at all.

    Raises:
        ValueError: a format or input that is not one of `EXPORT_FORMATS` / `EXPORT_INPUTS` (`mnistlab.config`).
        CheckpointError: the run folder is not a usable checkpoint.
        OutputError: the output cannot be written.
        ExportError: the exporter failed, or the onnx package is missing.
    """
    config.validate()  # ValueError naming the option and its choices
    checkpoint = load_checkpoint(run, device="cpu")
    # The default: in the run folder; in the current folder for pretrained weights (part of the install).
    out = check_output_file(config.out or outputs_folder(checkpoint.path) / FORMATS[config.format])
    if out.resolve() in {(checkpoint.path / name).resolve() for name in (CONFIG_FILE, WEIGHTS_FILE)}:
        raise ExportError(f"{out}: is the checkpoint's own file; export to another name")
    wrapper = Deployable(checkpoint.model, checkpoint.mean, checkpoint.std, checkpoint.temperature).eval()
    if config.format == "onnx":
        data = onnx_bytes(wrapper, metadata(checkpoint, INPUTS[config.input]))
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
    else:
        module = torchscript_module(wrapper)
        record = json.dumps(metadata(checkpoint, None), indent=2)
        with atomic_path(out) as tmp, _quiet():  # torch 2.13 warns that TorchScript is deprecated
            torch.jit.save(module, str(tmp), _extra_files={TORCHSCRIPT_METADATA: record})
    return out


def torchscript_module(wrapper: Deployable) -> torch.jit.ScriptModule:
    """The wrapper scripted (so that its dtype branch survives) around the model traced (any model's code)."""
    example = torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    with _quiet():
        traced = torch.jit.trace(wrapper.model, example)
        return torch.jit.script(Deployable(traced, wrapper.mean, wrapper.std, wrapper.temperature))


def onnx_bytes(wrapper: Deployable, record: dict) -> bytes:
    """The ONNX file of `wrapper` for uint8 or float32 input (as `record` says), its metadata set.

    torch.export's exporter (`dynamo=True`), not the TorchScript-based one: that one is no longer
    the default since PyTorch 2.9 and warns on every call that it will be removed. This one gives a
    single file with a named, dynamic batch dimension; it needs onnxscript (the `export` extra).
    """
    try:
        import onnx  # noqa: F401 (the exporter needs both; a clear message beats its ImportError)
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ExportError(f"ONNX export needs the export extra ({e.name} is missing): "
                          "pip install 'mnistlab[export]'") from None
    dtype = {"uint8": torch.uint8, "float32": torch.float32}[record["input"]["dtype"]]
    example = torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE, dtype=dtype)  # 2, not 1: a size-1 dimension is specialised
    try:
        with _quiet():
            program = torch.onnx.export(
                wrapper, (example,), dynamo=True, opset_version=ONNX_OPSET, external_data=False, verbose=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("N")},))
    except Exception as e:  # a model torch.export cannot capture
        raise ExportError(f"cannot export {record['model']['name']!r} to ONNX ({type(e).__name__}: {e})") from None
    proto = program.model_proto
    readable = {"classes": json.dumps(record["classes"]), "input": f"{INPUT_NAME}: {record['input']['dtype']} "
                f"(N, {IMAGE_SIZE}, {IMAGE_SIZE}), {record['input']['scale']}, {record['input']['convention']}",
                "output": f"{OUTPUT_NAME}: float32 (N, {NUM_CLASSES}), softmax over the classes",
                "temperature": repr(record.get("calibration", {}).get("temperature", 1.0)),
                "dataset": record["dataset"]["name"], "model": record["model"]["name"],
                "mnistlab_version": __version__}
    del proto.metadata_props[:]
    for key, value in {METADATA_KEY: json.dumps(record), **readable}.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = "mnistlab export: raw 28×28 pixels → class probabilities; see the 'mnistlab' metadata"
    return proto.SerializeToString()


@contextmanager
def _quiet():
    """Silence the exporters' chatter (progress lines, deprecation notes, "torchvision is not installed")."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
