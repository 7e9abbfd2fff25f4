"""Every default, bound and choice of a training run and of the commands, each declared once, next to its name.

A setting is a dataclass field whose type carries its rule, as the models declare their arguments:
`epochs: Annotated[int, Range(1, MAX_EPOCHS)] = 5`, `invert: Annotated[str, Choice(INVERT_CHOICES)] = "auto"`.
`Range` and `Choice` are the field types of `mnistlab.validation`, the one validation engine: from that
one declaration come the library's check of every field's type and range (`check_fields`, raising
`ValueError` naming the field), the command line's flag types and the ranges and defaults its help
quotes (`cli/_args.py`), and the JSON schema of a set of settings (`json_schema`). The numbers
themselves, each with the reason for it, are in `mnistlab.limits`.

This module imports no torch (nor anything above the bottom layer): `mnistlab --help` reads it.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Annotated

from .dataset_info import get_dataset, list_datasets
from .errors import FieldError
from .limits import (
    MAX_BATCH_SIZE,
    MAX_CALIBRATION_SIZE,
    MAX_EPOCHS,
    MAX_EVAL_EVERY,
    MAX_GRID_CELLS,
    MAX_HOLDOUT,
    MAX_LR,
    MAX_MIX,
    MAX_OUTLIER_EXPOSURE,
    MAX_PORT,
    MAX_REGULARISATION,
    MAX_TRAIN_LIMIT,
    MAX_UPLOAD_MB,
    MAX_WEIGHT_DECAY,
    MEAN_RANGE,
    MIN_LR,
    NUM_CLASSES,
    SEED_MAX,
    STD_RANGE,
)
from .records import ONNX_FILE, STRICTNESS, TORCHSCRIPT_FILE
from .validation import Choice, Field, Nullable, Range, field_for

__all__ = ["Range", "Choice", "TrainConfig", "FinetuneConfig", "PredictOptions", "ExportConfig", "ServeOptions",
           "PlotOptions", "check_fields", "check_value", "rule", "bounds", "default", "json_schema", "DEVICES",
           "INVERT_CHOICES", "OPTIMIZERS", "SCHEDULES", "EXPORT_FORMATS", "EXPORT_INPUTS"]

# --- the facts -------------------------------------------------------------------------------------------------------

DEVICES = ("auto", "cpu", "cuda", "mps")  # auto = CUDA, then Apple MPS, then CPU
DEVICE = Choice(DEVICES, pattern=r"cuda:[0-9]+", pattern_text="cuda:N")
INVERT_CHOICES = ("auto", "yes", "no")  # dark ink on light paper: detect it, always invert, never
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "onecycle", "cosine")
EXPORT_FORMATS = {"onnx": ONNX_FILE, "torchscript": TORCHSCRIPT_FILE}  # format → its default file in the run folder
EXPORT_INPUTS = {"uint8": "uint8", "float": "float32"}  # --input → the ONNX input's dtype
SEED = Range(0, SEED_MAX)  # torch.manual_seed and torch.Generator take 0 … 2**64 - 1
BATCH = Range(1, MAX_BATCH_SIZE)


@dataclass
class TrainConfig:
    """Everything a training run depends on. The defaults are the classic recipe (`mnistlab.recipes`)."""

    model: str = "mlp"  # a name from list_models()
    model_args: dict = field(default_factory=dict)  # overrides of the model's defaults, e.g. {"hidden": 128}
    # A run folder or pretrained:NAME whose weights training starts from (the same model, arguments and
    # normalisation); None: the seed's random weights.
    init: str | None = None
    epochs: Annotated[int, Range(1, MAX_EPOCHS)] = 5
    batch_size: Annotated[int, BATCH] = 64
    test_batch_size: Annotated[int, BATCH] = 1000
    lr: Annotated[float, Range(MIN_LR, MAX_LR)] = 1e-3  # learning rate (the peak of a one-cycle schedule)
    # The rest of the recipe (mnistlab.recipes; these defaults are `classic`, the seed's settings).
    recipe: str | None = "classic"  # the recipe the settings came from, recorded; None: set by hand
    optimizer: Annotated[str, Choice(OPTIMIZERS)] = "adam"  # adamw: decoupled weight decay; sgd: Nesterov 0.9
    schedule: Annotated[str, Choice(SCHEDULES)] = "constant"  # stepped after every batch
    weight_decay: Annotated[float, Range(0, MAX_WEIGHT_DECAY, high_open=True)] = 0.0  # weights only, not biases
    label_smoothing: Annotated[float, Range(0, 1, high_open=True)] = 0.0  # target share spread over all classes
    augment: Annotated[float, Range(0, MAX_REGULARISATION, high_open=True)] = 0.0  # affine (1: ±2 px, ±10°, ±10%)
    elastic: Annotated[float, Range(0, MAX_REGULARISATION, high_open=True)] = 0.0  # elastic warp, std in pixels
    # Weight of the outlier-exposure loss: marks that are not digits (`mnistlab.outliers`) are shown beside
    # each batch and the model is taught to be unsure of them, so that "not a digit" can be told; 0: none.
    outlier_exposure: Annotated[float, Range(0, MAX_OUTLIER_EXPOSURE)] = 0.0
    # Steps between test evaluations; None: after each epoch (and always at the end).
    eval_every: Annotated[int | None, Range(1, MAX_EVAL_EVERY)] = None
    # Stop once the test accuracy reaches this (0-1); None: run every epoch.
    stop_at: Annotated[float | None, Range(0, 1, low_open=True, meaning="an accuracy in (0, 1], e.g. 0.99")] = None
    compile: bool = False  # torch.compile the model for the training steps
    dataset: Annotated[str, Choice(tuple(list_datasets()))] = "mnist"
    mean: Annotated[float | None, Range(*MEAN_RANGE)] = None  # normalisation, 0-1 pixel scale; None: the dataset's
    std: Annotated[float | None, Range(*STD_RANGE)] = None  # None: the dataset's (MNIST: 0.3081)
    seed: Annotated[int, SEED] = 1  # model init and shuffling; the same seed on the same CPU gives the same weights
    device: Annotated[str, DEVICE] = "auto"
    data_dir: str | None = None  # the four IDX files of `dataset` in a folder; None: bundled (MNIST) or downloaded
    train_limit: Annotated[int | None, Range(1, MAX_TRAIN_LIMIT)] = None  # the first N training images only
    # The last N training images are held out of training and the confidence calibrated on them (at most a tenth
    # of the training set, none when that is under MIN_CALIBRATION_IMAGES: `calibration.held_out_count`); 0: none.
    calibration_size: Annotated[int, Range(0, MAX_CALIBRATION_SIZE)] = 5000
    out: str | None = None  # run folder; None: runs/<timestamp>-<model>
    overwrite: bool = False  # replace an existing run at `out` (whole: its old figures go too)
    progress: bool = True  # tqdm bar and one line per epoch

    def validate(self) -> None:
        """Raise `ValueError` naming the first field whose value is not what its declaration allows.

        The model's name and arguments, and the recipe's name, belong to registries above this layer:
        `mnistlab.training.check_config` checks them too (`mnistlab.train` calls it).
        """
        check_fields(self)

    def normalization(self) -> tuple[float, float]:
        """(mean, std): the ones set, else the dataset's."""
        info = get_dataset(self.dataset)
        return (info.mean if self.mean is None else self.mean), (info.std if self.std is None else self.std)


