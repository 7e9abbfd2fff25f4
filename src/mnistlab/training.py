"""Training and evaluation: the classic MNIST recipe, made fast.

Speed comes from doing less, not from changing the recipe: the dataset stays one uint8 tensor
on the device, each epoch draws one seeded permutation and each batch gathers its rows from that
tensor, pixels are normalised per batch, Adam uses its fused kernel, and the loop never waits on
the device except to update the progress bar.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import __version__
from ._io import write_json
from .checkpoints import save_checkpoint
from .data import MNIST_MEAN, MNIST_STD, Split, load_mnist, normalize
from .device import resolve_device
from .models import create_model, list_models, model_defaults

METRICS_FILE = "metrics.json"
PROGRESS_EVERY = 50  # steps between progress-bar loss updates (each one reads a value off the device)


@dataclass
class TrainConfig:
    """Everything a training run depends on. The defaults are the classic recipe."""

    model: str = "mlp"  # a name from list_models()
    model_args: dict = field(default_factory=dict)  # overrides of the model's defaults, e.g. {"hidden": 128}
    epochs: int = 5
    batch_size: int = 64
    test_batch_size: int = 1000
    lr: float = 1e-3  # Adam's learning rate
    mean: float = MNIST_MEAN  # normalisation, on a 0-1 pixel scale
    std: float = MNIST_STD
    seed: int = 1  # model init and shuffling; the same seed on the same CPU gives the same weights
    device: str = "auto"  # auto = CUDA, then MPS, then CPU
    data_dir: str | None = None  # None: $MNISTLAB_DATA_DIR, else the bundled copy
    train_limit: int | None = None  # train on the first N training images only (quick runs)
    out: str | None = None  # run folder; None: runs/<timestamp>-<model>
    progress: bool = True  # tqdm bar and one line per epoch

    def validate(self) -> None:
        """Raise `ValueError` naming the first field whose value cannot work."""
        if self.model not in list_models():
            raise ValueError(f"model: unknown model {self.model!r}; choose from: {', '.join(list_models())}")
        unknown = set(self.model_args) - set(model_defaults(self.model))
        if unknown:
            raise ValueError(f"model_args: {self.model} takes no {', '.join(sorted(unknown))}; "
                             f"it takes {model_defaults(self.model)}")
        for name in ("epochs", "batch_size", "test_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: must be a whole number ≥ 1, got {getattr(self, name)!r}")
        if self.train_limit is not None and self.train_limit < 1:
            raise ValueError(f"train_limit: must be ≥ 1, got {self.train_limit}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr: must be a finite number > 0, got {self.lr}")
        if not (self.std > 0 and math.isfinite(self.std)):
            raise ValueError(f"std: must be a finite number > 0, got {self.std}")

    def full_model_args(self) -> dict:
        """The model's arguments with its defaults filled in, as a checkpoint records them."""
        return {**model_defaults(self.model), **self.model_args}


