"""The `mnistlab` command: a thin layer that parses flags and calls the library.

torch is imported only inside the command handlers, so `mnistlab --help` answers at once.
Bad flags exit with code 2 (argparse's convention); bad files and devices with code 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import MnistlabError

if TYPE_CHECKING:  # annotations only: the command line imports matplotlib and torch when a command runs
    from matplotlib.figure import Figure

    from .training import Run

# Mirrors of the library defaults (training.TrainConfig), kept here so --help needs no torch;
# tests/test_cli.py checks that the two agree.
DEFAULTS = {"model": "mlp", "epochs": 5, "batch_size": 64, "test_batch_size": 1000, "lr": 1e-3,
            "mean": 0.1307, "std": 0.3081, "seed": 1, "device": "auto"}
DEVICES = ("auto", "cpu", "cuda", "mps")


def _number(text: str, kind: type, expected: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
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


def device_name(text: str) -> str:
    if text not in DEVICES and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DEVICES)} or cuda:N, got {text!r}")
    return text


def add_data_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder with the four MNIST IDX files, raw or .gz "
                             "(default: $MNISTLAB_DATA_DIR, else the copy bundled with mnistlab)")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    add_data_dir_flag(parser)
    parser.add_argument("--device", type=device_name, default=DEFAULTS["device"], metavar="NAME",
                        help="auto, cpu, cuda, cuda:N or mps; auto = CUDA, then MPS, then CPU "
                             f"(default: {DEFAULTS['device']})")
    parser.add_argument("--test-batch-size", type=positive_int, default=DEFAULTS["test_batch_size"],
                        metavar="N", help=f"batch size for evaluation (default: {DEFAULTS['test_batch_size']})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnistlab", description="Handwritten-digit recognition with PyTorch.")
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train a model and save its run folder",
                                description="Train a model on MNIST; write the checkpoint and metrics.json.")
    train.add_argument("--model", default=DEFAULTS["model"], metavar="NAME",
                       help=f"model name, see `mnistlab models` (default: {DEFAULTS['model']})")
    train.add_argument("--hidden", type=positive_int, metavar="N",
                       help="hidden units of the mlp (default: 128)")
    train.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"], metavar="N",
                       help=f"number of epochs to train (default: {DEFAULTS['epochs']})")
    train.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"], metavar="N",
                       help=f"input batch size for training (default: {DEFAULTS['batch_size']})")
    train.add_argument("--lr", type=positive_float, default=DEFAULTS["lr"], metavar="LR",
                       help=f"Adam learning rate (default: {DEFAULTS['lr']})")
    train.add_argument("--mean", type=finite_float, default=DEFAULTS["mean"], metavar="M",
                       help=f"normalisation mean, 0-1 pixel scale (default: {DEFAULTS['mean']})")
    train.add_argument("--std", type=positive_float, default=DEFAULTS["std"], metavar="S",
                       help=f"normalisation standard deviation (default: {DEFAULTS['std']})")
    train.add_argument("--seed", type=int, default=DEFAULTS["seed"], metavar="S",
                       help=f"random seed for init and shuffling (default: {DEFAULTS['seed']})")
    train.add_argument("--train-limit", type=positive_int, metavar="N",
                       help="train on the first N training images only (default: all 60,000)")
    train.add_argument("--out", metavar="DIR", help="run folder to write (default: runs/<timestamp>-<model>)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    train.add_argument("--no-report", action="store_true",
                       help="skip report.html (curves.png is written all the same)")
    add_data_flags(train)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint on the test set",
                                   description="Rebuild a model from its checkpoint alone and evaluate it "
                                               "on the MNIST test set; compare with the recorded accuracy.")
    evaluate.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT",
                          help="a run folder, or its config.json or model.safetensors")
    add_data_flags(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    models = commands.add_parser("models", help="list the available models")
    models.set_defaults(handler=cmd_models)
    add_picture_commands(commands)
    add_predict_command(commands)
    return parser


def cmd_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .training import TrainConfig, train

    model_args = {} if args.hidden is None else {"hidden": args.hidden}
    config = TrainConfig(model=args.model, model_args=model_args, epochs=args.epochs,
                         batch_size=args.batch_size, test_batch_size=args.test_batch_size, lr=args.lr,
                         mean=args.mean, std=args.std, seed=args.seed, device=args.device,
                         data_dir=args.data_dir, train_limit=args.train_limit, out=args.out,
                         progress=not args.no_progress)
    try:
        config.validate()
    except ValueError as e:
        parser.error(str(e))
    run = train(config)
    print(f"saved {run.dir}  (test accuracy {run.final.test_acc:.2%}, {run.wall_seconds:.1f}s on {run.device})")
    try:
        write_run_pictures(run, report=not args.no_report)
    except KeyboardInterrupt:
        print(f"\nmnistlab: interrupted; {run.dir} is saved, its pictures are not", file=sys.stderr)
        return 130
    return 0


def cmd_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .checkpoints import load_checkpoint
    from .data import load_split, resolve_data_dir
    from .training import evaluate

    checkpoint = load_checkpoint(args.checkpoint, device=args.device)
    test, digests = load_split(resolve_data_dir(args.data_dir), "test")
    loss, acc = evaluate(checkpoint.model, test.to(checkpoint.device), checkpoint.mean, checkpoint.std,
                         args.test_batch_size)
    n_params = sum(p.numel() for p in checkpoint.model.parameters())
    print(f"{checkpoint.path}: {checkpoint.model_name} ({n_params:,} parameters) on {checkpoint.device}")
    print(f"test loss {loss:.4f}  test accuracy {acc:.2%} ({round(acc * len(test))}/{len(test)})")
    recorded = checkpoint.metrics.get("test_acc")
    if recorded is not None:
        verdict = "reproduced exactly" if recorded == acc else f"differs by {acc - recorded:+.2%}"
        print(f"recorded test accuracy {recorded:.2%}: {verdict}")
        recorded_digests = checkpoint.config.get("dataset", {}).get("sha256", {})
        if any(recorded_digests.get(name) != digest for name, digest in digests.items()):
            print("note: the test files differ from the ones this checkpoint was evaluated on")
    return 0


def cmd_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .models import list_models, model_defaults

    for name in list_models():
        print(f"{name}  {model_defaults(name)}")
    return 0


# --- pictures: show, plot grid|curves|confusion|mistakes, report ---------------------------------

MAX_GRID_CELLS = 400  # a 20×20 grid is already a 3,000-pixel figure


def add_output_flags(parser: argparse.ArgumentParser, default: str) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="FILE", help=f"PNG file to write (default: {default})")
    where.add_argument("--show", action="store_true", help="open the figure in a window instead (needs a display)")


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run folder (with its checkpoint and metrics.json)")


def add_picture_commands(commands: argparse._SubParsersAction) -> None:
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
    add_data_dir_flag(show)
    add_output_flags(show, "SPLIT-INDEX.png, or IMAGE-pixels.png, in the current folder")
    show.set_defaults(handler=cmd_show)

    plot = commands.add_parser("plot", help="draw a run's figures (grid, curves, confusion, mistakes)",
                               description="Draw one of a run's figures as a PNG.")
    figures = plot.add_subparsers(dest="figure", metavar="FIGURE", required=True)
    grid = figures.add_parser("grid", help="test digits with their predictions, wrong ones in red",
                              description="A grid of test digits with 'pred P / true T' under each: "
                                          "green where the model is right, red where it is wrong.")
    add_run_argument(grid)
    grid.add_argument("--rows", type=positive_int, default=5, metavar="N", help="rows of digits (default: 5)")
    grid.add_argument("--cols", type=positive_int, default=5, metavar="N", help="columns of digits (default: 5)")
    grid.add_argument("--errors-only", action="store_true", help="show only wrong predictions")
    grid.add_argument("--seed", type=int, metavar="S",
                      help="draw a repeatable random sample with this seed (default: the first test digits)")
    add_data_flags(grid)
    add_output_flags(grid, "RUN/predictions.png, or RUN/predictions-errors.png with --errors-only")
    grid.set_defaults(handler=cmd_plot_grid)

    curves = figures.add_parser("curves", help="loss and accuracy per epoch of one run or several",
                                description="Loss and accuracy per epoch, train and test, from each run's "
                                            "metrics.json; several runs are overlaid to compare them.")
    curves.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or their metrics.json files)")
    add_output_flags(curves, "RUN/curves.png for one run, curves.png in the current folder for several")
    curves.set_defaults(handler=cmd_plot_curves)

    confusion = figures.add_parser("confusion", help="the confusion matrix on the test set",
                                   description="The confusion matrix on the test set: counts in the cells, "
                                               "colour = share of each true digit's row.")
    add_run_argument(confusion)
    add_data_flags(confusion)
    add_output_flags(confusion, "RUN/confusion.png")
    confusion.set_defaults(handler=cmd_plot_confusion)

    mistakes = figures.add_parser("mistakes", help="the most confident wrong predictions",
                                  description="The test digits the model got wrong with the highest "
                                              "confidence, each with its top-3 probabilities.")
    add_run_argument(mistakes)
    mistakes.add_argument("--count", type=positive_int, default=15, metavar="N",
                          help="how many mistakes to show (default: 15)")
    add_data_flags(mistakes)
    add_output_flags(mistakes, "RUN/mistakes.png")
    mistakes.set_defaults(handler=cmd_plot_mistakes)

    report = commands.add_parser("report", help="write a run's report.html with every figure",
                                 description="Write one self-contained report.html (figures embedded) with the "
                                             "run's config, metrics table and all its figures.")
    add_run_argument(report)
    report.add_argument("--out", metavar="FILE", help="HTML file to write (default: RUN/report.html)")
    add_data_flags(report)
    report.set_defaults(handler=cmd_report)


def write_or_show(fig: Figure, args: argparse.Namespace, default: Path) -> None:
    """Save `fig` to --out (else `default`), or open it in a window with --show."""
    from .plots import save_figure, show_figure

    if args.show:
        show_figure(fig)
    else:
        print(f"wrote {save_figure(fig, args.out or default)}")


def run_folder(path: str) -> Path:
    """A run given as its folder or as one of its files → the folder."""
    return Path(path).parent if Path(path).is_file() else Path(path)


def write_run_pictures(run: Run, report: bool = True) -> None:
    """After `mnistlab train`: curves.png, and report.html from the in-memory model and test split."""
    from .plots import compute_predictions, save_figure, training_curves
    from .report import CURVES_FILE, write_report

    print(f"wrote {save_figure(training_curves(run.history), run.dir / CURVES_FILE)}")
    if report:
        predictions = compute_predictions(run.model, run.test_split, run.config.mean, run.config.std,
                                          run.config.test_batch_size)
        print(f"wrote {write_report(run.dir, predictions)}")


def cmd_show(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .data import load_split, resolve_data_dir
    from .plots import PlotError, pixel_view

    if args.digit.lstrip("-").isdigit():
        split, _ = load_split(resolve_data_dir(args.data_dir), args.split)
        index = int(args.digit)
        if not 0 <= index < len(split):
            raise PlotError(f"index {index} is out of range: the {args.split} split has {len(split):,} digits "
                            f"(0-{len(split) - 1})")
        label = int(split.labels[index])
        fig = pixel_view(split.images[index], label, normalized=args.normalized,
                         title=f"{args.split.capitalize()} digit #{index}: label {label}")
        default = Path(f"{args.split}-{index}.png")
    else:
        from .preprocessing import load_image, preprocess

        pixels = preprocess(load_image(args.digit), invert=args.invert)
        fig = pixel_view(pixels, normalized=args.normalized, title=f"{Path(args.digit).name} as the model sees it")
        default = Path(f"{Path(args.digit).stem}-pixels.png")
    write_or_show(fig, args, default)
    return 0


def cmd_plot_grid(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .plots import prediction_grid
    from .report import predictions_for_run

    if args.rows * args.cols > MAX_GRID_CELLS:
        parser.error(f"--rows × --cols must be at most {MAX_GRID_CELLS}, got {args.rows * args.cols}")
    predictions = predictions_for_run(args.run, args.data_dir, args.device, args.test_batch_size)
    fig = prediction_grid(predictions, rows=args.rows, cols=args.cols, errors_only=args.errors_only, seed=args.seed)
    name = "predictions-errors.png" if args.errors_only else "predictions.png"
    write_or_show(fig, args, run_folder(args.run) / name)
    return 0


def cmd_plot_curves(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .plots import training_curves
    from .report import CURVES_FILE, load_metrics

    names = [run_folder(path).resolve().name for path in args.runs]
    if len(set(names)) < len(names):  # two runs/x folders: tell them apart by the paths as given
        names = list(args.runs)
    fig = training_curves({name: load_metrics(path)["epochs"] for name, path in zip(names, args.runs, strict=True)})
    write_or_show(fig, args, run_folder(args.runs[0]) / CURVES_FILE if len(args.runs) == 1 else Path(CURVES_FILE))
    return 0


def cmd_plot_confusion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .plots import confusion_matrix
    from .report import predictions_for_run

    predictions = predictions_for_run(args.run, args.data_dir, args.device, args.test_batch_size)
    write_or_show(confusion_matrix(predictions), args, run_folder(args.run) / "confusion.png")
    return 0


def cmd_plot_mistakes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .plots import mistakes_gallery
    from .report import predictions_for_run

    if args.count > MAX_GRID_CELLS:
        parser.error(f"--count must be at most {MAX_GRID_CELLS}, got {args.count}")
    predictions = predictions_for_run(args.run, args.data_dir, args.device, args.test_batch_size)
    write_or_show(mistakes_gallery(predictions, count=args.count), args, run_folder(args.run) / "mistakes.png")
    return 0


def cmd_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .report import write_report

    path = write_report(run_folder(args.run), data_dir=args.data_dir, device=args.device,
                        batch_size=args.test_batch_size, out=args.out)
    print(f"wrote {path}")
    return 0


# --- predict: the digits in people's own images --------------------------------------------------

# Mirrors of prediction.BATCH_SIZE and preprocessing.INVERT_CHOICES (tests/test_predict.py checks them).
PREDICT_DEFAULTS = {"top_k": 3, "batch_size": 256}
INVERT_CHOICES = ("auto", "yes", "no")


def top_k_count(text: str) -> int:
    value = positive_int(text)
    if value > 10:
        raise argparse.ArgumentTypeError(f"must be at most 10 (there are 10 digits), got {value}")
    return value


def add_predict_command(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict", help="recognise the digits in image files",
        description="Classify image files (PNG, JPEG, BMP, GIF, WebP, TIFF) with a checkpoint. Each image is "
                    "first brought to MNIST's convention: white on black, scaled to a 20×20 box, centred by "
                    "mass in 28×28. A file that fails gets its own error row; the exit code is then 1.")
    predict.add_argument("checkpoint", metavar="CHECKPOINT",
                         help="a run folder, or its config.json or model.safetensors")
    predict.add_argument("images", nargs="+", metavar="IMAGE",
                         help="image files, folders (their image files) or glob patterns such as 'scans/*.jpg'")
    predict.add_argument("--top-k", type=top_k_count, default=PREDICT_DEFAULTS["top_k"], metavar="N",
                         help=f"list the N likeliest digits (default: {PREDICT_DEFAULTS['top_k']})")
    predict.add_argument("--json", action="store_true",
                         help="print a JSON array, one object per file, failures with their \"error\"")
    predict.add_argument("--save-preprocessed", metavar="DIR", help="write each 28×28 model input as a PNG into DIR")
    predict.add_argument("--invert", choices=INVERT_CHOICES, default="auto",
                         help="dark ink on light paper: detect it (auto), always invert (yes) or never (no) "
                              "(default: auto)")
    predict.add_argument("--device", type=device_name, default=DEFAULTS["device"], metavar="NAME",
                         help=f"auto, cpu, cuda, cuda:N or mps (default: {DEFAULTS['device']})")
    predict.add_argument("--batch-size", type=positive_int, default=PREDICT_DEFAULTS["batch_size"], metavar="N",
                         help=f"images per forward pass (default: {PREDICT_DEFAULTS['batch_size']})")
    predict.set_defaults(handler=cmd_predict)


def cmd_predict(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .checkpoints import load_checkpoint
    from .prediction import collect_images, format_json, format_table, save_preprocessed

    checkpoint = load_checkpoint(args.checkpoint, device=args.device)
    predictions = checkpoint.predict(collect_images(args.images), top_k=args.top_k, invert=args.invert,
                                     batch_size=args.batch_size)
    if args.save_preprocessed:
        save_preprocessed(predictions, args.save_preprocessed)
    print(format_json(predictions) if args.json else format_table(predictions))
    failed = sum(not p.ok for p in predictions)
    if failed:
        print(f"mnistlab: {failed} of {len(predictions)} files failed", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args, parser)
    except KeyboardInterrupt:
        print("\nmnistlab: interrupted; nothing was saved", file=sys.stderr)
        return 130
    except MnistlabError as e:
        print(f"mnistlab: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
