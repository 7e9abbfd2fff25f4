"""How well and how fast `mnistlab read` reads handwritten numbers (docs/benchmarks.md, "Reading numbers").

Numbers of 2-7 digits are composed from MNIST *test* digits (never seen in training) by
examples/make_sample_numbers.py's `number_photo`: gaps from overlapping (-10% of a digit's height)
to wide (60%), sizes ±15%, a slanted baseline, dark ink on lit paper, JPEG. Printed: exact-number
accuracy by length and digit accuracy, for `read` and for the naive baseline (connected components,
each cropped from the photo and given to `predict`); then the speed of `read` on a 7-digit photo
against `predict` on a one-digit photo (in-process), and of `mnistlab read` on a folder of photos.
The UCI digits (scikit-learn's `load_digits`) are measured when scikit-learn is installed.

    python benchmarks/read_numbers.py [--per-length 100] [--model pretrained:cnn] [--command-images 1000] [--threads N]
                                      [--temperature T]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

import mnistlab
from mnistlab.calibration import rescale_probabilities
from mnistlab.ink import ink_is_dark, level_background, stretch_contrast, to_grayscale
from mnistlab.preprocessing import INK_THRESHOLD
from mnistlab.reading import READ_WORKING_SIZE, read

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_sample_numbers import number_photo  # noqa: E402

LENGTHS = range(2, 8)


def compose(pool: tuple[list[np.ndarray], np.ndarray], length: int,
            rng: np.random.Generator) -> tuple[Image.Image, str]:
    images, labels = pool
    picked = rng.integers(0, len(images), length)
    photo = number_photo([images[i] for i in picked], rng, gap=rng.uniform(-0.1, 0.6), slant=rng.uniform(-0.1, 0.15),
                         height=int(rng.integers(40, 120)))
    return photo, "".join(str(int(labels[i])) for i in picked)


def naive_read(model: mnistlab.Classifier, photo: Image.Image) -> str:
    """Connected components of the ink, left to right, each cropped from the photo and given to `predict`."""
    gray = to_grayscale(photo, READ_WORKING_SIZE)
    ink = stretch_contrast(level_background(1 - gray if ink_is_dark(gray) else gray))
    components, _ = ndimage.label(ink > INK_THRESHOLD, structure=np.ones((3, 3), bool))
    boxes = [(c.start, c.stop, r.start, r.stop) for r, c in ndimage.find_objects(components)]
    tallest = max(r1 - r0 for _, _, r0, r1 in boxes)
    boxes = sorted(b for b in boxes if b[3] - b[2] >= 0.2 * tallest)
    scale = photo.size[0] / gray.shape[1]
    crops = [photo.crop((round(c0 * scale) - 4, round(r0 * scale) - 4, round(c1 * scale) + 4, round(r1 * scale) + 4))
             for c0, c1, r0, r1 in boxes]
    return "".join(str(p.label) for p in mnistlab.predict(model, crops) if p.ok)


class Tempered:
    """`model` with its probabilities temperature-scaled (softmax(log p / T)), as a calibrated model's are: the
    reading must not depend on how sharp a model's probabilities are."""

    def __init__(self, model: mnistlab.Classifier, factor: float):
        self.model, self.factor = model, factor

    @property
    def temperature(self) -> float:
        return self.model.temperature * self.factor

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return rescale_probabilities(torch.from_numpy(self.model.probabilities(pixels)), self.factor).numpy()

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def accuracy(model: mnistlab.Classifier, pool: tuple, per_length: int, seed: int, name: str) -> None:
    rng = np.random.default_rng(seed)
    print(f"\n{name}: {per_length} numbers per length\nlength  read exact  read digits  naive exact  naive digits")
    exact_means, totals = [], np.zeros(4)
    started = time.perf_counter()
    for length in LENGTHS:
        counts = np.zeros(4)
        for _ in range(per_length):
            photo, truth = compose(pool, length, rng)
            text = read(model, photo)[0].text or ""
            naive = naive_read(model, photo)
            counts += [text == truth, max(0, length - edit_distance(text, truth)) / length,
                       naive == truth, max(0, length - edit_distance(naive, truth)) / length]
        counts /= per_length
        exact_means.append(counts[0])
        totals += counts
        print(f"{length:>6}  {counts[0]:>10.1%}  {counts[1]:>11.1%}  {counts[2]:>11.1%}  {counts[3]:>12.1%}")
    totals /= len(LENGTHS)
    print(f"{'mean':>6}  {totals[0]:>10.1%}  {totals[1]:>11.1%}  {totals[2]:>11.1%}  {totals[3]:>12.1%}"
          f"   ({time.perf_counter() - started:.0f} s)")


