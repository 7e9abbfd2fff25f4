"""Time what `mnistlab train` adds after training: each figure drawn and written as PNG, and report.html.

A run folder is needed for the report (its metrics.json); without `--run` a quick one is trained first
(1 epoch on 5,000 images: the figures take as long as for a full run). Each figure is built and
saved `--repeat` times and the medians are printed, in milliseconds of wall-clock and of this
process's CPU time (the steadier of the two on a shared machine), with the PNG's size. The last
lines are what `mnistlab train` adds: curves.png plus report.html, drawn from predictions in memory,
the first time in the process (fonts and caches still cold, as in `mnistlab train`) and then warm.

    python benchmarks/figures_speed.py [--run RUN] [--repeat 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import platform
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib
import torch

import mnistlab
from mnistlab.plots import save_figure
from mnistlab.report import load_metrics, write_report


def median_ms(work: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall-clock and CPU milliseconds of `repeat` calls of `work`."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        work()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run folder (default: train a quick one in a temporary folder)")
    parser.add_argument("--repeat", type=int, default=5, help="timings per figure; the median is printed")
    parser.add_argument("--profile", action="store_true", help="also print cProfile's top entries for the report")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="figures-speed-"))
    run = Path(args.run) if args.run else mnistlab.train(mnistlab.TrainConfig(
        epochs=1, train_limit=5000, device="cpu", out=str(scratch / "run"), progress=False)).dir
    checkpoint = mnistlab.load_checkpoint(run, device="cpu")
    test = mnistlab.load_mnist().test
    predictions = mnistlab.compute_predictions(checkpoint.model, test, checkpoint.mean, checkpoint.std)
    epochs = load_metrics(run)["epochs"]

    figures = {
        "curves": lambda: mnistlab.training_curves(epochs),
        "pixel view": lambda: mnistlab.pixel_view(test.images[0], int(test.labels[0])),
        "prediction grid": lambda: mnistlab.prediction_grid(predictions),
        "confusion matrix": lambda: mnistlab.confusion_matrix(predictions),
        "mistakes": lambda: mnistlab.mistakes_gallery(predictions),
    }
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, matplotlib {matplotlib.__version__}; median of {args.repeat}")
    report = scratch / "report.html"

    def after_training() -> None:  # what `mnistlab train` runs once the run folder is saved
        save_figure(mnistlab.training_curves(epochs), scratch / "curves.png")
        write_report(run, predictions, out=report)

    first = median_ms(after_training, 1)
    print(f"{'':<22} {'wall ms':>8} {'CPU ms':>8} {'PNG KiB':>8}")
    for name, build in figures.items():
        path = scratch / f"{name.replace(' ', '-')}.png"
        wall, cpu = median_ms(lambda build=build, path=path: save_figure(build(), path), args.repeat)
        print(f"{name:<22} {wall:>8.0f} {cpu:>8.0f} {path.stat().st_size / 1024:>8.0f}")
    wall, cpu = median_ms(lambda: write_report(run, predictions, out=report), args.repeat)
    print(f"{'report.html':<22} {wall:>8.0f} {cpu:>8.0f} {report.stat().st_size / 1024:>8.0f}")
    print(f"{'train adds, first time':<22} {first[0]:>8.0f} {first[1]:>8.0f}   (curves.png + report.html)")
    wall, cpu = median_ms(after_training, args.repeat)
    print(f"{'train adds, warm':<22} {wall:>8.0f} {cpu:>8.0f}")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(after_training)
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(40)
        print(text.getvalue())


if __name__ == "__main__":
    main()
