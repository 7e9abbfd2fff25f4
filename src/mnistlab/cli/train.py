"""`mnistlab train`, `evaluate` and `models`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..recipes import OPTIMIZERS, SCHEDULES, recipe_names
from ._args import DEFAULTS, add_data_flags, finite_float, positive_float, positive_int

if TYPE_CHECKING:
    from ..training import Run, TrainConfig


def add_commands(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a model and save its run folder",
                                description="Train a model on MNIST; write the checkpoint and metrics.json.")
    train.add_argument("--model", default=DEFAULTS["model"], metavar="NAME",
                       help=f"model name, see `mnistlab models` (default: {DEFAULTS['model']})")
    train.add_argument("--hidden", type=positive_int, metavar="N",
                       help="hidden units of the mlp (default: 128)")
    add_recipe_flags(train)
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


def cmd_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..training import train

    try:
        config = train_config(args)
        config.validate()
    except ValueError as e:
        parser.error(str(e))
    run = train(config)
    print(f"saved {run.dir}  (test accuracy {run.final.test_acc:.2%}, {run.wall_seconds:.1f}s on {run.device})")
    if run.config.stop_at is not None:
        print(f"target {run.config.stop_at:.2%}: " + (
            f"reached at step {run.final.step}, after {run.time_to_target:.1f}s of training (evaluations excluded)"
            if run.time_to_target is not None else f"not reached in {run.final.step} steps"))
    try:
        write_run_pictures(run, report=not args.no_report)
    except KeyboardInterrupt:
        print(f"\nmnistlab: interrupted; {run.dir} is saved, its pictures are not", file=sys.stderr)
        return 130
    return 0


def add_recipe_flags(train: argparse.ArgumentParser) -> None:
    """The recipe and the flags that override its settings one by one. Their defaults are None, so that
    a flag given on the command line is told apart from the recipe's value."""
    train.add_argument("--width", type=positive_int, metavar="N",
                       help="channels of the first layer of cnn and cnn_small (default: 32 and 16)")
    train.add_argument("--recipe", choices=recipe_names(), metavar="NAME",
                       help=f"the training settings by name: {', '.join(recipe_names())}; each flag below overrides "
                            "one of them (default: classic for mlp, best for cnn, fast for cnn_small)")
    recipe_says = "(default: the recipe's; classic: {})"
    train.add_argument("--epochs", type=positive_int, metavar="N",
                       help=f"number of epochs to train {recipe_says.format(DEFAULTS['epochs'])}")
    train.add_argument("--batch-size", type=positive_int, metavar="N",
                       help=f"input batch size for training {recipe_says.format(DEFAULTS['batch_size'])}")
    train.add_argument("--lr", type=positive_float, metavar="LR",
                       help=f"learning rate, the peak of a one-cycle schedule {recipe_says.format(DEFAULTS['lr'])}")
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


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig `mnistlab train` runs: the recipe's settings, then every flag that was given."""
    from ..recipes import resolve
    from ..training import TrainConfig

    model_args = {name: value for name, value in (("hidden", args.hidden), ("width", args.width)) if value is not None}
    settings = resolve(args.model, args.recipe, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       optimizer=args.optimizer, schedule=args.schedule, weight_decay=args.weight_decay,
                       label_smoothing=args.label_smoothing, augment=args.augment, elastic=args.elastic)
    return TrainConfig(model=args.model, model_args=model_args, **settings, test_batch_size=args.test_batch_size,
                       mean=args.mean, std=args.std, seed=args.seed, device=args.device, data_dir=args.data_dir,
                       train_limit=args.train_limit, out=args.out, progress=not args.no_progress,
                       eval_every=args.eval_every, stop_at=args.stop_at, compile=args.compile)


def cmd_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..checkpoints import load_checkpoint
    from ..data import load_split, resolve_data_dir
    from ..training import evaluate

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
    from ..models import list_models, model_defaults

    for name in list_models():
        print(f"{name}  {model_defaults(name)}")
    return 0



def write_run_pictures(run: Run, report: bool = True) -> None:
    """After `mnistlab train`: curves.png, and report.html from the in-memory model and test split."""
    from ..plots import compute_predictions, save_figure, training_curves
    from ..report import CURVES_FILE, write_report

    print(f"wrote {save_figure(training_curves(run.history), run.dir / CURVES_FILE)}")
    if report:
        predictions = compute_predictions(run.model, run.test_split, run.config.mean, run.config.std,
                                          run.config.test_batch_size)
        print(f"wrote {write_report(run.dir, predictions)}")


