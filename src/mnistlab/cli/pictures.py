"""The figure commands: `show`, `plot grid|curves|confusion|mistakes` and `report`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ._args import add_data_dir_flag, add_data_flags, add_output_flags, add_run_argument, positive_int

if TYPE_CHECKING:  # annotations only: matplotlib is imported when a command runs
    from matplotlib.figure import Figure

MAX_GRID_CELLS = 400  # a 20×20 grid is already a 3,000-pixel figure
GRID_ROWS, GRID_COLS = 5, 5  # plot grid: digits per class, and the columns of a --random grid
# The pretrained weights are part of the installed package: what a command writes for them goes elsewhere.
IN_CURRENT_FOLDER = "for pretrained:NAME, that file name in the current folder"


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The `show`, `plot` and `report` commands."""
    show = commands.add_parser("show", help="draw one digit with each pixel's value",
                               description="Draw a digit as its 28×28 grid with each pixel's value written in its "
                                           "cell: a dataset digit by index, or an image file after the "
                                           "preprocessing that prediction uses (what the model sees).")
    show.add_argument("digit", metavar="INDEX_OR_IMAGE", help="index of a digit in --split, or an image file")
    show.add_argument("--split", choices=("train", "test"), default="train", help="dataset split (default: train)")
    show.add_argument("--normalized", action="store_true",
                      help="write the normalised model input instead of 0-255")
    show.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                      help="image files: invert dark ink on light paper (default: auto)")
    show.add_argument("--augmented", action="store_true",
                      help="draw the digit with 23 augmented copies, as the cnn's best recipe warps it in training")
    add_data_dir_flag(show)
    add_output_flags(show, "SPLIT-INDEX.png, or IMAGE-pixels.png, in the current folder")
    show.set_defaults(handler=cmd_show)

    plot = commands.add_parser("plot", help="draw a run's figures (grid, curves, confusion, mistakes)",
                               description="Draw one of a run's figures as a PNG.")
    figures = plot.add_subparsers(dest="figure", metavar="FIGURE", required=True)
    grid = figures.add_parser("grid", help="test digits with their predictions, wrong ones in red",
                              description="Test digits with their predictions, one column per digit 0-9 (or a "
                                          "random sample with --random): green where the model is right, red "
                                          "where it is wrong.")
    add_run_argument(grid)
    grid.add_argument("--rows", type=positive_int, default=GRID_ROWS, metavar="N",
                      help=f"digits of each class, or rows with --random (default: {GRID_ROWS})")
    grid.add_argument("--random", action="store_true",
                      help="a sample of the whole test set in --rows × --cols, instead of a column per digit")
    grid.add_argument("--cols", type=positive_int, metavar="N",
                      help=f"columns of the --random grid (default: {GRID_COLS})")
    grid.add_argument("--errors-only", action="store_true", help="show only wrong predictions")
    grid.add_argument("--seed", type=int, metavar="S",
                      help="draw a repeatable random sample with this seed (default: the first test digits)")
    add_data_flags(grid)
    add_output_flags(grid, "RUN/predictions.png, or RUN/predictions-errors.png with --errors-only; "
                           f"{IN_CURRENT_FOLDER}")
    grid.set_defaults(handler=cmd_plot_grid)

    curves = figures.add_parser("curves", help="loss and accuracy per epoch of one run or several",
                                description="Loss and accuracy per epoch, train and test, from each run's "
                                            "metrics.json; several runs are overlaid to compare them.")
    curves.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or their metrics.json files)")
    add_output_flags(curves, "RUN/curves.png for one run, curves.png in the current folder for several "
                             "or for pretrained weights")
    curves.set_defaults(handler=cmd_plot_curves)

    confusion = figures.add_parser("confusion", help="the confusion matrix on the test set",
                                   description="The confusion matrix on the test set: counts in the cells, "
                                               "right answers blue and errors red, each on its own scale.")
    add_run_argument(confusion)
    confusion.add_argument("--images", metavar="DIR",
                           help="on your own images instead: DIR/0/ … DIR/9/ hold image files of each digit")
    add_data_flags(confusion)
    add_output_flags(confusion, "RUN/confusion.png, or RUN/confusion-images.png with --images; "
                                f"{IN_CURRENT_FOLDER}")
    confusion.set_defaults(handler=cmd_plot_confusion)

    mistakes = figures.add_parser("mistakes", help="the most confident wrong predictions",
                                  description="The test digits the model got wrong with the highest "
                                              "confidence, each with its top-3 probabilities.")
    add_run_argument(mistakes)
    mistakes.add_argument("--count", type=positive_int, default=15, metavar="N",
                          help="how many mistakes to show (default: 15)")
    add_data_flags(mistakes)
    add_output_flags(mistakes, f"RUN/mistakes.png; {IN_CURRENT_FOLDER}")
    mistakes.set_defaults(handler=cmd_plot_mistakes)

    report = commands.add_parser("report", help="write a run's report.html with every figure",
                                 description="Write one self-contained report.html (figures embedded) with the "
                                             "run's config, metrics table and all its figures.")
    add_run_argument(report)
    report.add_argument("--out", metavar="FILE",
                        help=f"HTML file to write (default: RUN/report.html; {IN_CURRENT_FOLDER})")
    add_data_flags(report)
    report.set_defaults(handler=cmd_report)


