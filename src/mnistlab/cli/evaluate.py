"""`mnistlab evaluate` and `mnistlab models`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._args import add_data_flags
from ._output import model_shown, say

if TYPE_CHECKING:
    from ..classifier import Classifier


def add_commands(commands: argparse._SubParsersAction) -> None:
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


def cmd_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..model_loading import load_model

    if args.json and not args.images:
        parser.error("--json goes with --images")
    where = f"your images in {args.images}" if args.images else "the test set of its dataset"
    say(f"evaluating {args.checkpoint} on {where}...")
    model = load_model(args.checkpoint, device=args.device)
    name = model_shown(args.checkpoint, model.path)
    if args.images:  # an exported file's path imports no torch
        return evaluate_images(model, name, args.images, args.json)
    from ..downloads import describe_source
    from ..runs import evaluate_test_set

    result = evaluate_test_set(model, dataset=args.dataset, data_dir=args.data_dir, batch_size=args.test_batch_size)
    info = result.dataset
    print(f"{name}: {model.model_name} ({model.parameter_count:,} parameters) on {result.where}")
    print(f"{info.title} test set, from {describe_source(info, args.data_dir)}")
    print(f"test loss {result.loss:.4f}  test accuracy {result.accuracy:.2%} ({result.correct}/{result.size})")
    if result.refused is not None:
        answered = "" if result.answered_accuracy is None else \
            f"; accuracy of the others {result.answered_accuracy:.2%}"
        print(f"not a digit (--reject normal): {result.refused} of {result.size} test digits refused{answered}")
    recorded = model.metrics.get("test_acc")
    if recorded is not None:
        acc = result.accuracy
        verdict = "reproduced exactly" if recorded == acc else f"differs by {acc - recorded:+.2%}"
        print(f"recorded test accuracy {recorded:.2%}: {verdict}")
        recorded_digests = model.config.get("dataset", {}).get("sha256", {})
        if recorded_digests and any(recorded_digests.get(name) != digest for name, digest in result.digests.items()):
            print("note: the test files differ from the ones this checkpoint was evaluated on")
    return 0


def evaluate_images(model: Classifier, name: str, folder: str, as_json: bool) -> int:
    """`evaluate --images DIR`: accuracy on a folder of labelled images (DIR/0/ … DIR/9/)."""
    import json

    from ..labelled import LabelledError, evaluate_folder, format_folder_evaluation

    score = evaluate_folder(model, folder)
    if as_json:
        print(json.dumps({"checkpoint": str(model.path), "folder": folder, **score.to_dict()}, indent=2))
    else:
        print(f"{name}: {model.model_name} on {folder} ({len(score.images)} images)")
        print(format_folder_evaluation(score))
    if score.accuracy is None:  # the reasons are printed above; an accuracy of 0 of 0 is no result
        raise LabelledError(f"{folder}: none of the {len(score.images)} images could be classified; nothing to score")
    return 0


def cmd_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """A table of the models: name, parameters at the default arguments, the arguments, what it is."""
    from ..models import list_models, summarize_model

    rows = [("model", "parameters", "arguments (defaults)", "description")]
    for name in list_models():
        try:
            summary = summarize_model(name)
            arguments = ", ".join(f"{key}={value!r}" for key, value in summary.arguments.items()) or "-"
            rows.append((name, f"{summary.parameters:,}", arguments, summary.description or "-"))
        except Exception as e:  # one broken plugin model must not hide the others
            rows.append((name, "?", "?", f"cannot be built: {' '.join(str(e).split())[:200]}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for name, n_params, arguments, description in rows:
        print(f"{name:<{widths[0]}}  {n_params:>{widths[1]}}  {arguments:<{widths[2]}}  {description}".rstrip())
    print_pretrained()
    return 0


def print_pretrained() -> None:
    """`models`, after the table: the models with pretrained weights, each with its recorded test accuracy."""
    from ..dataset_info import get_dataset
    from ..errors import MnistlabError
    from ..pretrained import PREFIX, describe, list_pretrained

    print("pretrained weights, used as RUN wherever a run folder is taken (`mnistlab evaluate pretrained:cnn`):")
    width = max((len(PREFIX + name) for name in list_pretrained()), default=0)
    for name in list_pretrained():
        try:
            info = describe(name)
            recipe = f"{info.recipe} recipe" if info.recipe else "own settings"
            title = get_dataset(info.dataset).title
            print(f"  {PREFIX + name:<{width}}  {info.model}, {info.test_acc:.2%} on {title}'s test set "
                  f"({recipe}, seed {info.seed})")
        except MnistlabError as e:  # an altered install: say so on its row, and list the others
            print(f"  {PREFIX + name:<{width}}  unusable: {' '.join(str(e).split())[:200]}")
