"""`mnistlab read`: the handwritten numbers in people's pictures."""

from __future__ import annotations

import argparse
import sys

from ._args import add_device_flag, add_invert_flag, add_model_and_images, add_reject_flag
from ._output import image_paths


def add_commands(commands: argparse._SubParsersAction) -> None:
    read = commands.add_parser(
        "read", help="read the handwritten numbers in image files",
        description="Read the number written in each image file: every digit found, left to right, each brought "
                    "to MNIST's convention as `predict` does and classified; digits that touch are cut where the "
                    "model reads them best. A mark standing alone that does not look like a digit (--reject) is "
                    "left out. A file with no number gets an error row; the exit code is then 1.")
    add_model_and_images(read, "image files, folders (their image files) or glob patterns such as 'meters/*.jpg'")
    read.add_argument("--json", action="store_true",
                      help="print a JSON array, one object per file: file, text, digits (label, confidence, box), "
                           "error")
    read.add_argument("--boxes", metavar="DIR",
                      help="also write each picture with a box and a reading over each digit, as DIR/<name>.png "
                           "(made if missing)")
    add_invert_flag(read)
    add_reject_flag(read)
    add_device_flag(read, "an ONNX file runs on the CPU")
    read.set_defaults(handler=cmd_read)


def cmd_read(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..model_loading import load_model
    from ..number_boxes import check_boxes_folder, save_boxes
    from ..reading import format_json, format_table, read

    if args.boxes is not None:
        check_boxes_folder(args.boxes)
    model = load_model(args.checkpoint, device=args.device)
    paths, empty = image_paths(args.images)
    readings = read(model, paths, invert=args.invert, reject=args.reject)
    print(format_json(readings) if args.json else format_table(readings))
    if args.boxes is not None:
        for path in save_boxes(readings, args.boxes):
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    for argument in empty:
        print(f"mnistlab: no images found in {argument}", file=sys.stderr)
    failed = sum(not r.ok for r in readings)
    if failed:
        print(f"mnistlab: no number read in {failed} of {len(readings)} files", file=sys.stderr)
    return 1 if failed or empty else 0
