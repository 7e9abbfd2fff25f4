"""`mnistlab train`, `evaluate` and `models`."""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..datasets import DATASETS
from ..errors import MnistlabError
from ..limits import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_HIDDEN,
    MAX_LR,
    MAX_TRAIN_LIMIT,
    MEAN_RANGE,
    MIN_LR,
    SEED_MAX,
    STD_RANGE,
)
from ..recipes import OPTIMIZERS, SCHEDULES, recipe_names
from ._args import DEFAULTS, add_data_flags, finite_float, float_in, int_in, output_path, positive_int

if TYPE_CHECKING:
    from ..classifier import Classifier
    from ..training import Run, TrainConfig


def add_commands(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a model and save its run folder",
                                description="Train a model on MNIST (or --dataset); write the checkpoint and "
                                            "metrics.json. The run folder appears whole when everything is "
                                            "written, or not at all (Ctrl-C exits 130, SIGTERM 143, leaving nothing "
                                            "new).")
    train.add_argument("--model", default=DEFAULTS["model"], metavar="NAME",
                       help=f"model name, see `mnistlab models` (default: {DEFAULTS['model']})")
    train.add_argument("--hidden", type=int_in(1, MAX_HIDDEN), metavar="N",
                       help=f"hidden units of the mlp, 1 to {MAX_HIDDEN:,} (default: 128)")
    add_recipe_flags(train)
    means = ", ".join(f"{info.name} {info.mean:g}" for info in DATASETS.values())
    stds = ", ".join(f"{info.name} {info.std:g}" for info in DATASETS.values())
    train.add_argument("--mean", type=float_in(*MEAN_RANGE), default=DEFAULTS["mean"], metavar="M",
                       help=f"normalisation mean on the 0-1 pixel scale, {MEAN_RANGE[0]:g} to {MEAN_RANGE[1]:g} "
                            f"(default: the dataset's training-set mean: {means})")
    train.add_argument("--std", type=float_in(*STD_RANGE), default=DEFAULTS["std"], metavar="S",
                       help=f"normalisation standard deviation, {STD_RANGE[0]:g} to {STD_RANGE[1]:g} "
                            f"(default: the dataset's: {stds})")
    train.add_argument("--seed", type=int_in(0, SEED_MAX), default=DEFAULTS["seed"], metavar="S",
                       help=f"random seed for init and shuffling, 0 to 2**64-1 (default: {DEFAULTS['seed']})")
    train.add_argument("--train-limit", type=int_in(1, MAX_TRAIN_LIMIT), metavar="N",
                       help=f"train on the first N training images only, at most {MAX_TRAIN_LIMIT:,} (default: all)")
    train.add_argument("--out", type=output_path, metavar="DIR",
                       help="run folder to write: new, empty, or an earlier run with --overwrite "
                            "(default: runs/<timestamp>-<model>)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run already in --out, whole (its old figures too), once the new one is done")
    train.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    train.add_argument("--no-report", action="store_true",
                       help="skip report.html (curves.png is written all the same)")
    train.add_argument("--verbose", action="store_true", help="print the seconds each phase took, at the end")
    add_data_flags(train, run_dataset=False)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint on the test set",
                                   description="Rebuild a model from its checkpoint alone and evaluate it "
                                               "on the test set of the dataset it was trained on; compare with "
                                               "the recorded accuracy.")
    evaluate.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT",
                          help="a run folder, or its config.json or model.safetensors, pretrained:NAME (pretrained "
                               "weights, see `mnistlab models`), or a file that `mnistlab export` wrote (.onnx, run "
                               "on onnxruntime)")
    evaluate.add_argument("--images", metavar="DIR",
                          help="score on your own images instead: DIR/0/ … DIR/9/ hold image files of each digit")
    evaluate.add_argument("--json", action="store_true", help="with --images: print the scores as JSON")
    add_data_flags(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    models = commands.add_parser("models", help="list the available models")
    models.set_defaults(handler=cmd_models)


def cmd_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    started = time.perf_counter()
    from ..checkpoints import is_checkpoint_folder
    from ..training import default_run_dir, train

    imported = time.perf_counter()
    try:
        config = train_config(args, default_out=str(default_run_dir(args.model)))
        config.validate()
    except ValueError as e:
        parser.error(str(e))
    target, before = Path(config.out), _identity(Path(config.out))
    pictures = RunPictures(report=not args.no_report)
    try:
        run = train(config, before_publish=pictures, command=shlex.join(["mnistlab", *args.argv]))
        print(f"saved {run.dir}  (test accuracy {run.final.test_acc:.2%}, {run.wall_seconds:.1f}s on {run.device})")
        if run.config.stop_at is not None:
            print(f"target {run.config.stop_at:.2%}: " + (
                f"reached at step {run.final.step}, after {run.time_to_target:.1f}s of training (evaluations excluded)"
                if run.time_to_target is not None else f"not reached in {run.final.step} steps"))
        for name in pictures.written:
            print(f"wrote {run.dir / name}")
        if args.verbose:
            print_timings({"imports": imported - started, **run.timings}, time.perf_counter() - started)
    except KeyboardInterrupt as e:  # re-raised with what is on disk; main() prints it (SIGTERM keeps its class)
        raise type(e)(_on_disk(target, before, is_checkpoint_folder)) from None
    if pictures.failure:
        name, reason = pictures.failure
        kept = ", ".join(sorted(p.name for p in run.dir.iterdir()))
        raise PictureError(f"{run.dir / name}: not written ({reason}); {run.dir} holds the trained run: {kept}")
    return 0


class PictureError(MnistlabError):
    """A picture of a finished run could not be drawn or written; the run itself is saved."""


PHASES = {"imports": "imports (torch, mnistlab)", "model": "model + optimizer",
          "data": "data load + hashing (parallel)", "training": "training", "evaluation": "evaluation",
          "writing": "checkpoint write", "extras": "pictures", "publish": "rename into place"}


def print_timings(seconds: dict[str, float], total: float) -> None:
    """`--verbose`: the seconds of each phase of the command, in order, and the total."""
    print("seconds per phase:")
    for key, label in PHASES.items():
        if key in seconds:
            print(f"  {label:<32}{seconds[key]:7.2f}")
    print(f"  {'total, after start-up':<32}{total:7.2f}")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _on_disk(target: Path, before: tuple[int, int] | None, holds_run: Callable[[Path], bool]) -> str:
    """What an interrupted `train` left at `target`, read from the disk itself (the folder appears in one step)."""
    now = _identity(target)
    if now is not None and now != before and holds_run(target):
        return f"the complete run was saved in {target}"
    if before is not None and holds_run(target):
        return f"nothing was saved; the old run in {target} is untouched"
    return "nothing was saved"


def add_recipe_flags(train: argparse.ArgumentParser) -> None:
    """The recipe and the flags that override its settings one by one. Their defaults are None, so that
    a flag given on the command line is told apart from the recipe's value."""
    train.add_argument("--width", type=positive_int, metavar="N",
                       help="channels of the first layer of cnn and cnn_small (default: 32 and 16)")
    train.add_argument("--recipe", choices=recipe_names(), metavar="NAME",
                       help=f"the training settings by name: {', '.join(recipe_names())}; each flag below overrides "
                            "one of them (default: classic for mlp, best for cnn, fast for cnn_small)")
    recipe_says = "(default: the recipe's; classic: {})"
    train.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), metavar="N",
                       help=f"number of epochs to train, 1 to {MAX_EPOCHS:,} {recipe_says.format(DEFAULTS['epochs'])}")
    train.add_argument("--batch-size", type=int_in(1, MAX_BATCH_SIZE), metavar="N",
                       help=f"training batch size, 1 to {MAX_BATCH_SIZE:,} "
                            f"{recipe_says.format(DEFAULTS['batch_size'])}")
    train.add_argument("--lr", type=float_in(MIN_LR, MAX_LR), metavar="LR",
                       help=f"learning rate (the peak of a one-cycle schedule), {MIN_LR:g} to {MAX_LR:g} "
                            f"{recipe_says.format(DEFAULTS['lr'])}")
    train.add_argument("--optimizer", choices=OPTIMIZERS,
                       help=f"adamw: decoupled weight decay; sgd: Nesterov momentum 0.9 {recipe_says.format('adam')}")
    train.add_argument("--schedule", choices=SCHEDULES,
                       help=f"learning-rate schedule, stepped per batch {recipe_says.format('constant')}")
    train.add_argument("--weight-decay", type=non_negative_float, metavar="WD",
                       help=f"decoupled for adamw; not on biases and norms {recipe_says.format(0)}")
    train.add_argument("--label-smoothing", type=below_one, metavar="LS", help=f"{recipe_says.format(0)}")
    train.add_argument("--augment", type=augment_amount, metavar="STRENGTH",
                       help="random affine warp per image: 1 = up to ±2 px shift, ±10° rotation, ±10%% size; "
                            f"0 = off {recipe_says.format(0)}")
    train.add_argument("--elastic", type=augment_amount, metavar="PX",
                       help=f"elastic distortion, standard deviation in pixels; 0 = off {recipe_says.format(0)}")
    train.add_argument("--eval-every", type=positive_int, metavar="N",
                       help="evaluate on the test set every N steps (default: after each epoch)")
    train.add_argument("--stop-at", type=accuracy, metavar="ACC",
                       help="stop once the test accuracy reaches ACC, e.g. 0.99 or 99%% (default: never)")
    train.add_argument("--compile", action="store_true", help="torch.compile the model for training")


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text}")
    return value


