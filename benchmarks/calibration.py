"""Is a model's confidence the probability that it is right? The expected calibration error, before and after.

For each model, its answers on MNIST's test set and on the UCI digits (scikit-learn's `load_digits`,
drawn as `benchmarks/outside_mnist.py` draws them and read through `mnistlab.predict`'s preprocessing)
are measured twice: at temperature 1 (the softmax as trained) and at the temperature its config.json
records (`Checkpoint.probabilities`, what every command answers with). The ECE has 15 equal-width
confidence bins (`mnistlab.calibration.ECE_BINS`); the accuracy is printed too, to show that the
temperature never changes an answer. It needs scikit-learn (the `bench` extra).

    python benchmarks/calibration.py pretrained:cnn pretrained:cnn_small pretrained:mlp
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
from datetime import date

import numpy as np
import torch

import mnistlab
from mnistlab import predict
from mnistlab.calibration import expected_calibration_error
from mnistlab.data import dataset_dir, load_mnist
from outside_mnist import uci_digits


def at_temperature_1(checkpoint: mnistlab.Checkpoint) -> mnistlab.Checkpoint:
    """The same model without its calibration record: it answers with softmax(logits)."""
    return dataclasses.replace(checkpoint, config={k: v for k, v in checkpoint.config.items() if k != "calibration"})


def mnist_test(checkpoint: mnistlab.Checkpoint, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, ECE) on MNIST's test images as they are (no preprocessing, as `evaluate` reads them)."""
    probabilities = np.concatenate([checkpoint.probabilities(images[i:i + 1000].astype(np.float32) / 255)
                                    for i in range(0, len(images), 1000)])
    return float((probabilities.argmax(1) == labels).mean()), expected_calibration_error(probabilities, labels)


def uci(checkpoint: mnistlab.Checkpoint, images: list, labels: np.ndarray) -> tuple[float, float, int]:
    """(accuracy, ECE, images that failed) on the UCI digits, through `predict`'s preprocessing; every digit
    answered (`reject="off"`), so that the calibration alone is measured."""
    predictions = predict(checkpoint, images, batch_size=512, reject="off", progress=False)
    read = [i for i, p in enumerate(predictions) if p.ok]
    probabilities = np.array([predictions[i].probabilities for i in read])
    accuracy = float((probabilities.argmax(1) == labels[read]).sum() / len(labels))  # a failure counts as wrong
    return accuracy, expected_calibration_error(probabilities, labels[read]), len(labels) - len(read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="MODEL", help="run folders or pretrained:NAME")
    args = parser.parse_args()
    test = load_mnist(dataset_dir("mnist", None, False)[0], "mnist").test
    test_images, test_labels = test.images.numpy(), test.labels.numpy()
    uci_images, uci_labels = uci_digits()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {date.today()}; "
          f"ECE over 15 equal-width bins; MNIST test 10,000 digits, UCI {len(uci_labels):,} digits\n")
    print("| model | temperature | MNIST test accuracy | MNIST test ECE before → after | UCI accuracy "
          "| UCI ECE before → after |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        calibrated = mnistlab.load_checkpoint(name, device="cpu")
        raw = at_temperature_1(calibrated)
        (acc, ece_after), (acc_raw, ece_before) = (mnist_test(m, test_images, test_labels) for m in (calibrated, raw))
        (uci_acc, uci_after, failed), (uci_acc_raw, uci_before, _) = (uci(m, uci_images, uci_labels)
                                                                       for m in (calibrated, raw))
        assert acc == acc_raw and uci_acc == uci_acc_raw, "the temperature changed an answer"
        print(f"| {name} | {calibrated.temperature:.3f} | {acc:.2%} | {ece_before:.2%} → {ece_after:.2%} "
              f"| {uci_acc:.1%} ({failed} unreadable) | {uci_before:.2%} → {uci_after:.2%} |", flush=True)


if __name__ == "__main__":
    main()
