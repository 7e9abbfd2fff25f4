"""How well do models read real handwriting from outside MNIST?

MNIST's test set shares its writers' population with the training set. The UCI "optical
recognition of handwritten digits" set, which scikit-learn ships as `load_digits` (no download),
holds 1,797 digits by 43 other people, written on forms, scanned at 32×32 and reduced to 8×8
blocks of 0-16 ink counts. Each digit is drawn as a 64×64 grey image (dark ink on white paper,
as a scan would be; bicubic enlargement of the 8×8 grid), then classified twice:

(a) naive resize: the image resized to 28×28, inverted to white on black, normalised, classified;
(b) mnistlab: `mnistlab.predict`, the same preprocessing as `mnistlab predict`.

The 8×8 grid is coarse: strokes come out blurred and blocky, so this is a hard, real test of
reading other people's digits, not a stand-in for sharp photos. It needs scikit-learn (the
`bench` extra).

    python benchmarks/outside_mnist.py runs/demo runs/cnn
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch
from PIL import Image

import mnistlab
from mnistlab import predict
from mnistlab.data import normalize

SIZE = 64  # pixels of each drawn digit: a small scan


def uci_digits() -> tuple[list[Image.Image], np.ndarray]:
    """The 1,797 UCI digits as SIZE×SIZE dark-on-light images, and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [Image.fromarray((255 - counts / 16 * 255).astype(np.uint8)).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
              for counts in digits.images]  # (8, 8) ink counts 0-16 → paper 255, ink 0
    return images, digits.target


@torch.inference_mode()
def naive_accuracy(checkpoint: mnistlab.Checkpoint, images: list[Image.Image], labels: np.ndarray) -> float:
    pixels = np.stack([255 - np.asarray(image.resize((28, 28), Image.Resampling.BILINEAR)) for image in images])
    x = normalize(torch.from_numpy(pixels), checkpoint.mean, checkpoint.std).to(checkpoint.device)
    return float((checkpoint.model(x).argmax(1).cpu().numpy() == labels).mean())


def mnistlab_accuracy(checkpoint: mnistlab.Checkpoint, images: list[Image.Image],
                      labels: np.ndarray) -> tuple[float, int]:
    """Accuracy over every image (an image that fails counts as wrong), and how many failed."""
    predictions = predict(checkpoint, images, batch_size=512, progress=False)
    right = sum(p.ok and p.label == label for p, label in zip(predictions, labels, strict=True))
    return right / len(labels), sum(not p.ok for p in predictions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders (checkpoints) to measure")
    args = parser.parse_args()
    images, labels = uci_digits()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}; "
          f"{len(images):,} UCI digits (43 writers), drawn {SIZE}×{SIZE} dark on light\n")
    print("| model | naive resize | mnistlab | failed |")
    print("|---|---|---|---|")
    for run in args.runs:
        checkpoint = mnistlab.load_checkpoint(run, device="cpu")
        accuracy, failed = mnistlab_accuracy(checkpoint, images, labels)
        print(f"| {run} ({checkpoint.model_name}, {checkpoint.metrics.get('test_acc', float('nan')):.2%} on MNIST) "
              f"| {naive_accuracy(checkpoint, images, labels):.1%} | {accuracy:.1%} | {failed} |", flush=True)


if __name__ == "__main__":
    main()