def check_output(args: argparse.Namespace, default: Path) -> None:
    """Before any work: check that --out (else `default`) can be written, unless the figure is --show'n."""
    from .._io import check_output_file

    if not getattr(args, "show", False):
        check_output_file(args.out or default)


def write_or_show(fig: Figure, args: argparse.Namespace, default: Path) -> None:
    """Save `fig` to --out (else `default`), or open it in a window with --show."""
    from ..plots import save_figure, show_figure

    if args.show:
        show_figure(fig)
    else:
        print(f"wrote {save_figure(fig, args.out or default)}")


def run_folder(path: str) -> Path:
    """A run given as its folder or as one of its files → the folder."""
    try:
        return Path(path).parent if Path(path).is_file() else Path(path)
    except OSError:  # a name too long, say: reading the run reports it in one line
        return Path(path)


def outputs_folder(run: str) -> Path:
    """Where a figure of `run` goes by default: the run folder; the current folder for `pretrained:NAME`."""
    from ..pretrained import outputs_folder

    return outputs_folder(run)


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
    from ..datasets import get_dataset
    from ..plots import PlotError, pixel_view

    if args.augmented and args.normalized:
        parser.error("--augmented draws pixels on the 0-255 scale; leave out --normalized")
    draw = augmented_view if args.augmented else pixel_view
    index = dataset_index(args.digit)
    default = Path(f"{args.split}-{index}.png" if index is not None else f"{Path(args.digit).stem}-pixels.png")
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
        from ..preprocessing import load_image, preprocess

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


def cmd_plot_grid(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..data import NUM_CLASSES
    from ..plots import prediction_grid
    from ..report import predictions_for_run

    if args.cols is not None and not args.random:
        parser.error("--cols needs --random: the default grid has one column per digit")
    if args.seed is not None and not 0 <= args.seed < 2**64:
        parser.error(f"argument --seed: must be 0 to 2**64-1, got {args.seed}")
    cols = (args.cols or GRID_COLS) if args.random else NUM_CLASSES
    if args.rows * cols > MAX_GRID_CELLS:
        parser.error(f"--rows × {'--cols' if args.random else 'the 10 digits'} must be at most {MAX_GRID_CELLS}, "
                     f"got {args.rows * cols}")
    default = outputs_folder(args.run) / ("predictions-errors.png" if args.errors_only else "predictions.png")
    check_output(args, default)
    predictions = predictions_for_run(args.run, args.data_dir, args.device, args.test_batch_size, args.dataset)
    fig = prediction_grid(predictions, rows=args.rows, cols=cols, mode="random" if args.random else "class",
                          errors_only=args.errors_only, seed=args.seed)
    write_or_show(fig, args, default)
    return 0


def cmd_plot_curves(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..plots import training_curves
    from ..report import CURVES_FILE, load_metrics

    names = [run_folder(path).resolve().name for path in args.runs]
    if len(set(names)) < len(names):  # two runs/x folders: tell them apart by the paths as given
        names = list(args.runs)
    default = outputs_folder(args.runs[0]) / CURVES_FILE if len(args.runs) == 1 else Path(CURVES_FILE)
    check_output(args, default)
    fig = training_curves({name: load_metrics(path)["epochs"] for name, path in zip(names, args.runs, strict=True)})
    write_or_show(fig, args, default)
    return 0


def cmd_plot_confusion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..plots import confusion_matrix
    from ..report import predictions_for_run

    if args.images:
        from ..checkpoints import load_checkpoint
        from ..labelled import score_labelled

        default = outputs_folder(args.run) / "confusion-images.png"
        check_output(args, default)
        checkpoint = load_checkpoint(args.run, device=args.device)
        score = score_labelled(checkpoint, args.images)
        predictions = dataclasses.replace(score.split_predictions(), classes=checkpoint.classes)
        write_or_show(confusion_matrix(predictions), args, default)
        return 0
    check_output(args, outputs_folder(args.run) / "confusion.png")
    predictions = predictions_for_run(args.run, args.data_dir, args.device, args.test_batch_size, args.dataset)
    write_or_show(confusion_matrix(predictions), args, outputs_folder(args.run) / "confusion.png")
    return 0


def cmd_plot_mistakes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..plots import mistakes_gallery
    from ..report import predictions_for_run

    if args.count > MAX_GRID_CELLS:
        parser.error(f"--count must be at most {MAX_GRID_CELLS}, got {args.count}")
    check_output(args, outputs_folder(args.run) / "mistakes.png")
    predictions = predictions_for_run(args.run, args.data_dir, args.device, args.test_batch_size, args.dataset)
    write_or_show(mistakes_gallery(predictions, count=args.count), args, outputs_folder(args.run) / "mistakes.png")
    return 0


def cmd_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..report import REPORT_FILE, write_report

    check_output(args, outputs_folder(args.run) / REPORT_FILE)
    path = write_report(args.run, data_dir=args.data_dir, device=args.device,
                        batch_size=args.test_batch_size, out=args.out, dataset=args.dataset)
    print(f"wrote {path}")
    return 0


