"""Every file mnistlab writes, in one place: its name, its format and version, the fields it holds,
the provenance header it starts with, and how one is read back.

A run folder holds a checkpoint (`config.json` + `model.safetensors`, see `checkpoints.py`),
`metrics.json` (every evaluation of the run), `curves.png` and `report.html`. An export is one
file: `model.onnx`, whose metadata holds the `EXPORT` record under METADATA_KEY (see
`onnx_model.py`), or `model.pt`, which holds it as an extra file. A record that mnistlab reads back
is read bounded and strict (`read_json`), then checked field by field against its schema here
(`validation.py` is the engine), so that past this point the program trusts its types. Nothing here
imports torch or numpy.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from ._io import json_text, open_regular_file
from ._version import __version__
from .dataset_info import LAYOUTS
from .errors import ForeignRecordError, MetricsError, MissingFileError, NotRegularFileError, SchemaError
from .limits import (
    CLASS_NAME_MAX,
    MAX_CALIBRATION_SIZE,
    MAX_EVALUATIONS,
    MEAN_RANGE,
    NUM_CLASSES,
    SEED_MAX,
    STD_RANGE,
    TEMPERATURE_RANGE,
)
from .validation import Bool, Choice, Json, ListOf, MapOf, Nullable, Obj, Range, Text, show

# --- file names ----------------------------------------------------------------------------------------------------

RUNS_DIR = Path("runs")  # where runs go when no --out is given, and what commands make of shipped weights
CONFIG_FILE = "config.json"  # a checkpoint's record: the model, its normalisation, dataset and metrics
WEIGHTS_FILE = "model.safetensors"  # a checkpoint's weights (no pickle: loading runs no code from the file)
METRICS_FILE = "metrics.json"  # a run's every evaluation, its settings and timings
CURVES_FILE = "curves.png"  # a run's training curves
REPORT_FILE = "report.html"  # a run's report, figures embedded
ONNX_FILE = "model.onnx"  # `mnistlab export`'s default file in the run folder
TORCHSCRIPT_FILE = "model.pt"  # `mnistlab export --format torchscript`'s
ONNX_SUFFIX = ".onnx"  # a model path ending so is read as an export (what the user typed decides, not the bytes)
METADATA_KEY = "mnistlab"  # the ONNX metadata_props key of the export's record (other keys repeat parts of it)
TORCHSCRIPT_METADATA = "mnistlab.json"  # the TorchScript _extra_files entry that holds the export's record

# --- how much of a file from outside is read ---------------------------------------------------------------------

COMMAND_MAX = 1 << 16  # the command line a run was trained with, as config.json records it
MAX_HEADER_BYTES = 1 << 20  # a safetensors header lists each tensor in ~100 bytes; safetensors itself allows 100 MB
MAX_ONNX_BYTES = 512 << 20  # the largest model mnistlab trains (MAX_HIDDEN wide) exports to ~100 MB
MAX_METADATA_BYTES = 64 << 10  # an export's record is ~1 KB; a model's arguments are small
MAX_JSON_BYTES = 1 << 20  # 1 MiB: a config.json is ~2 KB, a metrics.json ~200 bytes per epoch
MAX_INT_DIGITS = 19  # a JSON integer must fit in 64 bits; a longer one is refused before int() reads it


# --- reading a file from outside: bounded, strict --------------------------------------------------------------------

@contextmanager
def _opened(path: str | Path) -> Iterator[BinaryIO]:
    """`_io.open_regular_file`, its failures as one-line SchemaErrors (a FIFO is refused, never waited on)."""
    try:
        file = open_regular_file(path)
    except FileNotFoundError:
        raise MissingFileError("no such file") from None
    except NotRegularFileError as e:
        kind = e.kind if e.file_type in (stat.S_IFDIR, stat.S_IFIFO) else "a device or socket"
        raise SchemaError(f"not a regular file ({kind})") from None
    except OSError as e:
        raise SchemaError(f"cannot be read ({e.strerror})") from None
    with file:
        yield file


def read_bounded(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; `SchemaError` for anything else."""
    with _opened(path) as file:
        size = os.fstat(file.fileno()).st_size
        if size > max_bytes:  # refused before a byte is read (a sparse file may claim terabytes)
            raise SchemaError(f"too large ({size:,} bytes; at most {max_bytes:,})")
        data = file.read(max_bytes + 1)  # size can lie (a /proc file) or change: read one byte past the limit
    if len(data) > max_bytes:
        raise SchemaError(f"too large (over {max_bytes:,} bytes)")
    return data


