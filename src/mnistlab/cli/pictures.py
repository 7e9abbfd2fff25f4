"""The figure commands of a run: `plot grid|curves|confusion|mistakes|calibration` and `report`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import PlotOptions
from ..limits import MAX_GRID_CELLS
from ..pretrained import outputs_folder
from ..records import RUNS_DIR
from ._args import add_data_flags, add_output_flags, add_run_argument, bounded
from ._output import existed, say, wrote

if TYPE_CHECKING:  # annotations only: matplotlib is imported when a command runs
    from matplotlib.figure import Figure

GRID_ROWS, GRID_COLS = PlotOptions.rows, PlotOptions.cols  # the declared defaults
# The pretrained weights are part of the installed package: what a command writes for them goes elsewhere.
FOR_PRETRAINED = "for pretrained:NAME, in runs/pretrained-NAME/"


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The `plot` and `report` commands."""
    plot = commands.add_parser("plot", help="draw a run's figures (grid, curves, confusion, mistakes, calibration)",
                               description="Draw one of a run's figures as a PNG.")
    figures = plot.add_subparsers(dest="figure", metavar="FIGURE", required=True)
    grid = figures.add_parser("grid", help="test digits with their predictions, wrong ones in red",
                              description="Test digits with their predictions, one column per digit 0-9 (or a "
                                          "random sample with --random): green where the model is right, red "
                                          "where it is wrong.")
    add_run_argument(grid)
    grid.add_argument("--rows", type=bounded(PlotOptions, "rows"), default=GRID_ROWS, metavar="N",
                      help=f"digits of each class, or rows with --random (default: {GRID_ROWS})")
    grid.add_argument("--random", action="store_true",
                      help="a sample of the whole test set in --rows × --cols, instead of a column per digit")
    grid.add_argument("--cols", type=bounded(PlotOptions, "cols"), metavar="N",
                      help=f"columns of the --random grid (default: {GRID_COLS})")
    grid.add_argument("--errors-only", action="store_true", help="show only wrong predictions")
    grid.add_argument("--seed", type=bounded(PlotOptions, "seed"), metavar="S",
                      help="draw a repeatable random sample with this seed (default: the first test digits)")
    add_data_flags(grid)
    add_output_flags(grid, "RUN/predictions.png, RUN/predictions-random.png with --random, -errors before .png "
                           f"with --errors-only; {FOR_PRETRAINED}")
    grid.set_defaults(handler=cmd_plot_grid)

    curves = figures.add_parser("curves", help="loss and accuracy per epoch of one run or several",
                                description="Loss and accuracy per epoch, train and test, from each run's "
                                            "metrics.json; several runs are overlaid to compare them.")
    curves.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or their metrics.json files)")
    add_output_flags(curves, f"RUN/curves.png for one run ({FOR_PRETRAINED}), runs/curves.png for several")
    curves.set_defaults(handler=cmd_plot_curves)

    confusion = figures.add_parser("confusion", help="the confusion matrix on the test set",
                                   description="The confusion matrix on the test set: counts in the cells, "
                                               "right answers blue and errors red, each on its own scale.")
    add_run_argument(confusion)
    confusion.add_argument("--images", metavar="DIR",
                           help="on your own images instead: DIR/0/ … DIR/9/ hold image files of each digit")
    add_data_flags(confusion)
    add_output_flags(confusion, "RUN/confusion.png, or RUN/confusion-images.png with --images; "
                                f"{FOR_PRETRAINED}")
    confusion.set_defaults(handler=cmd_plot_confusion)

    mistakes = figures.add_parser("mistakes", help="the most confident wrong predictions",
                                  description="The test digits the model got wrong with the highest "
                                              "confidence, each with its top-3 probabilities.")
    add_run_argument(mistakes)
    mistakes.add_argument("--count", type=bounded(PlotOptions, "count"), default=PlotOptions.count,
                          metavar="N", help=f"how many mistakes to show, at most {MAX_GRID_CELLS} "
                                            f"(default: {PlotOptions.count})")
    add_data_flags(mistakes)
    add_output_flags(mistakes, f"RUN/mistakes.png; {FOR_PRETRAINED}")
    mistakes.set_defaults(handler=cmd_plot_mistakes)

    calibration = figures.add_parser("calibration", help="the reliability diagram: accuracy at each confidence",
                                     description="The reliability diagram on the test set: how often the model is "
                                                 "right among its answers given at each confidence, calibrated and "
                                                 "(when the run was calibrated) at temperature 1, with the expected "
                                                 "calibration error of each.")
    add_run_argument(calibration)
    add_data_flags(calibration)
    add_output_flags(calibration, f"RUN/calibration.png; {FOR_PRETRAINED}")
    calibration.set_defaults(handler=cmd_plot_calibration)

    report = commands.add_parser("report", help="write a run's report.html with every figure",
                                 description="Write one self-contained report.html (figures embedded) with the "
                                             "run's config, metrics table and all its figures.")
    add_run_argument(report)
    report.add_argument("--out", metavar="FILE",
                        help=f"HTML file to write (default: RUN/report.html; {FOR_PRETRAINED})")
    add_data_flags(report)
    report.set_defaults(handler=cmd_report)