def below_one(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 0 and < 1, got {text}")
    return value


def augment_amount(text: str) -> float:
    value = non_negative_float(text)
    if value >= 10:
        raise argparse.ArgumentTypeError(f"must be ≥ 0 and < 10, got {text}")
    return value


def accuracy(text: str) -> float:
    """A test accuracy as a fraction (0.99) or a percentage (99%)."""
    percent = text.strip().endswith("%")
    value = finite_float(text.strip().removesuffix("%")) / (100 if percent else 1)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected an accuracy in (0, 1] or (0%, 100%], e.g. 0.99 or 99%, got {text}")
    return value


def train_config(args: argparse.Namespace, default_out: str | None = None) -> TrainConfig:
    """The TrainConfig `mnistlab train` runs: the recipe's settings, then every flag that was given."""
    from ..recipes import resolve
    from ..training import TrainConfig

    model_args = {name: value for name, value in (("hidden", args.hidden), ("width", args.width)) if value is not None}
    settings = resolve(args.model, args.recipe, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       optimizer=args.optimizer, schedule=args.schedule, weight_decay=args.weight_decay,
                       label_smoothing=args.label_smoothing, augment=args.augment, elastic=args.elastic)
    return TrainConfig(model=args.model, model_args=model_args, **settings, test_batch_size=args.test_batch_size,
                       dataset=args.dataset, mean=args.mean, std=args.std, seed=args.seed, device=args.device,
                       data_dir=args.data_dir,
                       train_limit=args.train_limit, out=args.out or default_out, overwrite=args.overwrite,
                       progress=not args.no_progress, eval_every=args.eval_every, stop_at=args.stop_at,
                       compile=args.compile)


def cmd_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..classifier import load_model, score
    from ..datasets import checkpoint_dataset
    from ..onnx_model import OnnxModel

    if args.json and not args.images:
        parser.error("--json goes with --images")
    model = load_model(args.checkpoint, device=args.device)
    if args.images:  # an exported file's path imports no torch
        return evaluate_images(model, args.images, args.json)
    from ..data import load_test_split
    from ..training import evaluate

    info = checkpoint_dataset(model.config.get("dataset", {}), args.dataset, model.path)
    test, digests = load_test_split(info, args.data_dir)
    if isinstance(model, OnnxModel):  # its own input convention, on onnxruntime
        loss, acc = score(model, test.images.numpy(), test.labels.numpy(), args.test_batch_size)
        where = "onnxruntime (CPU)"
    else:
        loss, acc = evaluate(model.model, test.to(model.device), model.mean, model.std, args.test_batch_size)
        where = model.device
    print(f"{model.path}: {model.model_name} ({model.parameter_count:,} parameters) on {where}")
    origin = f"--data-dir {args.data_dir}" if args.data_dir else "the bundled copy" if info.bundled else "the cache"
    print(f"{info.title} test set, from {origin}")
    print(f"test loss {loss:.4f}  test accuracy {acc:.2%} ({round(acc * len(test))}/{len(test)})")
    recorded = model.metrics.get("test_acc")
    if recorded is not None:
        verdict = "reproduced exactly" if recorded == acc else f"differs by {acc - recorded:+.2%}"
        print(f"recorded test accuracy {recorded:.2%}: {verdict}")
        recorded_digests = model.config.get("dataset", {}).get("sha256", {})
        if recorded_digests and any(recorded_digests.get(name) != digest for name, digest in digests.items()):
            print("note: the test files differ from the ones this checkpoint was evaluated on")
    return 0


def evaluate_images(model: Classifier, folder: str, as_json: bool) -> int:
    """`evaluate --images DIR`: accuracy on a folder of labelled images (DIR/0/ … DIR/9/)."""
    import json

    from ..labelled import format_score, score_labelled

    score = score_labelled(model, folder)
    if as_json:
        print(json.dumps({"checkpoint": str(model.path), "folder": folder, **score.to_dict()}, indent=2))
    else:
        print(f"{model.path}: {model.model_name} on {folder} ({len(score.images)} images)")
        print(format_score(score))
    return 0


def cmd_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """A table of the models: name, parameters at the default arguments, the arguments, what it is."""
    import inspect

    from ..models import _lookup, create_model, list_models, model_defaults

    rows = [("model", "parameters", "arguments (defaults)", "description")]
    for name in list_models():
        try:
            factory = _lookup(name)  # the registry's own lookup: it also loads a model from a plugin package
            arguments = ", ".join(f"{key}={value!r}" for key, value in model_defaults(name).items()) or "-"
            n_params = f"{sum(p.numel() for p in create_model(name).parameters()):,}"
            description = (inspect.getdoc(factory) or "").split("\n")[0] or "-"
        except Exception as e:  # one broken plugin model must not hide the others
            arguments, n_params, description = "?", "?", f"cannot be built: {' '.join(str(e).split())[:200]}"
        rows.append((name, n_params, arguments, description))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for name, n_params, arguments, description in rows:
        print(f"{name:<{widths[0]}}  {n_params:>{widths[1]}}  {arguments:<{widths[2]}}  {description}".rstrip())
    print_pretrained()
    return 0


def print_pretrained() -> None:
    """`models`, after the table: the models with pretrained weights, each with its recorded test accuracy."""
    from ..datasets import get_dataset
    from ..pretrained import PREFIX, describe, list_pretrained

    print("pretrained weights, used as RUN wherever a run folder is taken (`mnistlab evaluate pretrained:cnn`):")
    names = [PREFIX + name for name in list_pretrained()]
    width = max(map(len, names), default=0)
    for name, shown in zip(list_pretrained(), names, strict=True):
        try:
            info = describe(name)
            recipe = f"{info.recipe} recipe" if info.recipe else "own settings"
            print(f"  {shown:<{width}}  {info.model}, {info.test_acc:.2%} on {get_dataset(info.dataset).title}'s "
                  f"test set ({recipe}, seed {info.seed})")
        except MnistlabError as e:  # an altered install: say so on its row, and list the others
            print(f"  {shown:<{width}}  unusable: {' '.join(str(e).split())[:200]}")


class RunPictures:
    """`train`'s before_publish hook for the command: curves.png and report.html, into the staging folder.

    They are drawn from the model and test split still in memory and published with the run. A
    picture that fails (a full disk, a drawing error) must not cost the trained model: the failure is
    kept in `failure`, the run is published without that picture, and the command reports it after.
    """

    def __init__(self, report: bool = True):
        self.report = report
        self.written: list[str] = []  # file names, in the order written
        self.failure: tuple[str, str] | None = None  # (file name, reason)

    def __call__(self, run: Run, folder: Path) -> None:
        from ..plots import compute_predictions, save_png, training_curves
        from ..report import CURVES_FILE, REPORT_FILE, load_metrics, render_report, report_figures

        name = CURVES_FILE
        try:
            # The staging folder is private until published, so the files need no temporary names.
            save_png(training_curves(run.history), folder / CURVES_FILE)
            self.written.append(name)
            if self.report:
                name = REPORT_FILE
                predictions = compute_predictions(run.model, run.test_split, run.config.mean, run.config.std,
                                                  run.config.test_batch_size, DATASETS[run.config.dataset].classes)
                metrics = load_metrics(folder)
                page = render_report(run.dir, metrics, report_figures(metrics, predictions))
                (folder / REPORT_FILE).write_text(page, encoding="utf-8")
                self.written.append(name)
        except Exception as e:  # whatever went wrong with a picture, the trained run is worth keeping
            (folder / name).unlink(missing_ok=True)
            self.failure = (name, e.strerror if isinstance(e, OSError) and e.strerror else str(e))
