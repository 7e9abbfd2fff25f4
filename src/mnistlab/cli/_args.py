"""Flag types and flags shared by several commands. Nothing here imports torch."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from ..datasets import list_datasets
from ..limits import MAX_BATCH_SIZE

# Mirrors of the library defaults (training.TrainConfig), kept here so --help needs no torch;
# tests/test_cli.py checks that the two agree.
DEFAULTS = {"model": "mlp", "epochs": 5, "batch_size": 64, "test_batch_size": 1000, "lr": 1e-3,
            "dataset": "mnist", "mean": None, "std": None, "seed": 1, "device": "auto"}
DEVICES = ("auto", "cpu", "cuda", "mps")


def _number(text: str, kind: type, expected: str):
    try:
        value = kind(text)
    except ValueError:  # also a whole number of more than 4,300 digits
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise argparse.ArgumentTypeError(f"expected {expected}, got {shown!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float, "a number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def finite_float(text: str) -> float:
    return _number(text, float, "a number")


def int_in(low: int, high: int) -> Callable[[str], int]:
    """A flag type: a whole number from `low` to `high`."""
    def parse(text: str) -> int:
        value = _number(text, int, "a whole number")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high:,}, got {value}")
        return value
    return parse


def float_in(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """A flag type: a finite number from `low` (excluded when `low_open`) to `high`."""
    def parse(text: str) -> float:
        value = _number(text, float, "a number")
        if not (low < value if low_open else low <= value) or value > high:
            bound = f"> {low:g} and ≤ {high:g}" if low_open else f"from {low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text}")
        return value
    return parse


def output_path(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def device_name(text: str) -> str:
    if text not in DEVICES and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DEVICES)} or cuda:N, got {text!r}")
    return text


def add_data_dir_flag(parser: argparse.ArgumentParser, run_dataset: bool = False) -> None:
    """--dataset and --data-dir. `run_dataset`: the command reads a run, whose own dataset is the default."""
    names = ", ".join(list_datasets())
    parser.add_argument("--dataset", choices=list_datasets(), default=None if run_dataset else DEFAULTS["dataset"],
                        metavar="NAME",
                        help=(f"{names}; must be the run's own (default: the dataset the run was trained on)"
                              if run_dataset else f"{names}; all but mnist are downloaded on first use into "
                              f"$MNISTLAB_DATA_DIR, else your cache folder (default: {DEFAULTS['dataset']})"))
    parser.add_argument("--data-dir", metavar="DIR",
                        help="read the dataset's four IDX files, raw or .gz, from DIR as they are, no download "
                             "(default: mnist's bundled copy, or the download cache)")


def add_data_flags(parser: argparse.ArgumentParser, run_dataset: bool = True) -> None:
    add_data_dir_flag(parser, run_dataset)
    parser.add_argument("--device", type=device_name, default=DEFAULTS["device"], metavar="NAME",
                        help="auto, cpu, cuda, cuda:N or mps; auto = CUDA, then MPS, then CPU "
                             f"(default: {DEFAULTS['device']})")
    parser.add_argument("--test-batch-size", type=int_in(1, MAX_BATCH_SIZE), default=DEFAULTS["test_batch_size"],
                        metavar="N", help=f"batch size for evaluation, at most {MAX_BATCH_SIZE:,} "
                                          f"(default: {DEFAULTS['test_batch_size']})")


def add_output_flags(parser: argparse.ArgumentParser, default: str) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="FILE", help=f"PNG file to write (default: {default})")
    where.add_argument("--show", action="store_true", help="open the figure in a window instead (needs a display)")


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN",
                        help="a run folder (with its checkpoint and metrics.json), or pretrained:NAME "
                             "(`mnistlab models`)")