@dataclass
class EpochMetrics:
    """One row of metrics.json. Train figures are running averages over the epoch (as Keras reports)."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    seconds: float


@dataclass
class Run:
    """What `train` returns: the trained model (on its device) and where it was saved."""

    dir: Path
    config: TrainConfig
    model: nn.Module
    history: list[EpochMetrics]
    device: str
    wall_seconds: float
    test_split: Split | None = field(default=None, repr=False)  # what it was evaluated on, for the figures

    @property
    def final(self) -> EpochMetrics:
        return self.history[-1]


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with its fused kernel (CUDA, CPU since torch 2.4); the multi-tensor path elsewhere."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


def build_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The config's model, initialised from its seed without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = create_model(config.model, **config.model_args)
    return model.to(device)


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, mean: float = MNIST_MEAN, std: float = MNIST_STD,
             batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on `split` (already on the model's device)."""
    model.eval()
    loss_sum = torch.zeros((), device=split.images.device)
    correct = torch.zeros((), dtype=torch.long, device=split.images.device)
    for start in range(0, len(split), batch_size):
        logits = model(normalize(split.images[start:start + batch_size], mean, std))
        labels = split.labels[start:start + batch_size]
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
    return loss_sum.item() / len(split), correct.item() / len(split)


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, split: Split, config: TrainConfig,
                    generator: torch.Generator, bar: tqdm) -> tuple[float, float]:
    """One shuffled pass over `split`; returns the running mean loss and accuracy."""
    model.train()
    # The permutation is drawn on the CPU so that a seed shuffles alike on every device.
    order = torch.randperm(len(split), generator=generator).to(split.images.device)
    loss_sum = torch.zeros((), device=split.images.device)
    correct = torch.zeros((), dtype=torch.long, device=split.images.device)
    for step, start in enumerate(range(0, len(split), config.batch_size), 1):
        # Gathering each batch's rows is cheaper than a shuffled copy of the epoch, and needs no memory.
        batch = order[start:start + config.batch_size]
        x = normalize(split.images[batch], config.mean, config.std)  # (B, 1, 28, 28)
        y = split.labels[batch]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        bar.update(1)
        if step % PROGRESS_EVERY == 0:
            bar.set_postfix(loss=f"{loss_sum.item() / min(start + len(y), len(split)):.4f}", refresh=False)
    return loss_sum.item() / len(split), correct.item() / len(split)


def default_run_dir(model_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = Path("runs") / f"{stamp}-{model_name}", 1
    while path.exists():
        n += 1
        path = Path("runs") / f"{stamp}-{model_name}-{n}"
    return path


def train(config: TrainConfig) -> Run:
    """Train `config.model` on MNIST, evaluate after every epoch, and save the run folder.

    Nothing is written until training has finished, so an interrupted run leaves no files.
    """
    config.validate()
    config = dataclasses.replace(config, model_args=config.full_model_args())
    device = resolve_device(config.device)
    data = load_mnist(config.data_dir)
    train_split = data.train if config.train_limit is None else data.train.subset(config.train_limit)
    train_split, test_split = train_split.to(device), data.test.to(device)

    model = build_model(config, device)
    optimizer = make_optimizer(model, config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    steps = math.ceil(len(train_split) / config.batch_size)
    history: list[EpochMetrics] = []
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        with tqdm(total=steps, desc=f"epoch {epoch}/{config.epochs}", unit="step", leave=False,
                  disable=not config.progress, dynamic_ncols=True) as bar:
            train_loss, train_acc = train_one_epoch(model, optimizer, train_split, config, generator, bar)
        test_loss, test_acc = evaluate(model, test_split, config.mean, config.std, config.test_batch_size)
        history.append(EpochMetrics(epoch, train_loss, train_acc, test_loss, test_acc,
                                    time.perf_counter() - epoch_start))
        if config.progress:
            tqdm.write(format_epoch(history[-1], config.epochs))
    wall_seconds = time.perf_counter() - started

    run_dir = Path(config.out) if config.out else default_run_dir(config.model)
    dataset = {"name": data.name, "source": data.source, "sha256": data.sha256,
               "train_size": len(train_split), "test_size": len(test_split)}
    save_checkpoint(run_dir, model, config.model, config.model_args, mean=config.mean, std=config.std,
                    dataset=dataset, metrics=asdict(history[-1]), train_config=asdict(config))
    write_json(run_dir / METRICS_FILE, {
        "mnistlab_version": __version__,
        "torch_version": torch.__version__,
        "device": str(device),
        "wall_seconds": wall_seconds,
        "config": asdict(config),
        "dataset": dataset,
        "epochs": [asdict(m) for m in history],
    })
    return Run(run_dir, config, model, history, str(device), wall_seconds, test_split)


def format_epoch(m: EpochMetrics, epochs: int) -> str:
    return (f"epoch {m.epoch}/{epochs}  train loss {m.train_loss:.4f} acc {m.train_acc:.2%}  "
            f"test loss {m.test_loss:.4f} acc {m.test_acc:.2%}  {m.seconds:.1f}s")
