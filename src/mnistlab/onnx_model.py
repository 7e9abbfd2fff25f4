"""An exported ONNX model (`mnistlab export`), run by onnxruntime: a classifier without PyTorch.

The file is the contract a deployment relies on, written down once in `records.py` for both sides:
`export.py` writes it and `load_onnx` reads it back. One input, `pixels`, (N, 28, 28)
with N free, either uint8 0-255 or float32 0-1, white on black and placed as the model's dataset
places its images (`INPUT_CONVENTIONS`, by layout);
one output, `probabilities`, float32 (N, 10), the softmax over the classes. The normalisation,
the calibration's temperature (the logits are divided by it) and the softmax are inside the
graph. `metadata_props` holds the same facts as JSON under METADATA_KEY, and a few of them again
under readable keys.

An ONNX file may come from anyone, so `load_onnx` checks it once, before it is used: a regular
file under MAX_ONNX_BYTES, parsed by onnxruntime from memory (external data files are refused: they
would be looked up in an empty folder), mnistlab's metadata read against `records.EXPORT`, and
the graph's input and output against the contract. Any problem is one `OnnxModelError` line.
Nothing here imports torch.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .classifier import Recorded
from .errors import FieldError, ForeignRecordError, MissingFileError, OnnxModelError, SchemaError, escape, one_line
from .limits import IMAGE_SIZE, NUM_CLASSES
from .records import (
    EXPORT,
    INPUT_DTYPES,
    INPUT_NAME,
    MAX_METADATA_BYTES,
    MAX_ONNX_BYTES,
    METADATA_KEY,
    OUTPUT_NAME,
    parse_json,
    read_bounded,
)

if TYPE_CHECKING:
    import onnxruntime


@dataclass
class OnnxModel(Recorded):
    """An exported model in an onnxruntime session, with the metadata it was exported with."""

    session: onnxruntime.InferenceSession
    metadata: dict  # the METADATA_KEY record as checked: only the fields `records.EXPORT` knows
    path: Path

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.metadata["classes"])

    @property
    def layout(self) -> str:
        return self.metadata["input"].get("layout", "digit")

    @property
    def input_dtype(self) -> str:
        return self.metadata["input"]["dtype"]

    @property
    def config(self) -> dict:
        return self.metadata

    @property
    def parameter_count(self) -> int:
        return self.metadata.get("parameters", 0)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (N, 28, 28) pixels in [0, 1] → float32 (N, 10) calibrated probabilities (the graph applies
        `temperature`); NaN rows where the output is not finite.

        A uint8 model is given the pixels rounded to 0-255, as a PNG of them would hold.
        """
        if self.input_dtype == "uint8":
            pixels = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
        try:
            [output] = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(pixels)})
        except Exception as e:  # a graph that cannot compute what it declares (onnxruntime's own error types)
            raise OnnxModelError(f"{_shown(self.path)}: the model failed to run ({one_line(e, 200)})") from None
        # The graph's declared shape was checked at load; what it computes is checked here, once per call.
        if not isinstance(output, np.ndarray) or output.shape != (len(pixels), NUM_CLASSES):
            shape = getattr(output, "shape", type(output).__name__)
            raise OnnxModelError(f"{_shown(self.path)}: the model returned {shape} for {len(pixels)} images, "
                                 f"not ({len(pixels)}, {NUM_CLASSES}) probabilities")
        output = output.astype(np.float32, copy=True)
        output[~np.isfinite(output).all(1)] = np.nan
        return output


def load_onnx(path: str | os.PathLike, *, threads: int | None = None) -> OnnxModel:
    """Load an ONNX file written by `mnistlab export`, checked against its contract (see the module's docstring).

    Args:
        path: the `.onnx` file.
        threads: threads per inference (default: the CPU cores this process may use).

    Raises:
        OnnxModelError: one line naming the file: missing, not a regular file, too large, not ONNX,
            external data, no or bad mnistlab metadata, an input or output other than the contract's.
    """
    path = Path(path)
    try:
        data = read_bounded(path, MAX_ONNX_BYTES)
    except MissingFileError:
        raise OnnxModelError(f"{_shown(path)}: no such file") from None
    except (SchemaError, OSError) as e:  # a folder, a FIFO, too large...
        raise OnnxModelError(f"{_shown(path)}: {e}") from None
    except ValueError:  # a NUL byte in a name given in memory
        raise OnnxModelError(f"{_shown(path)}: no such file (a file name cannot hold a NUL byte)") from None
    if not data:
        raise OnnxModelError(f"{_shown(path)}: the file is empty (expected an ONNX model)")
    session = _session(data, path, threads or len(os.sched_getaffinity(0)))
    metadata = _read_metadata(session, path)
    _check_signature(session, metadata["input"]["dtype"], path)
    return OnnxModel(session, metadata, path)


