"""Does `mnistlab finetune` teach a model someone's handwriting, cheaply, without forgetting MNIST?

The handwriting is not MNIST's: the UCI "optical recognition of handwritten digits" set that
scikit-learn ships (`load_digits`, 1,797 digits by 43 writers, drawn 64×64 as in
`benchmarks/outside_mnist.py`). It records no writer per digit, so its 43 writers stand in for one
"writer" whose style differs from MNIST's: for each seed, 10 images of each digit (100) are drawn as
the labelled folder a user would collect (DIR/0/ … DIR/9/, PNG files), and the other 1,697 are
"that writer's other images". Each fine-tune runs the real command in a child process
(`mnistlab finetune BASE --images DIR --out RUN --holdout 0`: all 100 are trained on, the other
images measure it), timed by the child's own CPU seconds (user + system, all threads) and wall
seconds. The error on the other images before and after, and MNIST's test accuracy before and after
(from the run's config.json), are printed as a Markdown table.

    python benchmarks/finetune.py runs/demo /work/pretrained-runs/cnn --seeds 3
    python benchmarks/finetune.py runs/demo --per-digit 20      # 200 images
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mnistlab
from mnistlab.data import normalize
from mnistlab.prediction import predict
from outside_mnist import uci_digits


def write_folder(images: list, labels: np.ndarray, picked: np.ndarray, folder: Path) -> None:
    """The picked images as a labelled folder, as `serve --collect` would leave it."""
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True)
    for index in picked:
        images[index].save(folder / str(labels[index]) / f"uci-{index:04d}.png")


def pick(labels: np.ndarray, per_digit: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(labels == d), per_digit, replace=False) for d in range(10)])


@torch.inference_mode()
def error_on(run: str | Path, pixels: torch.Tensor, labels: np.ndarray) -> float:
    """Error of a run's model on preprocessed pixels (float (N, 28, 28)): what `predict` would answer."""
    checkpoint = mnistlab.load_checkpoint(run, device="cpu")
    logits = checkpoint.model(normalize(pixels, checkpoint.mean, checkpoint.std))
    return float((logits.argmax(1).numpy() != labels).mean())


def child_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def finetune(base: str, folder: Path, out: Path, extra: list[str], threads: int | None) -> tuple[float, float]:
    """Run the command (with `threads`: as OMP_NUM_THREADS); return its (CPU seconds, wall seconds)."""
    command = [sys.executable, "-m", "mnistlab", "finetune", base, "--images", str(folder), "--out", str(out),
               "--holdout", "0", "--no-progress", *extra]
    cpu, wall = child_seconds(), time.perf_counter()
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    cpu, wall = child_seconds() - cpu, time.perf_counter() - wall
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="base models: run folders (or pretrained:NAME)")
    parser.add_argument("--seeds", type=int, default=3, help="draws of the labelled images (default: 3)")
    parser.add_argument("--per-digit", type=int, default=10, help="labelled images of each digit (default: 10)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the command (default: torch's choice)")
    parser.add_argument("--flags", default="", help="more flags for `mnistlab finetune`, e.g. '--epochs 20'")
    args = parser.parse_args()
    images, labels = uci_digits()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load {os.getloadavg()[0]:.1f}; {len(images):,} UCI digits, {args.per_digit} a digit labelled, "
          f"flags: {args.flags or '(defaults)'}, threads: {args.threads or 'default'}\n")
    print("| base | seed | other images' error before → after | ratio | MNIST before → after | CPU s | wall s |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        base = mnistlab.load_model(run)
        # Every image preprocessed once, as `predict` does for this model; the models are then run on the pixels.
        pixels = torch.from_numpy(np.stack([p.image for p in predict(base, images, batch_size=512, progress=False)]))
        ratios, cpus = [], []
        for seed in range(args.seeds):
            picked = pick(labels, args.per_digit, seed)
            others = np.setdiff1d(np.arange(len(labels)), picked)
            with tempfile.TemporaryDirectory() as tmp:
                write_folder(images, labels, picked, Path(tmp, "mine"))
                cpu, wall = finetune(run, Path(tmp, "mine"), Path(tmp, "run"), args.flags.split(), args.threads)
                before = error_on(run, pixels[others], labels[others])
                after = error_on(Path(tmp, "run"), pixels[others], labels[others])
                record = json.loads(Path(tmp, "run", "config.json").read_text())["finetune"]
            ratios.append(after / before)
            cpus.append(cpu)
            print(f"| {run} ({base.model_name}) | {seed} | {before:.1%} → {after:.1%} | {after / before:.2f} "
                  f"| {record['before']['test_acc']:.2%} → {record['after']['test_acc']:.2%} "
                  f"| {cpu:.1f} | {wall:.1f} |", flush=True)
        print(f"| {run}: median | | | {statistics.median(ratios):.2f} | | {statistics.median(cpus):.1f} | |",
              flush=True)


if __name__ == "__main__":
    main()
