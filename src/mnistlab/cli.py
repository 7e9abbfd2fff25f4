"""The `mnistlab` command: a thin layer that parses flags and calls the library.

torch is imported only inside the command handlers, so `mnistlab --help` answers at once.
Bad flags exit with code 2 (argparse's convention); bad files and devices with code 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from . import __version__
from .errors import MnistlabError

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


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder with the four MNIST IDX files, raw or .gz "
                             "(default: $MNISTLAB_DATA_DIR, else the copy bundled with mnistlab)")
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
    return 0


def cmd_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .checkpoints import load_checkpoint
    from .data import load_mnist
    from .training import evaluate

    checkpoint = load_checkpoint(args.checkpoint, device=args.device)
    data = load_mnist(args.data_dir)
    loss, acc = evaluate(checkpoint.model, data.test.to(checkpoint.device), checkpoint.mean, checkpoint.std,
                         args.test_batch_size)
    n_params = sum(p.numel() for p in checkpoint.model.parameters())
    print(f"{checkpoint.path}: {checkpoint.model_name} ({n_params:,} parameters) on {checkpoint.device}")
    print(f"test loss {loss:.4f}  test accuracy {acc:.2%} ({round(acc * len(data.test))}/{len(data.test)})")
    recorded = checkpoint.metrics.get("test_acc")
    if recorded is not None:
        verdict = "reproduced exactly" if recorded == acc else f"differs by {acc - recorded:+.2%}"
        print(f"recorded test accuracy {recorded:.2%}: {verdict}")
        recorded_data = checkpoint.config.get("dataset", {}).get("sha256", {})
        if {k: v for k, v in recorded_data.items() if k.startswith("t10k")} != \
                {k: v for k, v in data.sha256.items() if k.startswith("t10k")}:
            print("note: the test files differ from the ones this checkpoint was evaluated on")
    return 0


def cmd_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .models import list_models, model_defaults

    for name in list_models():
        print(f"{name}  {model_defaults(name)}")
    return 0


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
