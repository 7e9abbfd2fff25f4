"""Calibrate the shipped pretrained weights in place and rewrite their SHA-256 pins.

`mnistlab train` holds the last `--calibration-size` (5,000) training images out of training and fits
the temperature on them, so a model that `make pretrained` retrains carries its calibration already.
The weights shipped now were trained on all 60,000 MNIST training images, before that hold-out existed:
this fits each one's temperature on the last 5,000 of them, which the model has seen (its record says
so), and writes it into the folder's config.json and metrics.json as "calibration"; then it fits the
"not a digit" thresholds on the same images' calibrated answers, as `mnistlab train` does, into config.json
as "reject". The weights do not change. Run it again and it fits again from the weights, at temperature 1.

    python scripts/calibrate_pretrained.py              # all three
    python scripts/calibrate_pretrained.py cnn mlp      # some of them
    python scripts/calibrate_pretrained.py --thresholds-only   # keep each temperature; refit the thresholds

`--thresholds-only` is for a change to the rule's score: each model keeps its recorded calibration (the
`cnn`'s was fit by its own `mnistlab train`) and gets thresholds fit on the same images' answers at it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from make_pretrained import SHIPPED, TARGET, current_pins, write_pins  # noqa: E402
from mnistlab._io import file_sha256, json_text  # noqa: E402
from mnistlab.calibration import Calibration, calibrate_held_out, scaled_softmax, split_logits, split_off  # noqa: E402
from mnistlab.checkpoints import Checkpoint, load_checkpoint  # noqa: E402
from mnistlab.config import TrainConfig  # noqa: E402
from mnistlab.data import Split, dataset_dir, load_mnist  # noqa: E402
from mnistlab.rejection import fit_rule, score_temperature_of  # noqa: E402

HELD_OUT = TrainConfig.calibration_size  # the last images, as `mnistlab train` holds them out


def shipped_and_held_out(name: str) -> tuple[Checkpoint, Split, int]:
    """`pretrained:NAME` (its files checked against the pins), the last HELD_OUT MNIST training images, and how
    many training images there are."""
    checkpoint = load_checkpoint(f"pretrained:{name}", device="cpu")
    train = load_mnist(dataset_dir("mnist", None, False)[0], "mnist").train
    return checkpoint, split_off(train, HELD_OUT)[1], len(train)


def update_record(name: str, file: str, **fields: dict) -> None:
    """Set `fields` in the JSON `file` of the model's folder."""
    path = TARGET / name / file
    record = json.loads(path.read_text(encoding="utf-8"))
    record.update(fields)
    path.write_text(json_text(record), encoding="utf-8")


def calibrate_shipped(name: str) -> Calibration:
    """Fit `pretrained:NAME`'s temperature, then its "not a digit" thresholds, on the last HELD_OUT MNIST training
    images; write them into its folder."""
    checkpoint, held_out, train_images = shipped_and_held_out(name)
    calibration, reject = calibrate_held_out(checkpoint.model, held_out, checkpoint.mean, checkpoint.std, (
        f"the last {HELD_OUT:,} of the {train_images:,} MNIST training images, which this model was trained on "
        f"(it saw all {train_images:,}; `mnistlab train` holds them out)"),
        score_temperature=score_temperature_of(checkpoint.config))
    update_record(name, "config.json", calibration=calibration.to_record(), reject=reject)
    update_record(name, "metrics.json", calibration=calibration.to_record())
    return calibration


def refit_thresholds(name: str) -> dict:
    """Fit `pretrained:NAME`'s "not a digit" thresholds on the last HELD_OUT MNIST training images' answers at its
    recorded temperature; write them into its config.json. Returns the record."""
    checkpoint, held_out, _ = shipped_and_held_out(name)
    logits = split_logits(checkpoint.model, held_out, checkpoint.mean, checkpoint.std)
    reject = fit_rule(scaled_softmax(logits, checkpoint.temperature).numpy(), checkpoint.temperature,
                      score_temperature_of(checkpoint.config)).record()
    update_record(name, "config.json", reject=reject)
    return reject


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pins = current_pins()
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"models: {', '.join(pins)} (default: all)")
    parser.add_argument("--thresholds-only", action="store_true",
                        help="keep each model's temperature; fit only its \"not a digit\" thresholds")
    args = parser.parse_args()
    names = args.names or list(pins)
    unknown = [name for name in names if name not in pins]
    if unknown:
        parser.error(f"no pretrained model named {', '.join(unknown)}; choose from {', '.join(pins)}")
    for name in names:
        if args.thresholds_only:
            reject = refit_thresholds(name)
            message = f"thresholds {reject['thresholds']}, score at temperature {reject.get('temperature')}"
        else:
            calibration = calibrate_shipped(name)
            message = (f"temperature {calibration.temperature:.4f}, ECE on the held-out images "
                       f"{calibration.ece_before:.2%} → {calibration.ece_after:.2%}")
        pins[name] = {file: file_sha256(TARGET / name / file) for file in SHIPPED}
        write_pins(pins)  # after each model: the next one is loaded through the pins
        print(f"pretrained:{name}: {message}", flush=True)


if __name__ == "__main__":
    main()