@dataclass(frozen=True)
class PredictOptions:
    """How `predict` treats each image (`mnistlab.prediction.predict`, `mnistlab predict`)."""

    top_k: Annotated[int, Range(1, NUM_CLASSES)] = 3  # how many of the likeliest classes each prediction lists
    invert: Annotated[str, Choice(INVERT_CHOICES)] = "auto"
    batch_size: Annotated[int, BATCH] = 256  # images preprocessed, then classified in one forward pass
    # "Not a digit": how readily a mark is refused (`mnistlab.rejection`); off: every mark gets a digit.
    reject: Annotated[str, Choice(STRICTNESS)] = "normal"

    def validate(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ExportConfig:
    """What `mnistlab export` writes."""

    format: Annotated[str, Choice(tuple(EXPORT_FORMATS))] = "onnx"
    input: Annotated[str, Choice(tuple(EXPORT_INPUTS))] = "uint8"  # ONNX only: uint8 0-255 or float 0-1
    out: str | None = None  # default: EXPORT_FORMATS[format] in the run folder

    def validate(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ServeOptions:
    """`mnistlab serve`'s numbers."""

    port: Annotated[int, Range(0, MAX_PORT)] = 8000  # 0: any free port
    max_upload_mb: Annotated[float, Range(0, MAX_UPLOAD_MB, low_open=True)] = 2.0  # largest request body, MiB
    workers: Annotated[int, Range(1, 64)] = 1  # server processes on the one port (`mnistlab serve --workers`)

    def validate(self) -> None:
        check_fields(self)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass(frozen=True)
class PlotOptions:
    """The figures' counts (`mnistlab.plots`, `mnistlab plot`)."""

    rows: Annotated[int, Range(1, MAX_GRID_CELLS)] = 5  # digits per class, or rows of a random grid
    cols: Annotated[int, Range(1, MAX_GRID_CELLS)] = 5  # columns of a random grid
    count: Annotated[int, Range(1, MAX_GRID_CELLS)] = 15  # mistakes shown
    seed: Annotated[int | None, SEED] = None  # a repeatable random sample; None: the first digits

    def validate(self) -> None:
        check_fields(self)


@dataclass
class FinetuneConfig:
    """Everything `mnistlab finetune` depends on; the defaults were chosen by `benchmarks/finetune.py`."""

    base: str  # a run folder, or pretrained:NAME: what `mnistlab.load_model` takes
    images: str  # the labelled folder DIR/0 … DIR/9
    out: str  # the run folder to write
    # Passes over the person's training images; None: enough for about FINETUNE_STEPS steps, whatever their number.
    epochs: Annotated[int | None, Range(1, MAX_EPOCHS)] = None
    lr: Annotated[float, Range(MIN_LR, MAX_LR)] = 3e-4  # Adam's, decayed to 0 along a cosine
    batch_size: Annotated[int, BATCH] = 8  # the person's images per step
    mix: Annotated[int, Range(0, MAX_MIX)] = 6  # images of the base's dataset per image of the person's, each step
    augment: Annotated[float, Range(0, MAX_REGULARISATION, high_open=True)] = 1.0  # warp of the person's images
    holdout: Annotated[float, Range(0, MAX_HOLDOUT)] = 0.3  # share of each digit's images held out to measure on
    seed: Annotated[int, Range(0, SEED_MAX)] = 1  # the split, the shuffling, the warps, the dataset images drawn
    device: Annotated[str, DEVICE] = "auto"
    data_dir: str | None = None  # the base's dataset files (default: bundled MNIST, or the download cache)
    test_batch_size: Annotated[int, BATCH] = 1000  # as `mnistlab evaluate`: it reproduces the accuracy exactly
    overwrite: bool = False
    progress: bool = True

    def validate(self) -> None:
        """Raise `ValueError` naming the first field whose value its declaration refuses."""
        check_fields(self)


# --- reading the declarations ------------------------------------------------------------------------------------


@functools.cache
def _fields(owner: type) -> dict[str, Field]:
    hints = typing.get_type_hints(owner, include_extras=True)
    return {f.name: field_for(hints[f.name]) for f in dataclasses.fields(owner)}


def rule(owner: type, name: str) -> Field:
    """The field type of setting `name` of the dataclass `owner`: its type, bounds or choices, None or not."""
    return _fields(owner)[name]


def bounds(owner: type, name: str) -> Range:
    """The `Range` of the numeric setting `name` of `owner` (None allowed or not)."""
    declared = rule(owner, name)
    return declared.inner if isinstance(declared, Nullable) else declared


def default(owner: type, name: str) -> object:
    """The declared default of field `name` of the dataclass `owner`."""
    found = next(f for f in dataclasses.fields(owner) if f.name == name)
    return found.default_factory() if found.default is dataclasses.MISSING else found.default


def check_value(owner: type, name: str, value: object) -> None:
    """Raise `ValueError` ("name: must be ..., got ...") unless `value` is what field `name` of `owner` allows."""
    try:
        rule(owner, name).check(value, name, python=True)
    except FieldError as e:
        raise ValueError(f"{e.field}: {e.problem}") from None


def check_fields(obj: object) -> None:
    """Raise `ValueError` naming the first field of the dataclass `obj` whose value its declaration refuses."""
    for name in _fields(type(obj)):
        check_value(type(obj), name, getattr(obj, name))


def json_schema(owner: type) -> dict:
    """The JSON schema of the dataclass `owner`'s settings: each field's type, bounds and default (for OpenAPI)."""
    properties = {}
    for f in dataclasses.fields(owner):
        schema = rule(owner, f.name).json_schema()
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            schema = {**schema, "default": default(owner, f.name)}
        properties[f.name] = schema
    required = [f.name for f in dataclasses.fields(owner)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return {"type": "object", "properties": properties, **({"required": required} if required else {})}
