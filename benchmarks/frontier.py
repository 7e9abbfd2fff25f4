"""The frontier benchmark: mnistlab's models and recipes beside two references, in one run on one machine.

Each row trains on the 60,000 MNIST training images and reports the test accuracy (mean and sample
standard deviation over the seeds), the training seconds (evaluations excluded) and the training
seconds until the test accuracy first reached 99.0% (mean over the seeds that reached it):

  mnistlab rows   `mnistlab.train` with the model's recipe (mlp classic and best, cnn_small fast, cnn best),
                  evaluated on the test set after each epoch, and cnn_small every 40 steps (the time to 99%
                  is read at the first evaluation that reaches it).
  scikit-learn    `MLPClassifier` with the seed's settings: 784-128-10 ReLU, Adam lr 1e-3, batch 64,
                  5 epochs, no L2 penalty (alpha=0), the same normalised pixels.
  torch example   the PyTorch examples' MNIST CNN (pytorch/examples mnist/main.py): its 1.2M-parameter
                  net, Adadelta lr 1.0, StepLR(step 1, gamma 0.7), batch 64, 14 epochs, dropout; re-created
                  here over the same in-memory tensors as mnistlab (no DataLoader), evaluated after each epoch.

    python benchmarks/frontier.py                       # everything, 3 seeds (about an hour on 2 CPU cores)
    python benchmarks/frontier.py --example-seeds 1 --example-epochs 2 --json frontier.json   # about 30 minutes
    python benchmarks/frontier.py --only cnn-best --cnn-epochs 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import mnistlab
from mnistlab.data import MNIST_MEAN, MNIST_STD, load_mnist, normalize
from mnistlab.recipes import recipe_settings
from mnistlab.training import TrainConfig, evaluate, time_to_accuracy, train_run

TARGET = 0.99


@dataclass
class Result:
    """One seed of one row."""

    test_acc: float
    train_seconds: float
    time_to_target: float | None


@dataclass
class Row:
    name: str
    what: str
    params: int = 0
    results: list[Result] = field(default_factory=list)

    def cells(self) -> list[str]:
        accs = [100 * r.test_acc for r in self.results]
        spread = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        reached = [r.time_to_target for r in self.results if r.time_to_target is not None]
        to_target = "not reached" if not reached else f"{statistics.mean(reached):.1f}"
        if reached and len(reached) < len(self.results):
            to_target += f" ({len(reached)} of {len(self.results)} seeds)"
        per_seed = ", ".join(f"{a:.2f}" for a in accs)
        return [self.name, self.what, f"{self.params:,}", str(len(self.results)),
                f"{statistics.mean(accs):.2f}%{spread}", per_seed,
                f"{statistics.mean(r.train_seconds for r in self.results):.1f}", to_target]


HEADER = ["model / recipe", "settings", "parameters", "seeds", "test accuracy (mean ± sd)", "per seed (%)",
          "training s (mean)", "s to 99.0% (mean)"]


# --- mnistlab rows -------------------------------------------------------------------------------------------------

def mnistlab_row(model: str, recipe: str, seeds: list[int], eval_every: int | None, train_limit: int | None,
                 **overrides) -> Row:
    settings = recipe_settings(model, recipe, **overrides)
    what = (f"{settings['optimizer']} lr {settings['lr']:g} {settings['schedule']}, wd {settings['weight_decay']:g}, "
            f"ls {settings['label_smoothing']:g}, {settings['epochs']} ep × batch {settings['batch_size']}, "
            f"augment {settings['augment']:g}" + (f" + elastic {settings['elastic']:g}" if settings["elastic"] else "")
            + (f"; eval every {eval_every} steps" if eval_every else "; eval each epoch"))
    row = Row(f"{model} / {recipe}", what)
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            run = train_run(TrainConfig(model=model, **settings, seed=seed, eval_every=eval_every, out=f"{tmp}/run",
                                    train_limit=train_limit, progress=False))
        row.params = sum(p.numel() for p in run.model.parameters())
        row.results.append(Result(run.final.test_acc, run.final.train_seconds, time_to_accuracy(run.history, TARGET)))
        print(f"  {row.name} seed {seed}: {run.final.test_acc:.2%}, {run.final.train_seconds:.1f} s training, "
              f"{sum(r.eval_seconds for r in run.history):.1f} s evaluating", flush=True)
    return row


# --- scikit-learn's MLPClassifier ----------------------------------------------------------------------------------

def sklearn_row(seeds: list[int], train_limit: int | None) -> Row:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    data = load_mnist()
    train_split = data.train.subset(train_limit or len(data.train))
    x_train = normalize(train_split.images).flatten(1).numpy()
    x_test = normalize(data.test.images).flatten(1).numpy()
    y_train, y_test = train_split.labels.numpy(), data.test.labels.numpy()
    row = Row("scikit-learn MLPClassifier", "784-128-10 ReLU, adam lr 1e-3, batch 64, 5 epochs, alpha 0",
              params=784 * 128 + 128 + 128 * 10 + 10)
    for seed in seeds:
        clf = MLPClassifier(hidden_layer_sizes=(128,), activation="relu", solver="adam", learning_rate_init=1e-3,
                            batch_size=64, max_iter=5, alpha=0.0, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # 5 epochs is the recipe, not a failure to converge
            start = time.perf_counter()
            clf.fit(x_train, y_train)
            seconds = time.perf_counter() - start
        acc = float((clf.predict(x_test) == y_test).mean())
        row.results.append(Result(acc, seconds, None))  # evaluated only at the end: no time to 99%
        print(f"  {row.name} seed {seed}: {acc:.2%}, {seconds:.1f} s", flush=True)
    return row


# --- the PyTorch examples' MNIST CNN -------------------------------------------------------------------------------

class ExampleNet(nn.Module):
    """pytorch/examples mnist/main.py's Net, verbatim in structure (log-softmax output, nll loss)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.dropout1(F.max_pool2d(x, 2)).flatten(1)
        x = self.fc2(self.dropout2(F.relu(self.fc1(x))))
        return F.log_softmax(x, dim=1)


