"""`mnistlab train`, `evaluate` and `models`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ._args import DEFAULTS, add_data_flags, finite_float, positive_float, positive_int

if TYPE_CHECKING:
    from ..checkpoints import Checkpoint
    from ..training import Run


def add_commands(commands: argparse._SubParsersAction) -> None:
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
    evaluate.add_argument("--images", metavar="DIR",
                          help="score on your own images instead: DIR/0/ … DIR/9/ hold image files of each digit")
    evaluate.add_argument("--json", action="store_true", help="with --images: print the scores as JSON")
    add_data_flags(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    models = commands.add_parser("models", help="list the available models")
    models.set_defaults(handler=cmd_models)


def cmd_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..training import TrainConfig, train

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
    from ..checkpoints import load_checkpoint
    from ..data import load_split, resolve_data_dir
    from ..training import evaluate

    if args.json and not args.images:
        parser.error("--json goes with --images")
    checkpoint = load_checkpoint(args.checkpoint, device=args.device)
    if args.images:
        return evaluate_images(checkpoint, args.images, args.json)
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


def evaluate_images(checkpoint: Checkpoint, folder: str, as_json: bool) -> int:
    """`evaluate --images DIR`: accuracy on a folder of labelled images (DIR/0/ … DIR/9/)."""
    import json

    from ..labelled import format_score, score_labelled

    score = score_labelled(checkpoint, folder)
    if as_json:
        print(json.dumps({"checkpoint": str(checkpoint.path), "folder": folder, **score.to_dict()}, indent=2))
    else:
        print(f"{checkpoint.path}: {checkpoint.model_name} on {folder} ({len(score.images)} images)")
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


