"""`mnistlab train`: parse the flags into a `TrainConfig`, call `mnistlab.runs.train`, print what it saved."""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Range, TrainConfig, default
from ..dataset_info import DATASETS
from ..limits import MAX_HIDDEN, MAX_WIDTH
from ..recipes import CLASSIC, OPTIMIZERS, SCHEDULES, recipe_names
from ._args import accuracy, add_data_flags, bounded, number_in, output_path, span
from ._parser import CommandParser, closest

if TYPE_CHECKING:
    from ..training import Run


def add_commands(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a model and save its run folder",
                                description="Train a model on MNIST (or --dataset); write the checkpoint and "
                                            "metrics.json. The run folder appears whole when everything is "
                                            "written, or not at all (Ctrl-C exits 130, SIGTERM 143, leaving nothing "
                                            "new).")
    train.add_argument("--model", default=default(TrainConfig, "model"), metavar="NAME",
                       help=f"model name, see `mnistlab models` (default: {default(TrainConfig, 'model')})")
    train.add_argument("--hidden", type=number_in(Range(1, MAX_HIDDEN), "hidden"), metavar="N",
                       help=f"hidden units of the mlp, 1 to {MAX_HIDDEN:,} (default: 128)")
    add_recipe_flags(train)
    means = ", ".join(f"{info.name} {info.mean:g}" for info in DATASETS.values())
    stds = ", ".join(f"{info.name} {info.std:g}" for info in DATASETS.values())
    train.add_argument("--mean", type=bounded(TrainConfig, "mean"), metavar="M",
                       help=f"normalisation mean on the 0-1 pixel scale, {span(TrainConfig, 'mean')} "
                            f"(default: the dataset's training-set mean: {means})")
    train.add_argument("--std", type=bounded(TrainConfig, "std"), metavar="S",
                       help=f"normalisation standard deviation, {span(TrainConfig, 'std')} "
                            f"(default: the dataset's: {stds})")
    train.add_argument("--seed", type=bounded(TrainConfig, "seed"), default=default(TrainConfig, "seed"), metavar="S",
                       help=f"random seed for init and shuffling, {span(TrainConfig, 'seed')} "
                            f"(default: {default(TrainConfig, 'seed')})")
    train.add_argument("--train-limit", type=bounded(TrainConfig, "train_limit"), metavar="N",
                       help=f"train on the first N training images only, {span(TrainConfig, 'train_limit')} "
                            "(default: all)")
    train.add_argument("--calibration-size", type=bounded(TrainConfig, "calibration_size"), metavar="N",
                       default=default(TrainConfig, "calibration_size"),
                       help="hold the last N training images out of training and calibrate the confidence on "
                            f"them (at most a tenth of the training set; 0: do not calibrate), "
                            f"{span(TrainConfig, 'calibration_size')} "
                            f"(default: {default(TrainConfig, 'calibration_size')})")
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


def add_recipe_flags(train: argparse.ArgumentParser) -> None:
    """The recipe and the flags that override its settings one by one. Their defaults are None, so that
    a flag given on the command line is told apart from the recipe's value."""
    train.add_argument("--width", type=number_in(Range(1, MAX_WIDTH), "width"), metavar="N",
                       help=f"channels of the first layer of cnn and cnn_small, 1 to {MAX_WIDTH} (default: 32 and 16)")
    train.add_argument("--recipe", choices=recipe_names(), metavar="NAME",
                       help=f"the training settings by name: {', '.join(recipe_names())}; each flag below overrides "
                            "one of them (default: classic for mlp, best for cnn, fast for cnn_small)")

    def recipe_says(name: str) -> str:
        value = getattr(CLASSIC, name)
        return f"(default: the recipe's; classic: {value:g})" if isinstance(value, float) else \
            f"(default: the recipe's; classic: {value})"

    train.add_argument("--epochs", type=bounded(TrainConfig, "epochs"), metavar="N",
                       help=f"number of epochs to train, {span(TrainConfig, 'epochs')} {recipe_says('epochs')}")
    train.add_argument("--batch-size", type=bounded(TrainConfig, "batch_size"), metavar="N",
                       help=f"training batch size, {span(TrainConfig, 'batch_size')} {recipe_says('batch_size')}")
    train.add_argument("--lr", type=bounded(TrainConfig, "lr"), metavar="LR",
                       help=f"learning rate (the peak of a one-cycle schedule), {span(TrainConfig, 'lr')} "
                            f"{recipe_says('lr')}")
    train.add_argument("--optimizer", choices=OPTIMIZERS,
                       help=f"adamw: decoupled weight decay; sgd: Nesterov momentum 0.9 {recipe_says('optimizer')}")
    train.add_argument("--schedule", choices=SCHEDULES,
                       help=f"learning-rate schedule, stepped per batch {recipe_says('schedule')}")
    train.add_argument("--weight-decay", type=bounded(TrainConfig, "weight_decay"), metavar="WD",
                       help=f"decoupled for adamw; not on biases and norms; {span(TrainConfig, 'weight_decay')} "
                            f"{recipe_says('weight_decay')}")
    train.add_argument("--label-smoothing", type=bounded(TrainConfig, "label_smoothing"), metavar="LS",
                       help=f"{span(TrainConfig, 'label_smoothing')} {recipe_says('label_smoothing')}")
    train.add_argument("--augment", type=bounded(TrainConfig, "augment"), metavar="STRENGTH",
                       help="random affine warp per image: 1 = up to ±2 px shift, ±10° rotation, ±10%% size; "
                            f"0 = off {recipe_says('augment')}")
    train.add_argument("--elastic", type=bounded(TrainConfig, "elastic"), metavar="PX",
                       help=f"elastic distortion, standard deviation in pixels; 0 = off {recipe_says('elastic')}")
    train.add_argument("--outlier-exposure", type=bounded(TrainConfig, "outlier_exposure"), metavar="W",
                       help="weight of the loss that teaches the model to be unsure of marks that are not digits, "
                            f"{span(TrainConfig, 'outlier_exposure')}; 0 = off {recipe_says('outlier_exposure')}")
    train.add_argument("--init", metavar="RUN",
                       help="start from the weights of RUN (a run folder or pretrained:NAME) of the same model, "
                            "instead of random ones (default: random, from --seed)")
    train.add_argument("--eval-every", type=bounded(TrainConfig, "eval_every"), metavar="N",
                       help="evaluate on the test set every N steps (default: after each epoch)")
    train.add_argument("--stop-at", type=accuracy, metavar="ACC",
                       help="stop once the test accuracy reaches ACC, e.g. 0.99 or 99%% (default: never)")
    train.add_argument("--compile", action="store_true", help="torch.compile the model for training")


