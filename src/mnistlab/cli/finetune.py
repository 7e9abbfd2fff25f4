"""`mnistlab finetune`: adapt a model to one person's handwriting (`mnistlab.finetune`)."""

from __future__ import annotations

import argparse
import sys

from ..config import FinetuneConfig, default
from ..limits import FINETUNE_STEPS
from ._args import bounded, device_name, output_path, span
from ._output import say
from ._parser import CommandParser


def _default(name: str) -> object:
    return default(FinetuneConfig, name)


def add_commands(commands: argparse._SubParsersAction) -> None:
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
    finetune.add_argument("--holdout", type=bounded(FinetuneConfig, "holdout"), default=_default("holdout"),
                          metavar="SHARE", help=f"share of each digit's images held out to measure the model on, "
                                                f"{span(FinetuneConfig, 'holdout')}; 0 trains on all "
                                                f"(default: {_default('holdout'):g})")
    finetune.add_argument("--epochs", type=bounded(FinetuneConfig, "epochs"), metavar="N",
                          help=f"passes over your training images, {span(FinetuneConfig, 'epochs')} (default: enough "
                               f"for about {FINETUNE_STEPS} steps, whatever the number of images: 11 for 70 images)")
    finetune.add_argument("--lr", type=bounded(FinetuneConfig, "lr"), default=_default("lr"), metavar="LR",
                          help=f"Adam's learning rate, decayed along a cosine (default: {_default('lr'):g})")
    finetune.add_argument("--batch-size", type=bounded(FinetuneConfig, "batch_size"), default=_default("batch_size"),
                          metavar="N", help=f"your images per step (default: {_default('batch_size')})")
    finetune.add_argument("--mix", type=bounded(FinetuneConfig, "mix"), default=_default("mix"), metavar="K",
                          help="training images of the model's dataset per image of yours, in every step, "
                               f"{span(FinetuneConfig, 'mix')}; 0 = none (default: {_default('mix')})")
    finetune.add_argument("--seed", type=bounded(FinetuneConfig, "seed"), default=_default("seed"), metavar="S",
                          help=f"seed of the held-out split, the shuffling and the warps (default: {_default('seed')})")
    finetune.add_argument("--device", type=device_name, default=_default("device"), metavar="NAME",
                          help="auto, cpu, cuda, cuda:N or mps; auto = CUDA, then MPS, then CPU "
                               f"(default: {_default('device')})")
    finetune.add_argument("--data-dir", metavar="DIR",
                          help="the model's dataset as four IDX files in DIR "
                               "(default: the bundled MNIST, or the cache)")
    finetune.add_argument("--no-progress", action="store_true", help="no progress bar")
    finetune.set_defaults(handler=cmd_finetune)


def cmd_finetune(args: argparse.Namespace, parser: CommandParser) -> int:
    from ..errors import RunExistsError, escape
    from ..finetune import finetune

    config = FinetuneConfig(base=args.base, images=args.images, out=args.out, epochs=args.epochs, lr=args.lr,
                            batch_size=args.batch_size, mix=args.mix, holdout=args.holdout, seed=args.seed,
                            device=args.device, data_dir=args.data_dir, overwrite=args.overwrite,
                            progress=not args.no_progress)
    try:
        config.validate()
    except ValueError as e:
        parser.config_error(e)
    say(f"finetuning {args.base} on your images in {args.images}...")

    def skipped(image, why: str) -> None:
        print(f"mnistlab: could not read {escape(str(image.path))}: {why}", file=sys.stderr)

    try:
        result = finetune(config, on_unreadable=skipped)
    except RunExistsError as e:  # the library names its argument; the command line names its flag
        raise e.for_flag("--overwrite") from None
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
