"""`mnistlab predict` with a checkpoint (PyTorch) versus its ONNX export (onnxruntime), same machine, same run.

It exports RUN to ONNX (uint8 input, the default) into a temporary folder, writes N MNIST test
digits as PNG files beside it, and times, each as a whole command in a subprocess (median of
--repeats runs, the two paths alternating so that neither gets a warmer machine):

1. `mnistlab predict MODEL FOLDER` on the N files;
2. start-up: `mnistlab predict MODEL one.png` on one file;
3. import: `python -c "import mnistlab.prediction, mnistlab.checkpoints"` against
   `python -c "import mnistlab.prediction, mnistlab.onnx_model, onnxruntime"`: what each path loads
   (a whole process: at exit, Python collects what torch made, which `mnistlab` itself skips).

It also checks that both paths give the same labels on the N files, and that the ONNX command
never imported torch. Without RUN it trains the default MLP into a temporary folder (~10 s).

    python benchmarks/export_speed.py runs/demo
    python benchmarks/export_speed.py runs/demo -n 1000 --repeats 5
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

from PIL import Image

import mnistlab
from mnistlab.data import load_mnist
from mnistlab.export import ExportConfig, export

# A Python that refuses to import torch, then runs the command: proof that the ONNX path does without it.
NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(name + " is blocked")
sys.meta_path.insert(0, NoTorch())
from mnistlab.cli import main
sys.exit(main())
"""
IMPORTS = {
    "checkpoint": "import mnistlab.prediction, mnistlab.checkpoints",
    "onnx": "import mnistlab.prediction, mnistlab.onnx_model, onnxruntime",
}


def seconds(argv: list[str]) -> tuple[float, str]:
    """Wall time of one command, and its stdout; a failure other than exit code 1 (a bad file) stops the run."""
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 1):
        sys.exit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return elapsed, result.stdout


def predict_command(model: Path, *images: str | Path) -> list[str]:
    if model.suffix == ".onnx":
        return [sys.executable, "-c", NO_TORCH, "predict", str(model), *map(str, images)]
    return [sys.executable, "-m", "mnistlab", "predict", str(model), *map(str, images)]


def median_times(commands: dict[str, list[str]], repeats: int) -> dict[str, list[float]]:
    """Each command `repeats` times, in turns: the paths share the machine's state alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, argv in commands.items():
            times[name].append(seconds(argv)[0])
    return times


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", help="the run folder (default: train the default MLP into a temporary one)")
    parser.add_argument("-n", type=int, default=1000, help="MNIST test digits written as PNG files (default: 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (default: 5)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mnistlab-export-speed-") as scratch:
        scratch = Path(scratch)
        run = Path(args.run) if args.run else mnistlab.train(mnistlab.TrainConfig(out=str(scratch / "run"))).dir
        onnx_file = export(run, ExportConfig(out=str(scratch / "model.onnx")))
        folder = scratch / "digits"
        folder.mkdir()
        for i, pixels in enumerate(load_mnist().test.images[:args.n].numpy()):
            Image.fromarray(pixels).save(folder / f"{i:05d}.png")
        one = folder / "00000.png"
        models = {"checkpoint": run, "onnx": onnx_file}

        labels = {name: [row.get("label") for row in json.loads(seconds([*predict_command(m, folder), "--json"])[1])]
                  for name, m in models.items()}
        agree = sum(a == b for a, b in zip(labels["checkpoint"], labels["onnx"], strict=True))
        batch = median_times({name: predict_command(m, folder) for name, m in models.items()}, args.repeats)
        start = median_times({name: predict_command(m, one) for name, m in models.items()}, args.repeats)
        imports = median_times({name: [sys.executable, "-c", code] for name, code in IMPORTS.items()}, args.repeats)

    import onnxruntime
    import torch

    print(f"machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores; "
          f"python {platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    print(f"run: {run}; {args.n} MNIST test digits as PNG files; median of {args.repeats} runs each; "
          f"labels agree on {agree} of {args.n}")
    rows = [(f"`mnistlab predict` on {args.n} files", batch), ("start-up: `mnistlab predict` on 1 file", start),
            ("import of the prediction path", imports)]
    print(f"{'':40}  {'checkpoint':>10}  {'onnx':>10}  {'onnx / checkpoint':>17}")
    for title, times in rows:
        c, o = statistics.median(times["checkpoint"]), statistics.median(times["onnx"])
        print(f"{title:40}  {c:9.2f}s  {o:9.2f}s  {o / c:17.2f}")
    per_image = {name: (statistics.median(batch[name]) - statistics.median(start[name])) / max(args.n - 1, 1)
                 for name in models}
    print(f"per image, past start-up: checkpoint {per_image['checkpoint'] * 1e3:.2f} ms, "
          f"onnx {per_image['onnx'] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