def train_config(args: argparse.Namespace, default_out: str | None = None) -> TrainConfig:
    """The TrainConfig `mnistlab train` runs: the recipe's settings, then every flag that was given."""
    from ..recipes import recipe_settings

    model_args = {name: value for name, value in (("hidden", args.hidden), ("width", args.width)) if value is not None}
    settings = recipe_settings(args.model, args.recipe, dataset=args.dataset, epochs=args.epochs,
                               batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                               schedule=args.schedule, weight_decay=args.weight_decay,
                               label_smoothing=args.label_smoothing, augment=args.augment, elastic=args.elastic,
                               outlier_exposure=args.outlier_exposure)
    return TrainConfig(model=args.model, model_args=model_args, init=args.init, **settings,
                       test_batch_size=args.test_batch_size,
                       dataset=args.dataset, mean=args.mean, std=args.std, seed=args.seed, device=args.device,
                       data_dir=args.data_dir,
                       train_limit=args.train_limit, calibration_size=args.calibration_size,
                       out=args.out or default_out, overwrite=args.overwrite,
                       progress=not args.no_progress, eval_every=args.eval_every, stop_at=args.stop_at,
                       compile=args.compile)


def cmd_train(args: argparse.Namespace, parser: CommandParser) -> int:
    started = time.perf_counter()
    from ..checkpoints import is_checkpoint_folder
    from ..errors import RunExistsError
    from ..runs import PictureError, train
    from ..training import check_config, default_run_dir

    imported = time.perf_counter()
    check_model_flags(args, parser)
    try:
        config = train_config(args, default_out=str(default_run_dir(args.model)))
        check_config(config)
    except ValueError as e:
        parser.config_error(e)
    target, before = Path(config.out), _identity(Path(config.out))
    try:
        try:
            run = train(config, report=not args.no_report, command=shlex.join(["mnistlab", *args.argv]))
        except RunExistsError as e:  # the library names its argument; the command line names its flag
            raise e.for_flag("--overwrite") from None
        except PictureError as e:  # the run is saved: say so first, then the picture's error (exit 1)
            print_run(e.run, args.verbose, imported - started, started)
            raise
        print_run(run, args.verbose, imported - started, started)
    except KeyboardInterrupt as e:  # re-raised with what is on disk; main() prints it (SIGTERM keeps its class)
        raise type(e)(_on_disk(target, before, is_checkpoint_folder)) from None
    return 0


def check_model_flags(args: argparse.Namespace, parser: CommandParser) -> None:
    """--model names a registered model, and --hidden and --width go with a model that has them (exit 2)."""
    from ..models import list_models, model_defaults

    models = list_models()
    if args.model not in models:
        match = closest(args.model, models)
        parser.usage_error(f"argument --model: unknown model {args.model!r}; choose from: {', '.join(models)} "
                           "(`mnistlab models`)", did_you_mean=f"--model {match}" if match else None)
    for name in ("hidden", "width"):
        if getattr(args, name) is not None and name not in model_defaults(args.model):
            takers = [model for model in models if name in model_defaults(model)]
            parser.usage_error(f"argument --{name}: {args.model} takes no --{name} (only {' and '.join(takers)})")


def print_run(run: Run, verbose: bool, import_seconds: float, started: float) -> None:
    print(f"saved {run.dir}  (test accuracy {run.final.test_acc:.2%}, {run.wall_seconds:.1f}s on {run.device})")
    if run.config.stop_at is not None:
        print(f"target {run.config.stop_at:.2%}: " + (
            f"reached at step {run.final.step}, after {run.time_to_target:.1f}s of training (evaluations excluded)"
            if run.time_to_target is not None else f"not reached in {run.final.step} steps"))
    for name in run.pictures:
        print(f"wrote {run.dir / name}")
    if verbose:
        print_timings({"imports": import_seconds, **run.timings}, time.perf_counter() - started)


PHASES = {"imports": "imports (torch, mnistlab)", "model": "model + optimizer",
          "data": "data load + hashing (parallel)", "training": "training", "evaluation": "evaluation",
          "calibration": "calibration (held-out images)", "writing": "checkpoint write", "extras": "pictures",
          "publish": "rename into place"}


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
