"""`mnistlab predict`: the digits in people's own images."""

from __future__ import annotations

import argparse
import sys

from ..config import PredictOptions, default
from ._args import add_device_flag, add_invert_flag, add_model_and_images, add_reject_flag, bounded, span
from ._output import image_paths, say


def add_commands(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict", help="recognise the digits in image files",
        description="Classify image files (PNG, JPEG, BMP, GIF, WebP, TIFF) with a checkpoint or an exported "
                    "ONNX file (`mnistlab export`; run by onnxruntime, without PyTorch). Each image is "
                    "first brought to MNIST's convention: white on black, scaled to a 20×20 box, centred by "
                    "mass in 28×28. A mark that is not a digit (--reject) gets a row that says so, with no digit; "
                    "a file that fails gets its own error row; the exit code is then 1.")
    add_model_and_images(predict, "image files, folders (their image files) or glob patterns such as 'scans/*.jpg'; "
                                  "a file named twice gets two rows")
    predict.add_argument("--top-k", type=bounded(PredictOptions, "top_k"), default=default(PredictOptions, "top_k"),
                         metavar="N", help=f"list the N likeliest digits, {span(PredictOptions, 'top_k')} "
                                           f"(default: {default(PredictOptions, 'top_k')})")
    predict.add_argument("--json", action="store_true",
                         help="print a JSON array, one object per file, failures with their \"error\"")
    predict.add_argument("--save-preprocessed", metavar="DIR", help="write each 28×28 model input as a PNG into DIR")
    add_invert_flag(predict)
    add_reject_flag(predict)
    add_device_flag(predict, "an ONNX file runs on the CPU")
    predict.add_argument("--batch-size", type=bounded(PredictOptions, "batch_size"),
                         default=default(PredictOptions, "batch_size"), metavar="N",
                         help=f"images per forward pass, {span(PredictOptions, 'batch_size')} "
                              f"(default: {default(PredictOptions, 'batch_size')})")
    predict.set_defaults(handler=cmd_predict)


def cmd_predict(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..errors import escape
    from ..model_loading import load_model
    from ..prediction import check_output_folder, format_json, format_table, predict, save_preprocessed

    if args.save_preprocessed:
        check_output_folder(args.save_preprocessed)
    say(f"predicting with {args.checkpoint}...")
    model = load_model(args.checkpoint, device=args.device)
    paths, empty = image_paths(args.images)  # every occurrence: repeats are not merged
    predictions = predict(model, paths, top_k=args.top_k, invert=args.invert, batch_size=args.batch_size,
                          reject=args.reject)
    saved = save_preprocessed(predictions, args.save_preprocessed) if args.save_preprocessed else []
    print(format_json(predictions) if args.json else format_table(predictions))
    if saved:  # on stderr: stdout is the table or the JSON
        count = sum(path is not None for path in saved)
        print(f"mnistlab: wrote {count} model input{'s' if count != 1 else ''} (28×28 PNG) into "
              f"{escape(args.save_preprocessed)}", file=sys.stderr)
    for argument in empty:
        print(f"mnistlab: no images found in {argument}", file=sys.stderr)
    refused = sum(p.not_a_digit for p in predictions)
    failed = sum(not p.ok for p in predictions) - refused
    if refused:
        print(f"mnistlab: {refused} of {len(predictions)} files hold no digit: not a digit (--reject {args.reject})",
              file=sys.stderr)
    if failed:
        print(f"mnistlab: {failed} of {len(predictions)} files failed", file=sys.stderr)
    return 1 if failed or refused or empty else 0
