"""`mnistlab read`: the handwritten numbers in people's pictures."""

from __future__ import annotations

import argparse
import sys

from ..config import INVERT_CHOICES, PredictOptions, default
from ._args import add_device_flag


def add_commands(commands: argparse._SubParsersAction) -> None:
    read = commands.add_parser(
        "read", help="read the handwritten numbers in image files",
        description="Read the number written in each image file: every digit found, left to right, each brought "
                    "to MNIST's convention as `predict` does and classified; digits that touch are cut where the "
                    "model reads them best. A file with no number gets an error row; the exit code is then 1.")
    read.add_argument("checkpoint", metavar="MODEL",
                      help="a run folder (or its config.json or model.safetensors), pretrained:NAME (pretrained "
                           "weights, see `mnistlab models`), or an exported .onnx file")
    read.add_argument("images", nargs="+", metavar="IMAGE",
                      help="image files, folders (their image files) or glob patterns such as 'meters/*.jpg'")
    read.add_argument("--json", action="store_true",
                      help="print a JSON array, one object per file: file, text, digits (label, confidence, box), "
                           "error")
    read.add_argument("--invert", choices=INVERT_CHOICES, default=default(PredictOptions, "invert"),
                      help="dark ink on light paper: detect it (auto), always invert (yes) or never (no) "
                           f"(default: {default(PredictOptions, 'invert')})")
    add_device_flag(read, "an ONNX file runs on the CPU")
    read.set_defaults(handler=cmd_read)


def cmd_read(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..errors import ImageError, escape
    from ..loading import load_model
    from ..prediction import expand_argument
    from ..reading import format_json, format_table, read

    model = load_model(args.checkpoint, device=args.device)
    expanded = [(argument, *expand_argument(argument)) for argument in args.images]
    paths = [path for _, found, _ in expanded for path in found]
    empty = [escape(argument) for argument, found, _ in expanded if not found]
    for _, _, skipped in expanded:
        for entry in skipped:
            print(f"mnistlab: skipped {escape(entry)}", file=sys.stderr)
    if not paths:
        raise ImageError(f"no images found in {', '.join(empty)}")
    readings = read(model, paths, invert=args.invert)
    print(format_json(readings) if args.json else format_table(readings))
    for argument in empty:
        print(f"mnistlab: no images found in {argument}", file=sys.stderr)
    failed = sum(not r.ok for r in readings)
    if failed:
        print(f"mnistlab: no number read in {failed} of {len(readings)} files", file=sys.stderr)
    return 1 if failed or empty else 0