def check_output(args: argparse.Namespace, default_path: Path) -> None:
    """Before any work: check that --out (else `default_path`) can be written, unless the figure is --show'n."""
    from ..plots import check_figure_path

    if not getattr(args, "show", False):
        check_figure_path(args.out or default_path)


def write_or_show(fig: Figure, args: argparse.Namespace, default_path: Path) -> None:
    """Save `fig` to --out (else `default_path`, saying so if it replaces a file), or open it in a window with
    --show."""
    from ..plots import save_figure, show_figure

    if args.show:
        show_figure(fig)
    else:
        replaced = args.out is None and existed(default_path)
        wrote(save_figure(fig, args.out or default_path), replaced=replaced)


def say_running(run: str, figure: str) -> None:
    say(f"running {run} over its test set to draw {figure}...")


def run_folder(path: str) -> Path:
    """A run given as its folder or as one of its files → the folder."""
    try:
        return Path(path).parent if Path(path).is_file() else Path(path)
    except OSError:  # a name too long, say: reading the run reports it in one line
        return Path(path)


def cmd_plot_grid(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..data import NUM_CLASSES
    from ..plots import prediction_grid
    from ..report import predictions_for_run

    if args.cols is not None and not args.random:
        parser.error("--cols needs --random: the default grid has one column per digit")
    cols = (args.cols or GRID_COLS) if args.random else NUM_CLASSES
    if args.rows * cols > MAX_GRID_CELLS:
        parser.error(f"--rows × {'--cols' if args.random else 'the 10 digits'} must be at most {MAX_GRID_CELLS}, "
                     f"got {args.rows * cols}")
    name = f"predictions{'-random' if args.random else ''}{'-errors' if args.errors_only else ''}.png"
    default = outputs_folder(args.run) / name
    check_output(args, default)
    say_running(args.run, "the grid")
    predictions = predictions_for_run(args.run, args.data_dir, args.device, args.test_batch_size, args.dataset)
    fig = prediction_grid(predictions, rows=args.rows, cols=cols, mode="random" if args.random else "class",
                          errors_only=args.errors_only, seed=args.seed)
    write_or_show(fig, args, default)
    return 0


def cmd_plot_curves(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..model_loading import locate
    from ..plots import training_curves
    from ..records import CURVES_FILE, load_metrics

    names = [run_folder(path).resolve().name for path in args.runs]
    if len(set(names)) < len(names):  # two runs/x folders: tell them apart by the paths as given
        names = list(args.runs)
    default = outputs_folder(args.runs[0]) / CURVES_FILE if len(args.runs) == 1 else RUNS_DIR / CURVES_FILE
    check_output(args, default)
    fig = training_curves({name: load_metrics(locate(path))["epochs"]
                           for name, path in zip(names, args.runs, strict=True)})
    write_or_show(fig, args, default)
    return 0


def cmd_plot_confusion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..plots import confusion_matrix
    from ..report import predictions_for_run

    if args.images:
        from ..checkpoints import load_checkpoint
        from ..labelled import evaluate_folder

        default = outputs_folder(args.run) / "confusion-images.png"
        check_output(args, default)
        say(f"running {args.run} over your images in {args.images} to draw the confusion matrix...")
        checkpoint = load_checkpoint(args.run, device=args.device)
        score = evaluate_folder(checkpoint, args.images)
        predictions = dataclasses.replace(score.split_predictions(), classes=checkpoint.classes)
        write_or_show(confusion_matrix(predictions), args, default)
        return 0
    check_output(args, outputs_folder(args.run) / "confusion.png")
    say_running(args.run, "the confusion matrix")
    predictions = predictions_for_run(args.run, args.data_dir, args.device, args.test_batch_size, args.dataset)
    write_or_show(confusion_matrix(predictions), args, outputs_folder(args.run) / "confusion.png")
    return 0


def cmd_plot_mistakes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..plots import mistakes_gallery
    from ..report import predictions_for_run

    check_output(args, outputs_folder(args.run) / "mistakes.png")
    say_running(args.run, "its mistakes")
    predictions = predictions_for_run(args.run, args.data_dir, args.device, args.test_batch_size, args.dataset)
    write_or_show(mistakes_gallery(predictions, count=args.count), args, outputs_folder(args.run) / "mistakes.png")
    return 0


def cmd_plot_calibration(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..report import reliability_for_run

    default = outputs_folder(args.run) / "calibration.png"
    check_output(args, default)
    say_running(args.run, "the reliability diagram")
    fig = reliability_for_run(args.run, args.data_dir, args.device, args.test_batch_size, args.dataset)
    write_or_show(fig, args, default)
    return 0


def cmd_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..records import REPORT_FILE
    from ..report import write_report

    default = outputs_folder(args.run) / REPORT_FILE
    check_output(args, default)
    replaced = args.out is None and existed(default)
    say_running(args.run, "the report's figures")
    path = write_report(args.run, data_dir=args.data_dir, device=args.device,
                        batch_size=args.test_batch_size, out=args.out, dataset=args.dataset)
    wrote(path, replaced=replaced)
    return 0


