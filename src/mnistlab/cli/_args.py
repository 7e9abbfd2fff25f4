"""Flag types and flags shared by several commands, read from the settings' declarations (`mnistlab.config`):
a numeric flag's type checks the field's `Range`, and its help quotes the same bounds. Nothing here imports torch."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from ..config import DEVICE, INVERT_CHOICES, PredictOptions, Range, TrainConfig, bounds, default
from ..dataset_info import list_datasets
from ..records import STRICTNESS


def _number(text: str, kind: type, expected: str):
    try:
        value = kind(text)
    except ValueError:  # also a whole number of more than 4,300 digits
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise argparse.ArgumentTypeError(f"expected {expected}, got {shown!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def number_in(allowed: Range, name: str, integer: bool = True) -> Callable[[str], int | float]:
    """A flag type: a whole number (or, not `integer`, a finite number) within `allowed`; it carries the range
    as `.bounds`, so that a test can check that every numeric flag has one."""
    def parse(text: str) -> int | float:
        value = _number(text, int if integer else float, "a whole number" if integer else "a number")
        if not allowed.contains(value):
            raise argparse.ArgumentTypeError(f"must be {allowed.describe('' if integer else 'a number')}, "
                                             f"got {value if integer else text}")
        return value

    parse.bounds = allowed
    parse.__name__ = name
    return parse


def bounded(owner: type, name: str) -> Callable[[str], int | float]:
    """The flag type of field `name` of the dataclass `owner`, from its declaration (`mnistlab.config`)."""
    declared = bounds(owner, name)
    return number_in(declared, name, integer=declared.integer)


def span(owner: type, name: str) -> str:
    """The declared range of field `name` for a help text: "1 to 1,000", "> 0 and ≤ 1024"."""
    return bounds(owner, name).describe().removeprefix("from ")


def accuracy(text: str) -> float:
    """A test accuracy as a fraction (0.99) or a percentage (99%), within `TrainConfig.stop_at`'s bounds."""
    percent = text.strip().endswith("%")
    value = _number(text.strip().removesuffix("%"), float, "a number") / (100 if percent else 1)
    if not accuracy.bounds.contains(value):
        raise argparse.ArgumentTypeError(f"expected an accuracy in (0, 1] or (0%, 100%], e.g. 0.99 or 99%, got {text}")
    return value


accuracy.bounds = bounds(TrainConfig, "stop_at")


def output_path(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def device_name(text: str) -> str:
    if not DEVICE.contains(text):
        raise argparse.ArgumentTypeError(f"expected one of {DEVICE.describe()}, got {text!r}")
    return text


def add_data_dir_flag(parser: argparse.ArgumentParser, run_dataset: bool = False) -> None:
    """--dataset and --data-dir. `run_dataset`: the command reads a run, whose own dataset is the default."""
    names, fallback = ", ".join(list_datasets()), default(TrainConfig, "dataset")
    parser.add_argument("--dataset", choices=list_datasets(),
                        default=None if run_dataset else fallback, metavar="NAME",
                        help=(f"{names}; must be the run's own (default: the dataset the run was trained on)"
                              if run_dataset else f"{names}; fashion-mnist is read from Debian's dataset-fashion-mnist "
                              "when installed; the others but mnist are downloaded on first use into "
                              f"$MNISTLAB_DATA_DIR, else your cache folder (default: {fallback})"))
    parser.add_argument("--data-dir", metavar="DIR",
                        help="read the dataset's four IDX files, raw or .gz, from DIR as they are, no download "
                             "(default: mnist's bundled copy, a Debian package's folder, or the download cache)")


def add_data_flags(parser: argparse.ArgumentParser, run_dataset: bool = True) -> None:
    add_data_dir_flag(parser, run_dataset)
    add_device_flag(parser, "auto = CUDA, then MPS, then CPU")
    parser.add_argument("--test-batch-size", type=bounded(TrainConfig, "test_batch_size"),
                        default=default(TrainConfig, "test_batch_size"), metavar="N",
                        help=f"batch size for evaluation, {span(TrainConfig, 'test_batch_size')} "
                             f"(default: {default(TrainConfig, 'test_batch_size')})")


def add_device_flag(parser: argparse.ArgumentParser, note: str) -> None:
    parser.add_argument("--device", type=device_name, default=default(TrainConfig, "device"), metavar="NAME",
                        help=f"auto, cpu, cuda, cuda:N or mps; {note} (default: {default(TrainConfig, 'device')})")


def add_output_flags(parser: argparse.ArgumentParser, default_file: str) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="FILE", help=f"PNG file to write (default: {default_file})")
    where.add_argument("--show", action="store_true", help="open the figure in a window instead (needs a display)")


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN",
                        help="a run folder (with its checkpoint and metrics.json), or pretrained:NAME "
                             "(`mnistlab models`)")




def add_model_and_images(parser: argparse.ArgumentParser, images_help: str) -> None:
    """The MODEL and IMAGE... arguments of the commands that read people's pictures (predict, read)."""
    parser.add_argument("checkpoint", metavar="MODEL",
                        help="a run folder (or its config.json or model.safetensors), pretrained:NAME (pretrained "
                             "weights, see `mnistlab models`), or an exported .onnx file")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help=images_help)


def add_invert_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--invert", choices=INVERT_CHOICES, default=default(PredictOptions, "invert"),
                        help="dark ink on light paper: detect it (auto), always invert (yes) or never (no) "
                             f"(default: {default(PredictOptions, 'invert')})")


def add_reject_flag(parser: argparse.ArgumentParser) -> None:
    """`--reject off|normal|strict`: how readily a mark is answered "not a digit" (`mnistlab.rejection`)."""
    parser.add_argument("--reject", choices=STRICTNESS,
                        default=default(PredictOptions, "reject"),
                        help="answer a mark that is not a digit (a letter, a symbol, a scribble, two digits) as "
                             "\"not a digit\": never (off), by the model's rule (normal) or more readily (strict) "
                             f"(default: {default(PredictOptions, 'reject')})")
