"""`mnistlab finetune`: adapt a model to one person's handwriting (`mnistlab.finetune`)."""

from __future__ import annotations

import argparse
import sys

from ..limits import FINETUNE_STEPS as STEPS
from ..limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_LR, MIN_LR, SEED_MAX
from ._args import device_name, float_in, int_in, output_path

# Mirrors of finetune.FinetuneConfig's defaults, kept here so that --help needs no torch;
# tests/test_finetune.py checks that the two agree.
FINETUNE_DEFAULTS = {"epochs": None, "lr": 3e-4, "batch_size": 8, "mix": 8, "holdout": 0.3, "seed": 1, "device": "auto"}


def add_commands(commands: argparse._SubParsersAction) -> None:
    d = FINETUNE_DEFAULTS
    finetune = commands.add_parser(
        "finetune", help="adapt a model to your handwriting",
        description="Adapt a model to one person's handwriting, from labelled image folders DIR/0/ … DIR/9/ "
                    "(what `serve --collect DIR` saves). A share of each digit's images is held out and the model "
                    "is measured on it before and after; each step mixes the person's (randomly warped) images with "
                    "training images of the model's own dataset, so that its test accuracy is kept, and printed "
                    "before and after. Writes an ordinary run folder, whole or not at all.")
    finetune.add_argument("base", metavar="BASE", help="the model to start from: a run folder (or pretrained:NAME)")
    finetune.add_argument("--images", required=True, metavar="DIR",
                          help="your labelled images: DIR/0/ … DIR/9/, at least 2 readable images of each digit")
    finetune.add_argument("--out", required=True, type=output_path, metavar="RUN",
                          help="run folder to write: new, empty, or an earlier run with --overwrite")
    finetune.add_argument("--overwrite", action="store_true", help="replace the run already in --out, once done")
    finetune.add_argument("--holdout", type=float_in(0, 0.9), default=d["holdout"], metavar="SHARE",
                          help="share of each digit's images held out to measure the model on, 0 to 0.9; "
                               f"0 trains on all (default: {d['holdout']:g})")
    finetune.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), default=d["epochs"], metavar="N",
                          help=f"passes over your training images, 1 to {MAX_EPOCHS:,} (default: enough for about "
                               f"{STEPS} steps, whatever the number of images: 11 for 70 images)")
    finetune.add_argument("--lr", type=float_in(MIN_LR, MAX_LR), default=d["lr"], metavar="LR",
                          help=f"Adam's learning rate, decayed along a cosine (default: {d['lr']:g})")
    finetune.add_argument("--batch-size", type=int_in(1, MAX_BATCH_SIZE), default=d["batch_size"], metavar="N",
                          help=f"your images per step (default: {d['batch_size']})")
    finetune.add_argument("--mix", type=int_in(0, 64), default=d["mix"], metavar="K",
                          help="training images of the model's dataset per image of yours, in every step; "
                               f"0 = none (default: {d['mix']})")
    finetune.add_argument("--seed", type=int_in(0, SEED_MAX), default=d["seed"], metavar="S",
                          help=f"seed of the held-out split, the shuffling and the warps (default: {d['seed']})")
    finetune.add_argument("--device", type=device_name, default=d["device"], metavar="NAME",
                          help="auto, cpu, cuda, cuda:N or mps; auto = CUDA, then MPS, then CPU "
                               f"(default: {d['device']})")
    finetune.add_argument("--data-dir", metavar="DIR",
                          help="the model's dataset as four IDX files in DIR "
                               "(default: the bundled MNIST, or the cache)")
    finetune.add_argument("--no-progress", action="store_true", help="no progress bar")
    finetune.set_defaults(handler=cmd_finetune)


def cmd_finetune(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..errors import escape
    from ..finetune import FinetuneConfig, finetune

    config = FinetuneConfig(base=args.base, images=args.images, out=args.out, epochs=args.epochs, lr=args.lr,
                            batch_size=args.batch_size, mix=args.mix, holdout=args.holdout, seed=args.seed,
                            device=args.device, data_dir=args.data_dir, overwrite=args.overwrite,
                            progress=not args.no_progress)

    def skipped(image, why: str) -> None:
        print(f"mnistlab: could not read {escape(str(image.path))}: {why}", file=sys.stderr)

    result = finetune(config, on_unreadable=skipped)
    before, after = result.before, result.after
    print(f"{result.checkpoint.model_name} from {escape(args.base)}: {result.trained} of your images trained on, "
          f"{result.held_out} held out, {result.steps} steps in {result.seconds:.1f}s")
    if before.held_out is not None:
        print(f"your held-out images: {before.held_out:.1%} before, {after.held_out:.1%} after "
              f"({result.held_out} images)")
    recorded = " (recorded for the same test files)" if before.recorded else ""
    print(f"test set: {before.test:.2%} before{recorded}, {after.test:.2%} after ({after.test - before.test:+.2%})")
    if result.unreadable:
        print(f"{len(result.unreadable)} images could not be read (listed above) and were left out")
    print(f"saved {escape(str(result.dir))}")
    return 0