def _session(data: bytes, path: Path, threads: int) -> onnxruntime.InferenceSession:
    try:
        import onnxruntime
    except ImportError:
        raise OnnxModelError(f"{_shown(path)}: running an ONNX model needs onnxruntime: "
                             "pip install 'mnistlab[deploy]'") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one small graph: its operators run one after another
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: a user's file must not fill the terminal with warnings
    with tempfile.TemporaryDirectory(prefix="mnistlab-onnx-") as empty:
        # A model parsed from memory finds external data files relative to this folder, which is empty:
        # a file that points outside itself (at a FIFO, a device, a secret) is refused, not read.
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", empty)
        try:
            return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for every kind of bad model
            raise OnnxModelError(f"{_shown(path)}: not a usable ONNX model ({one_line(e, 200)})") from None


def _read_metadata(session: onnxruntime.InferenceSession, path: Path) -> dict:
    props = session.get_modelmeta().custom_metadata_map
    raw = props.get(METADATA_KEY)
    if raw is None:
        raise OnnxModelError(f"{_shown(path)}: not an mnistlab export (no {METADATA_KEY!r} metadata; "
                             "export a run with `mnistlab export RUN`)")
    encoded = raw.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_METADATA_BYTES:
        raise OnnxModelError(f"{_shown(path)}: metadata {METADATA_KEY!r} is {len(encoded):,} bytes "
                             f"(at most {MAX_METADATA_BYTES:,})")
    try:
        record = parse_json(encoded)
    except SchemaError as e:
        raise OnnxModelError(f"{_shown(path)}: metadata {METADATA_KEY!r}: {e}") from None
    try:
        return EXPORT.check(record)
    except ForeignRecordError as e:
        raise OnnxModelError(f"{_shown(path)}: not an mnistlab export (metadata {METADATA_KEY!r} has {e})") from None
    except FieldError as e:
        raise OnnxModelError(f"{_shown(path)}: metadata {METADATA_KEY!r}: {e}") from None
    except SchemaError as e:  # another format version
        raise OnnxModelError(f"{_shown(path)}: {e}") from None


def _shown(path: Path) -> str:
    """The path as a message shows it: a newline or an escape sequence in a file name made visible."""
    return escape(str(path))


def _check_signature(session: onnxruntime.InferenceSession, dtype: str, path: Path) -> None:
    """One input (N, 28, 28) of the dtype the metadata names, N free; one output (N, 10) of float32."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    kind = INPUT_DTYPES[dtype][0]
    if [i.name for i in inputs] != [INPUT_NAME] or not _fits(inputs[0], kind, (IMAGE_SIZE, IMAGE_SIZE)):
        raise OnnxModelError(f"{_shown(path)}: the model's inputs are {_describe(inputs)}; expected one: "
                             f"{INPUT_NAME} {kind} (N, {IMAGE_SIZE}, {IMAGE_SIZE})")
    if [o.name for o in outputs] != [OUTPUT_NAME] or not _fits(outputs[0], "tensor(float)", (NUM_CLASSES,)):
        raise OnnxModelError(f"{_shown(path)}: the model's outputs are {_describe(outputs)}; expected one: "
                             f"{OUTPUT_NAME} tensor(float) (N, {NUM_CLASSES})")


def _fits(node: onnxruntime.NodeArg, kind: str, tail: tuple[int, ...]) -> bool:
    """The node has type `kind` and shape (N, *tail) with N free (a name, or unknown): any batch size."""
    shape = node.shape
    return (node.type == kind and isinstance(shape, list) and len(shape) == 1 + len(tail)
            and not isinstance(shape[0], int) and tuple(shape[1:]) == tail)


def _describe(nodes: list[onnxruntime.NodeArg]) -> str:
    shown = [f"{one_line(n.name, 40)} {one_line(n.type, 40)} {tuple(n.shape) if isinstance(n.shape, list) else '?'}"
             for n in nodes[:3]]
    return ", ".join(shown) + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "") if nodes else "none"