def read_prefix(path: str | Path, size: int) -> bytes:
    """The first `size` bytes of a regular file (fewer if it is shorter); `SchemaError` for anything else."""
    with _opened(path) as file:
        return file.read(size)


def _refuse_constant(name: str) -> float:
    raise SchemaError(f"not valid JSON ({name} is not a JSON number)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SchemaError(f"not valid JSON (number {text[:40]} overflows a float)")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise SchemaError(f"not valid JSON (integer {show(text)[1:-1]} has over {MAX_INT_DIGITS} digits)")
    return int(text)


def parse_json(data: bytes) -> object:
    """Strict JSON from bytes (UTF-8, a BOM allowed): no NaN or Infinity, no number that overflows a float
    or a 64-bit integer, no nesting deeper than Python can recurse; `SchemaError` with a one-line reason."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SchemaError(f"not valid JSON (not UTF-8: {e.reason} at byte {e.start})") from None
    try:
        return json.loads(text.removeprefix("\ufeff"), parse_constant=_refuse_constant,
                          parse_float=_finite_float, parse_int=_bounded_int)
    except json.JSONDecodeError as e:
        raise SchemaError(f"not valid JSON ({e})") from None
    except RecursionError:
        raise SchemaError("not valid JSON (nested too deeply)") from None


def read_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> object:
    """Read and parse a JSON file from outside; `SchemaError` says what is wrong, not which file."""
    return parse_json(read_bounded(path, max_bytes))


# --- an export's contract: one input, one output --------------------------------------------------------------------

INPUT_NAME = "pixels"  # (N, 28, 28), N free, white on black
OUTPUT_NAME = "probabilities"  # float32 (N, 10), the softmax over the classes
# What the pixels must look like, for each layout (`mnistlab.dataset_info.LAYOUTS`) of the model's dataset.
INPUT_CONVENTIONS = {
    "digit": "white ink on black, digit centred as in MNIST (20×20 box, centre of mass at the middle)",
    "fill": "white on black, the object's long side spanning all 28 pixels, centred by its box (as Fashion-MNIST)",
}
# The input dtypes an export may take: its name in the record → (onnxruntime's type name, the pixels' scale).
INPUT_DTYPES = {
    "uint8": ("tensor(uint8)", "0-255"),
    "float32": ("tensor(float)", "0-1"),
}

# --- fields that several records share ------------------------------------------------------------------------------

VERSION = Text(max_length=100)
MODEL = Obj({"name": Text(max_length=100), "args": MapOf(Json())}, required=frozenset({"name", "args"}))
NORMALIZATION = Obj({"mean": Range(*MEAN_RANGE), "std": Range(STD_RANGE[0])}, required=frozenset({"mean", "std"}))
# One name per class, in label order: shown in every figure, `predict` output and the report.
CLASSES = ListOf(Text(max_length=CLASS_NAME_MAX), min_length=NUM_CLASSES, max_length=NUM_CLASSES,
                 what=f"{NUM_CLASSES} class names")
DATASET = Obj({
    "name": Text(max_length=100),  # a name from mnistlab.dataset_info ("custom" before datasets had names: MNIST)
    "canonical": Bool(),  # every file was the published one
    "source": Text(max_length=4096, characters="text"),  # a folder's path may hold any character
    "sha256": MapOf(Text(pattern="[0-9a-f]{64}", meaning="64 lowercase hex digits"), max_length=16),
    "train_size": Range(0, 10**9, integer=True),
    "test_size": Range(0, 10**9, integer=True),
    "classes": CLASSES,
})
LOSS = Range(0, null_is_nan=True)  # a diverged run's loss is not a number: written as null, read as NaN
ACCURACY = Range(0, 1)
# One evaluation: after each epoch (a whole `epoch`), or every `eval_every` steps (a fractional one).
EPOCH = Obj({
    "epoch": Range(0, 10**6, low_open=True),
    "train_loss": LOSS, "train_acc": ACCURACY, "test_loss": LOSS, "test_acc": ACCURACY,
    "seconds": Range(0), "step": Range(1, 10**12, integer=True),
    "train_seconds": Range(0), "eval_seconds": Range(0),
}, required=frozenset({"epoch", "train_loss", "train_acc", "test_loss", "test_acc"}))


def provenance(torch_version: str) -> dict:
    """Who wrote a record: the header that config.json, metrics.json and an export's record carry."""
    return {"mnistlab_version": __version__, "torch_version": torch_version}


# --- records with a format mark ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordFormat:
    """A record that names its format and version first, so that a reader can tell it from another tool's file."""

    name: str  # the "format" mark: "mnistlab.checkpoint"
    version: int  # "format_version": a reader refuses another one ("upgrade mnistlab")
    noun: str  # what the record is, in messages: "checkpoint format version 2 is not supported"
    fields: Obj  # the record's other fields

    @property
    def schema(self) -> Obj:
        """The whole record: the format mark and version, then `fields`."""
        return replace(self.fields, fields={"format": Choice((self.name,)), "format_version": Choice((self.version,)),
                                            **self.fields.fields},
                       required=self.fields.required | {"format", "format_version"})

    def header(self, torch_version: str) -> dict:
        """The record's first fields, as a writer puts them: the mark, the version and `provenance`."""
        return {"format": self.name, "format_version": self.version, **provenance(torch_version)}

    def check(self, record: object) -> dict:
        """The record as the program may trust it: only the fields the schema knows, each of its type and range.

        Raises:
            ForeignRecordError: no "format" mark of this format (another tool's JSON, or not an object).
            SchemaError: another format version, before any field is checked, so that it says "upgrade".
            FieldError: the first field that is missing or of the wrong type or range, by its path.
        """
        if not isinstance(record, dict) or record.get("format") != self.name:
            raise ForeignRecordError(f'no "format": "{self.name}"')
        version = record.get("format_version")
        if isinstance(version, int) and not isinstance(version, bool) and version != self.version:
            raise SchemaError(f"{self.noun} format version {version} is not supported (expected {self.version}); "
                              "upgrade mnistlab")
        return self.schema.check(record, "")


SHA256 = Text(pattern="[0-9a-f]{64}", meaning="64 lowercase hex digits")
# config.json's "reject": the "not a digit" rule's thresholds on the score, one per strictness above "off"
# (`mnistlab.rejection`, which fits and applies them).
REJECT_SCORES = ("max_probability",)  # the largest class probability, at "temperature" (absent: the calibrated one)
REJECT_LEVELS = ("normal", "strict")
STRICTNESS = ("off", *REJECT_LEVELS)  # `--reject`: never refuse, the model's rule, refuse more readily
REJECT = Obj({
    "score": Choice(REJECT_SCORES),
    "temperature": Range(*TEMPERATURE_RANGE),  # the logits' temperature the score's softmax is taken at
    "thresholds": Obj({level: Range(0, 1) for level in REJECT_LEVELS}, required=frozenset(REJECT_LEVELS)),
    "held_out_digits": Range(1, 10**7, integer=True),  # how many digits the thresholds were fit on
}, required=frozenset({"score", "thresholds"}))
FINETUNE_ACCURACIES = Obj({"held_out_acc": Nullable(ACCURACY), "test_acc": ACCURACY})
# config.json's "finetune": a model that `mnistlab finetune` adapted to a person's handwriting, its base, the
# images it learnt from and the split it was measured on. Names that are not UTF-8 are recorded as `\xff` text.
FINETUNE = Obj({
    "base": Text(max_length=4096, characters="text"),  # a run folder's path as given, or pretrained:NAME
    "base_sha256": SHA256,  # of the base's model.safetensors
    "images": Text(max_length=4096, characters="text"),
    "images_sha256": SHA256,  # of the digit, name and bytes of each image read
    "trained_images": Range(0, 10**6, integer=True),
    "held_out_images": Range(0, 10**6, integer=True),
    "unreadable_images": Range(0, 10**6, integer=True),
    "epochs": Range(1, 10**6, integer=True),
    "lr": Range(0, low_open=True),
    "batch_size": Range(1, 10**6, integer=True),
    "mix": Range(0, 10**6, integer=True),
    "augment": Range(0),
    "holdout": Range(0, 1),
    "seed": Range(0, SEED_MAX, integer=True),
    "held_out": MapOf(ListOf(Text(max_length=1024, characters="text"), what="file names"), max_length=NUM_CLASSES),
    "before": FINETUNE_ACCURACIES,
    "after": FINETUNE_ACCURACIES,
})

CALIBRATION_METHODS = ("temperature", "none")  # none: not calibrated (temperature 1), the record says why
# config.json's "calibration" (and an export's): how the model's confidence was calibrated, on what, and how
# well. `Checkpoint.probabilities` and the ONNX graph divide the logits by `temperature` before the softmax.
CALIBRATION = Obj({
    "method": Choice(CALIBRATION_METHODS),
    "temperature": Range(*TEMPERATURE_RANGE),
    "data": Text(max_length=1000, characters="text"),  # which images, in words ("the last 5,000 training images")
    "images": Range(0, MAX_CALIBRATION_SIZE, integer=True),
    "bins": Range(1, 1000, integer=True),  # the ECE's equal-width confidence bins
    "ece_before": Range(0, 1), "ece_after": Range(0, 1),  # on `data`, at temperature 1 and at `temperature`
    "nll_before": Range(0), "nll_after": Range(0),
}, required=frozenset({"method", "temperature"}))

# config.json: everything needed to rebuild and judge the model. Unknown fields are dropped, so
# `Checkpoint.config` holds only checked values; the model's arguments are checked against the named
# model's own schema next (`models.model_arguments`, in `checkpoints.py`).
CHECKPOINT = RecordFormat("mnistlab.checkpoint", 1, "checkpoint", Obj({
    "mnistlab_version": VERSION,
    "torch_version": VERSION,
    "python_version": VERSION,  # these three: older folders lack them
    "numpy_version": VERSION,
    "command": Text(max_length=COMMAND_MAX, characters="text"),  # the `mnistlab train ...` line, shell-quoted
    "model": MODEL,
    "normalization": NORMALIZATION,
    "dataset": DATASET,
    "metrics": replace(EPOCH, required=frozenset()),
    "train_config": MapOf(Json()),
    "finetune": FINETUNE,  # only in a model `mnistlab finetune` wrote
    "calibration": CALIBRATION,  # absent (a run from before calibration): temperature 1
    "reject": REJECT,  # the "not a digit" thresholds (`mnistlab.rejection`); absent: nothing refused
}, required=frozenset({"model", "normalization"})))

# An export's record (ONNX metadata, TorchScript extra file): what it takes and returns, and where it came from.
EXPORT = RecordFormat("mnistlab.export", 1, "export", Obj({
    "mnistlab_version": VERSION,
    "torch_version": VERSION,
    "model": replace(MODEL, required=frozenset({"name"})),
    "dataset": Obj({"name": Text(max_length=100)}),
    "classes": CLASSES,
    "input": Obj({
        "name": Text(max_length=100),
        "dtype": Choice(tuple(INPUT_DTYPES)),
        "shape": Json(max_depth=1),
        "scale": Text(max_length=100),
        "convention": Text(max_length=200),
        "layout": Choice(LAYOUTS),  # absent: "digit" (an export from before layouts)
    }, required=frozenset({"dtype"})),
    "output": Obj({"name": Text(max_length=100), "shape": Json(max_depth=1), "meaning": Text(max_length=200)}),
    # Already applied inside the graph: recorded so that a reader knows what the model expects.
    "normalization": NORMALIZATION,
    "parameters": Range(0, 10**12, integer=True),
    "metrics": Obj({"test_acc": Range(0, 1), "test_loss": Range(0)}),
    "calibration": CALIBRATION,  # already applied inside the graph, as the normalisation is
    "reject": REJECT,  # copied from the checkpoint's config.json
}, required=frozenset({"classes", "input", "model"})))

LONGEST_NUMBER = -2.2250738585072014e-308  # 24 characters: no float's repr is longer, nor a 64-bit integer's


def _largest_row_bytes() -> int:
    """The most bytes one row of metrics.json takes as training writes it (`json_text`, rows two levels deep):
    every field present, each the longest number."""
    row = {name: LONGEST_NUMBER for name in EPOCH.fields}
    return len(json_text({"epochs": [row, row]})) - len(json_text({"epochs": [row]}))


# The largest metrics.json a run can write: its rows (one per evaluation, at most MAX_EVALUATIONS), and the rest
# (config, dataset, versions: the fields of a config.json) within the cap of any other record.
MAX_METRICS_BYTES = MAX_JSON_BYTES + MAX_EVALUATIONS * _largest_row_bytes()

# metrics.json, as `report` and `plot curves` render it: each field typed, unknown ones dropped.
# A diverged run's loss is null (strict JSON has no NaN) and is read as NaN, a gap in the curves.
METRICS = Obj({
    "epochs": ListOf(EPOCH, min_length=1, max_length=MAX_EVALUATIONS, what="per-epoch rows"),
    "config": MapOf(Json(max_depth=2), max_length=100),
    "dataset": DATASET,
    "device": Text(max_length=100),
    "wall_seconds": Range(0),
    "train_seconds": Range(0),
    "eval_seconds": Range(0),
    "time_to_target": Nullable(Range(0)),
    "calibration": CALIBRATION,
    "mnistlab_version": VERSION,
    "torch_version": VERSION,
}, required=frozenset({"epochs"}))


def load_metrics(run: str | Path) -> dict:
    """Read and check a run's metrics.json (given the run folder or the file itself).

    The file is read bounded and strict (`read_json`) and checked against
    `METRICS`; epochs must count up. Any problem raises `MetricsError` naming the field.
    """
    path = Path(run)
    try:
        if path.is_dir():
            path = path / METRICS_FILE
        metrics = METRICS.check(read_json(path, MAX_METRICS_BYTES), "")
    except MissingFileError:
        if path.name == METRICS_FILE:
            raise MetricsError(f"{path.parent}: missing {METRICS_FILE} (not a run folder?)") from None
        raise MetricsError(f"{path}: no such run folder") from None
    except SchemaError as e:
        raise MetricsError(f"{path}: {e}") from None
    except OSError as e:  # is_dir() raises for a name too long
        raise MetricsError(f"{path}: cannot be read ({e.strerror})") from None
    epochs = metrics["epochs"]
    for i in range(1, len(epochs)):
        if epochs[i]["epoch"] <= epochs[i - 1]["epoch"]:
            raise MetricsError(f"{path}: field 'epochs[{i}].epoch' must be greater than the row before's "
                               f"({epochs[i - 1]['epoch']:g}), got {epochs[i]['epoch']:g}")
    return metrics