def example_row(seeds: list[int], epochs: int, train_limit: int | None) -> Row:
    data = load_mnist()
    train_split = data.train.subset(train_limit or len(data.train))
    row = Row("PyTorch example CNN", f"Adadelta lr 1.0, StepLR γ 0.7, batch 64, {epochs} epochs (example: 14), "
                                     "eval each epoch")
    for seed in seeds:
        torch.manual_seed(seed)
        model = ExampleNet()
        row.params = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
        generator = torch.Generator().manual_seed(seed)
        train_seconds, history = 0.0, []
        for _ in range(epochs):
            start = time.perf_counter()
            model.train()
            order = torch.randperm(len(train_split), generator=generator)
            for i in range(0, len(order), 64):
                batch = order[i:i + 64]
                optimizer.zero_grad()
                loss = F.nll_loss(model(normalize(train_split.images[batch], MNIST_MEAN, MNIST_STD)),
                                  train_split.labels[batch])
                loss.backward()
                optimizer.step()
            scheduler.step()
            train_seconds += time.perf_counter() - start
            _, acc = evaluate(model, data.test)
            history.append((acc, train_seconds))
        reached = [seconds for acc, seconds in history if acc >= TARGET]
        row.results.append(Result(history[-1][0], train_seconds, reached[0] if reached else None))
        print(f"  {row.name} seed {seed}: {history[-1][0]:.2%} ({', '.join(f'{a:.2%}' for a, _ in history)}), "
              f"{train_seconds:.1f} s", flush=True)
    return row


# --- the run ---------------------------------------------------------------------------------------------------------

def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (f"{cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads){gpu}; torch {torch.__version__}, "
            f"mnistlab {mnistlab.__version__}, Python {platform.python_version()}")


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of the mnistlab rows")
    parser.add_argument("--sklearn-seeds", type=int, nargs="+", help="seeds of MLPClassifier (default: --seeds)")
    parser.add_argument("--example-seeds", type=int, nargs="+", help="seeds of the PyTorch example (default: --seeds)")
    parser.add_argument("--cnn-epochs", type=int, help="epochs of the cnn best row (default: the recipe's)")
    parser.add_argument("--example-epochs", type=int, default=14, help="epochs of the PyTorch example (default: 14)")
    parser.add_argument("--train-limit", type=int, help="train on the first N images only (a smoke test)")
    parser.add_argument("--only", nargs="+", choices=list(ROWS), help="run only these rows")
    parser.add_argument("--json", type=Path, help="also write the results here, after every row")
    args = parser.parse_args()
    print(machine(), flush=True)
    limit = args.train_limit
    runners: dict[str, Callable[[], Row]] = {
        "mlp-classic": lambda: mnistlab_row("mlp", "classic", args.seeds, None, limit),
        "mlp-best": lambda: mnistlab_row("mlp", "best", args.seeds, None, limit),
        "cnn_small-fast": lambda: mnistlab_row("cnn_small", "fast", args.seeds, 40, limit),
        "cnn-best": lambda: mnistlab_row("cnn", "best", args.seeds, None, limit, epochs=args.cnn_epochs),
        "sklearn-mlp": lambda: sklearn_row(args.sklearn_seeds or args.seeds, limit),
        "torch-example": lambda: example_row(args.example_seeds or args.seeds, args.example_epochs, limit),
    }
    rows: list[Row] = []
    started = time.perf_counter()
    for key in args.only or ROWS:
        print(f"{key}: (at {time.perf_counter() - started:.0f} s)", flush=True)
        rows.append(runners[key]())
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "rows": [
                {"name": r.name, "settings": r.what, "params": r.params,
                 "results": [vars(x) for x in r.results]} for r in rows]}, indent=2) + "\n")
    print(f"\n{machine()}; {time.perf_counter() - started:.0f} s in all\n")
    print(markdown(rows))


ROWS = ("mlp-classic", "mlp-best", "cnn_small-fast", "cnn-best", "sklearn-mlp", "torch-example")

if __name__ == "__main__":
    main()
