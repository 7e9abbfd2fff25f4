"""The datasets benchmark: test accuracy and training seconds of three recipes on Fashion-MNIST (and KMNIST).

Each dataset is found as `--dataset` finds it (Fashion-MNIST: Debian's dataset-fashion-mnist
folder, every file's content checked against its pinned SHA-256; else the download cache), or read
from `--data-dir`; then each recipe trains on its 60,000 training images with the dataset's own
normalisation, and is scored on its 10,000 test images:

  mlp / classic      the seed's recipe: 784-128-10 ReLU, Adam lr 1e-3, batch 64, 5 epochs
  cnn_small / fast   one epoch of the small CNN: the quickest recipe
  cnn / best         the strongest model and recipe mnistlab has (see benchmarks/frontier.py)

KMNIST has no Debian package: without a network its download fails with mnistlab's one-line error,
and nothing is trained. The load average is printed before and after each run: the machine may be shared.

    python benchmarks/datasets.py                                   # Fashion-MNIST, every recipe, seed 1
    python benchmarks/datasets.py --seeds 1 2 3 --json datasets.json
    python benchmarks/datasets.py --only mlp-classic --train-limit 5000   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from frontier import machine  # benchmarks/ is on sys.path: the script's own folder
from mnistlab.data import dataset_dir
from mnistlab.dataset_info import DataError, get_dataset
from mnistlab.recipes import recipe_settings
from mnistlab.training import TrainConfig, train_run

RECIPES = {"mlp-classic": ("mlp", "classic"), "cnn_small-fast": ("cnn_small", "fast"), "cnn-best": ("cnn", "best")}


def run_one(dataset: str, key: str, seed: int, train_limit: int | None, device: str, data_dir: Path | None) -> dict:
    """Train one recipe on one dataset with one seed; its test accuracy, seconds, and the load around it."""
    model, recipe = RECIPES[key]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        run = train_run(TrainConfig(model=model, **recipe_settings(model, recipe, dataset=dataset), dataset=dataset,
                                seed=seed, device=device, train_limit=train_limit,
                                data_dir=str(data_dir) if data_dir else None, out=f"{tmp}/run", progress=False))
        source = json.loads((run.dir / "config.json").read_text())["dataset"]["source"]
    return {"dataset": dataset, "recipe": key, "seed": seed, "test_acc": run.final.test_acc,
            "train_seconds": run.final.train_seconds, "wall_seconds": run.wall_seconds, "device": run.device,
            "load_before": load_before, "load_after": os.getloadavg()[0], "source": source}


def markdown(results: list[dict]) -> str:
    lines = ["| dataset | model / recipe | test accuracy (per seed) | training s (per seed) | load before, after |",
             "|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for result in results:
        groups.setdefault((result["dataset"], result["recipe"]), []).append(result)
    for (dataset, key), rows in groups.items():
        accs = ", ".join(f"{row['test_acc']:.2%}" for row in rows)
        mean = sum(row["test_acc"] for row in rows) / len(rows)
        seconds = ", ".join(f"{row['train_seconds']:.0f}" for row in rows)
        loads = "; ".join(f"{row['load_before']:.1f}, {row['load_after']:.1f}" for row in rows)
        lines.append(f"| {get_dataset(dataset).title} | {' / '.join(RECIPES[key])} | {mean:.2%} ({accs}) | {seconds} "
                     f"| {loads} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["fashion-mnist"],
                        choices=["fashion-mnist", "kmnist", "mnist"], help="(default: fashion-mnist)")
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), help="run only these recipes (default: all)")
    parser.add_argument("--data-dir", type=Path, help="read the (one) dataset's files from this folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="(default: 1)")
    parser.add_argument("--train-limit", type=int, help="train on the first N images only (a smoke run)")
    parser.add_argument("--device", default="auto", help="(default: auto)")
    parser.add_argument("--json", type=Path, help="also write the results here, after every run")
    args = parser.parse_args()
    print(machine(), flush=True)
    try:  # every download first: a missing network stops the benchmark before any training
        for name in args.datasets:
            info = get_dataset(name)
            if not info.bundled and args.data_dir is None:
                dataset_dir(info)
    except DataError as e:
        print(f"datasets benchmark: error: {e}", file=sys.stderr)
        return 1
    results: list[dict] = []
    started = time.perf_counter()
    for name in args.datasets:
        for key in args.only or RECIPES:
            for seed in args.seeds:
                results.append(run_one(name, key, seed, args.train_limit, args.device, args.data_dir))
                last = results[-1]
                print(f"  {name} {key} seed {seed}: {last['test_acc']:.2%}, {last['train_seconds']:.1f} s training "
                      f"on {last['device']}, load {last['load_before']:.1f} before, {last['load_after']:.1f} after; "
                      f"read from {last['source']}", flush=True)
                if args.json:
                    args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=2) + "\n")
    print(f"\n{machine()}; {time.perf_counter() - started:.0f} s in all\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