def speed(model: mnistlab.Classifier, pool: tuple, repeats: int = 100) -> None:
    """The two calls take turns, so that the machine's changing load falls on both alike."""
    rng = np.random.default_rng(7)
    seven = _jpeg(compose(pool, 7, rng)[0])
    one = _jpeg(compose(pool, 1, rng)[0])
    calls = {"read, 7 digits": (read, seven), "predict, 1 digit": (mnistlab.predict, one)}
    for call, data in calls.values():  # warm-up
        call(model, data)
    runs: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (call, data) in calls.items():
            started = time.perf_counter()
            call(model, data)
            runs[name].append(time.perf_counter() - started)
    timings = {name: float(np.median(times)) for name, times in runs.items()}
    for name, seconds in timings.items():
        print(f"{name:<18} {seconds * 1000:6.1f} ms (median of {repeats}, JPEG bytes → answer)")
    print(f"ratio: {timings['read, 7 digits'] / timings['predict, 1 digit']:.2f}×")


def command_time(model_name: str, pool: tuple, count: int, threads: int | None) -> None:
    rng = np.random.default_rng(11)
    with tempfile.TemporaryDirectory() as folder:
        for n in range(count):
            compose(pool, int(rng.integers(2, 8)), rng)[0].save(Path(folder) / f"{n:04d}.jpg", quality=85)
        started = time.perf_counter()
        env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        done = subprocess.run([sys.executable, "-m", "mnistlab", "read", model_name, folder, "--json"],
                              capture_output=True, text=True, env=env)
        took = time.perf_counter() - started
    print(f"\nmnistlab read {model_name} DIR --json on {count} number photos: {took:.1f} s "
          f"({took / count * 1000:.0f} ms a photo, exit code {done.returncode})")


def _jpeg(photo: Image.Image) -> bytes:
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pretrained:cnn", help="(default: pretrained:cnn)")
    parser.add_argument("--per-length", type=int, default=100, metavar="N", help="numbers per length (default: 100)")
    parser.add_argument("--command-images", type=int, default=1000, metavar="N",
                        help="photos for the command's timing; 0 skips it (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads in-process (default: torch's own)")
    parser.add_argument("--temperature", type=float, metavar="T",
                        help="read with the model's probabilities temperature-scaled by T (accuracy only)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = mnistlab.load_model(args.model)
    name = args.model
    if args.temperature:
        model, name = Tempered(model, args.temperature), f"{args.model} at temperature {args.temperature}"
    test = mnistlab.load_mnist().test
    mnist = ([image.numpy() for image in test.images], test.labels.numpy())
    if args.per_length:
        accuracy(model, mnist, args.per_length, args.seed, f"MNIST test digits, {name}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("\nUCI digits: not measured (scikit-learn is not installed: pip install scikit-learn)")
    else:
        uci = load_digits()
        images = [np.asarray(Image.fromarray((d * 255 / 16).astype(np.uint8)).resize((28, 28),
                                                                                 Image.Resampling.BICUBIC))
                  for d in uci.images]
        if args.per_length:
            accuracy(model, (images, uci.target), args.per_length, args.seed, f"UCI digits, {name}")
    if args.temperature:
        return
    speed(model, mnist)
    if args.command_images:
        command_time(args.model, mnist, args.command_images, args.threads)


if __name__ == "__main__":
    main()
