"""`mnistlab show`: one digit drawn with each pixel's value, from a dataset or an image file."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import INVERT_CHOICES, PredictOptions, default
from ..records import RUNS_DIR
from ._args import add_data_dir_flag, add_output_flags
from .pictures import check_output, write_or_show

# show reads no run, so its pictures get a folder of their own among the runs: not the current folder's clutter.
SHOW_DIR = RUNS_DIR / "show"

if TYPE_CHECKING:  # annotations only: matplotlib is imported when a command runs
    from matplotlib.figure import Figure


def add_commands(commands: argparse._SubParsersAction) -> None:
    show = commands.add_parser("show", help="draw one digit with each pixel's value",
                               description="Draw a digit as its 28×28 grid with each pixel's value written in its "
                                           "cell: a dataset digit by index, or an image file after the "
                                           "preprocessing that prediction uses (what the model sees).")
    show.add_argument("digit", metavar="INDEX_OR_IMAGE", help="index of a digit in --split, or an image file")
    show.add_argument("--split", choices=("train", "test"), default="train", help="dataset split (default: train)")
    show.add_argument("--normalized", action="store_true",
                      help="write the normalised model input instead of 0-255")
    invert = default(PredictOptions, "invert")
    show.add_argument("--invert", choices=INVERT_CHOICES, default=invert,
                      help=f"image files: invert dark ink on light paper (default: {invert})")
    show.add_argument("--augmented", action="store_true",
                      help="draw the digit with 23 augmented copies, as the cnn's best recipe warps it in training")
    add_data_dir_flag(show)
    add_output_flags(show, f"{SHOW_DIR}/SPLIT-INDEX.png, or {SHOW_DIR}/IMAGE-pixels.png")
    show.set_defaults(handler=cmd_show)


def dataset_index(text: str) -> int | None:
    """INDEX_OR_IMAGE → the index it names (ASCII digits, maybe signed; not range-checked), or None for a file.

    Numbers in other scripts ("²", "٣") are refused rather than taken for names of files that do not exist.
    """
    from ..plots import PlotError

    if re.fullmatch(r"[+-]?[0-9]+", text):
        # Past 12 digits it is out of range all the same (and int() refuses 4,300 digits or more): -1 says so.
        return int(text) if len(text.lstrip("+-").lstrip("0")) <= 12 else -1
    if not os.path.lexists(text) and text.strip().lstrip("+-").isnumeric():
        raise PlotError(f"{text!r} is not an index: write it with the digits 0-9")
    return None


def cmd_show(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..data import dataset_dir, load_split
    from ..dataset_info import get_dataset
    from ..plots import PlotError, pixel_view

    if args.augmented and args.normalized:
        parser.error("--augmented draws pixels on the 0-255 scale; leave out --normalized")
    draw = augmented_view if args.augmented else pixel_view
    index = dataset_index(args.digit)
    default = SHOW_DIR / (f"{args.split}-{index}.png" if index is not None else f"{Path(args.digit).stem}-pixels.png")
    if args.augmented:
        default = default.with_name(f"{default.stem}-augmented.png")
    check_output(args, default)
    info = get_dataset(args.dataset)
    if index is not None:
        split, _ = load_split(dataset_dir(info, args.data_dir)[0], args.split)
        if not 0 <= index < len(split):
            shown = args.digit if len(args.digit) <= 20 else f"{args.digit[:20]}..."
            raise PlotError(f"index {shown} is out of range: the {args.split} split has {len(split):,} digits "
                            f"(0-{len(split) - 1})")
        label = int(split.labels[index])
        noun, name = ("digit", "") if info.bundled else ("image", f" ({info.classes[label]})")
        fig = draw(split.images[index], label, normalized=args.normalized, mean=info.mean, std=info.std,
                   title=f"{info.title} {args.split} {noun} #{index}: label {label}{name}")
    else:
        from ..decoding import load_image
        from ..preprocessing import preprocess

        pixels = preprocess(load_image(args.digit), invert=args.invert, layout=info.layout)
        fig = draw(pixels, normalized=args.normalized, mean=info.mean, std=info.std,
                   title=f"{Path(args.digit).name} as the model sees it")
    write_or_show(fig, args, default)
    return 0


def augmented_view(image, label: int | None = None, *, normalized: bool = False, mean: float = 0.0, std: float = 1.0,
                   title: str | None = None) -> Figure:
    """`show --augmented`, in place of `pixel_view`: the digit and copies warped as the cnn's best recipe warps them."""
    from ..plots import augmented_grid
    from ..recipes import get_recipe

    recipe = get_recipe("best", "cnn")
    return augmented_grid(image, strength=recipe.augment, elastic=recipe.elastic,
                          title=f"{title or 'Your digit'}, augmented as training does (cnn, best recipe)")
