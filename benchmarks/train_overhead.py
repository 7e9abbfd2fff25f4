"""What does `mnistlab train` cost besides its training?

The target: the command's wall time minus its training seconds (as its metrics.json records them,
evaluations excluded) at most 2.0× a bare `python -c "import torch"`, timed in the same run (aim
1.5×). Both are fresh processes; each is timed `--tries` times and the medians are compared, so a
busy moment of a shared machine weighs less. The run is the default model, bundled MNIST, a short
run, with everything the command writes (checkpoint, curves.png, report.html).

    python benchmarks/train_overhead.py
    python benchmarks/train_overhead.py --tries 5 --epochs 1 -- --model cnn_small
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wall_seconds(command: list[str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def train_overhead(folder: str, epochs: int, extra: list[str], n: int) -> tuple[float, float]:
    """(wall seconds of `mnistlab train`, of which training) for one fresh run into `folder`."""
    out = Path(folder) / f"run-{n}"
    command = [sys.executable, "-m", "mnistlab", "train", "--epochs", str(epochs), "--no-progress",
               "--out", str(out), *extra]
    wall = wall_seconds(command, folder)
    metrics = json.loads((out / "metrics.json").read_text())
    return wall, metrics["train_seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=3, help="fresh processes of each kind (default: 3)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the training run (default: 1)")
    parser.add_argument("extra", nargs="*", help="more `mnistlab train` flags, after --")
    args = parser.parse_args(argv)
    imports, overheads = [], []
    with tempfile.TemporaryDirectory() as folder:
        for n in range(args.tries):  # interleaved, so that both kinds meet the same moments of a busy machine
            imports.append(wall_seconds([sys.executable, "-c", "import torch"], folder))
            wall, training = train_overhead(folder, args.epochs, args.extra, n)
            overheads.append(wall - training)
            print(f"try {n + 1}: import torch {imports[-1]:.2f} s; mnistlab train {wall:.2f} s, of which training "
                  f"{training:.2f} s: {overheads[-1]:.2f} s besides ({overheads[-1] / imports[-1]:.2f}×)")
    torch_s, overhead_s = statistics.median(imports), statistics.median(overheads)
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores{load}")
    print(f"median: import torch {torch_s:.2f} s; mnistlab train besides training {overhead_s:.2f} s; "
          f"ratio {overhead_s / torch_s:.2f}× (target ≤ 2.0×, aim 1.5×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
