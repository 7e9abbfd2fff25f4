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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import __version__
from ._io import StagedFolder, json_text
from .checkpoints import checkpoint_files, is_checkpoint_folder
from .data import MNIST_MEAN, MNIST_STD, Split, load_mnist, normalize
from .device import resolve_device
from .errors import MnistlabError
from .limits import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_LR,
    MAX_TRAIN_LIMIT,
    MEAN_RANGE,
    SEED_MAX,
    STD_RANGE,
)
from .models import create_model, list_models, model_arguments, model_defaults
from .schema import FieldError

METRICS_FILE = "metrics.json"
PROGRESS_EVERY = 50  # steps between progress-bar loss updates (each one reads a value off the device)
T = TypeVar("T")


class TrainingError(MnistlabError, RuntimeError):
    """Training cannot go on: the loss or the weights stopped being finite numbers."""


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _real(value: object, low: float, high: float) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high)


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
    overwrite: bool = False  # replace an existing run at `out` (whole: its old figures go too)
    progress: bool = True  # tqdm bar and one line per epoch

    def validate(self) -> None:
        """Raise `ValueError` naming the first field whose value cannot work (ranges: `mnistlab.limits`)."""
        if self.model not in list_models():
            raise ValueError(f"model: unknown model {self.model!r}; choose from: {', '.join(list_models())}")
        unknown = set(self.model_args) - set(model_defaults(self.model))
        if unknown:
            raise ValueError(f"model_args: {self.model} takes no {', '.join(sorted(unknown))}; "
                             f"it takes {model_defaults(self.model)}")
        try:  # each model declares its arguments' types and bounds (`models.model_arguments`)
            model_arguments(self.model).check(self.model_args, "model_args")
        except FieldError as e:
            raise ValueError(str(e)) from None
        wholes = {"epochs": (1, MAX_EPOCHS), "batch_size": (1, MAX_BATCH_SIZE),
                  "test_batch_size": (1, MAX_BATCH_SIZE), "seed": (0, SEED_MAX)}
        if self.train_limit is not None:
            wholes["train_limit"] = (1, MAX_TRAIN_LIMIT)
        for name, (low, high) in wholes.items():
            if not _whole(getattr(self, name), low, high):
                raise ValueError(f"{name}: must be a whole number from {low} to {high:,}, got {getattr(self, name)!r}")
        if not (_real(self.lr, 0, MAX_LR) and self.lr > 0):
            raise ValueError(f"lr: must be a number > 0 and ≤ {MAX_LR:g}, got {self.lr!r}")
        for name, (low, high) in (("mean", MEAN_RANGE), ("std", STD_RANGE)):
            if not _real(getattr(self, name), low, high):
                raise ValueError(f"{name}: must be a number from {low:g} to {high:g} (0-1 pixel scale), "
                                 f"got {getattr(self, name)!r}")

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
    wall_seconds: float  # training and the per-epoch evaluations
    test_split: Split | None = field(default=None, repr=False)  # what it was evaluated on, for the figures
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase: data, model, training, ...

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


def train(config: TrainConfig, before_publish: Callable[[Run, Path], None] | None = None) -> Run:
    """Train `config.model` on MNIST, evaluate after every epoch, and save the run folder whole.

    The output folder is checked before anything else (see `mnistlab._io.StagedFolder`), then the
    run is written into a temporary sibling folder that is renamed into place at the end: an
    error or interrupt at any point leaves nothing new behind (and an old run it was to replace
    untouched). `before_publish(run, folder)` may write more files into that folder (the command
    line draws the pictures there); they are published with the run, or not at all.

    Raises:
        ValueError: a config field that cannot work. `mnistlab.OutputError`: a bad output folder or
        a failed write. `TrainingError`: the loss became NaN or infinite.
    """
    timer = _Timer()
    config.validate()
    config = dataclasses.replace(config, model_args=config.full_model_args())
    device = resolve_device(config.device)
    run_dir = Path(config.out) if config.out else default_run_dir(config.model)
    with StagedFolder(run_dir, overwrite=config.overwrite, replaceable=is_checkpoint_folder) as staging:
        # The data is read in a thread while the model is built: decompressing and hashing release the
        # GIL, and the first optimizer of a process spends about 1 s importing torch._dynamo (in Python).
        with ThreadPoolExecutor(max_workers=1) as pool:
            loading = pool.submit(timer.timed, "data", load_mnist, config.data_dir)
            with timer("model"):
                model = build_model(config, device)
                optimizer = make_optimizer(model, config.lr)
            data = loading.result()
        train_split = data.train if config.train_limit is None else data.train.subset(config.train_limit)
        train_split, test_split = train_split.to(device), data.test.to(device)
        dataset = {"name": data.name, "source": data.source, "sha256": data.sha256,
                   "train_size": len(train_split), "test_size": len(test_split)}
        try:
            history, wall_seconds = _fit(model, optimizer, train_split, test_split, config, timer)
            _check_finite_weights(model)
        except TrainingError as e:
            raise TrainingError(f"{e}; {staging.nothing_new()}") from None
        run = Run(run_dir, config, model, history, str(device), wall_seconds, test_split, timer.seconds)
        with timer("writing"):
            _write_run(staging, run, dataset)
        if before_publish is not None:
            with timer("extras"):
                before_publish(run, staging.path)
        with timer("publish"):
            staging.publish()
    return run


def _fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_split: Split, test_split: Split,
         config: TrainConfig, timer: _Timer) -> tuple[list[EpochMetrics], float]:
    """The epochs: train, evaluate, report; stop at a non-finite loss. Returns the history and its seconds."""
    generator = torch.Generator().manual_seed(config.seed)
    steps = math.ceil(len(train_split) / config.batch_size)
    history: list[EpochMetrics] = []
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        with timer("training"), tqdm(total=steps, desc=f"epoch {epoch}/{config.epochs}", unit="step", leave=False,
                                     disable=not config.progress, dynamic_ncols=True) as bar:
            train_loss, train_acc = train_one_epoch(model, optimizer, train_split, config, generator, bar)
        with timer("evaluation"):
            test_loss, test_acc = evaluate(model, test_split, config.mean, config.std, config.test_batch_size)
        history.append(EpochMetrics(epoch, train_loss, train_acc, test_loss, test_acc,
                                    time.perf_counter() - epoch_start))
        if config.progress:
            tqdm.write(format_epoch(history[-1], config.epochs))
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            raise TrainingError(f"the loss became {train_loss if not math.isfinite(train_loss) else test_loss} "
                                f"in epoch {epoch}: training diverged (lr {config.lr:g} may be too large)")
    return history, time.perf_counter() - started


def _check_finite_weights(model: nn.Module) -> None:
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TrainingError(f"weight {name} holds NaN or infinite values: training diverged")


def _write_run(staging: StagedFolder, run: Run, dataset: dict) -> None:
    """The checkpoint (weights, config.json) and metrics.json, into the staging folder."""
    config = run.config
    files = checkpoint_files(run.model, config.model, config.model_args, mean=config.mean, std=config.std,
                             dataset=dataset, metrics=asdict(run.final), train_config=asdict(config))
    files[METRICS_FILE] = json_text({
        "mnistlab_version": __version__,
        "torch_version": torch.__version__,
        "device": run.device,
        "wall_seconds": run.wall_seconds,
        "config": asdict(config),
        "dataset": dataset,
        "epochs": [asdict(m) for m in run.history],
    })
    for name, content in files.items():
        staging.write(name, content)


class _Timer:
    """Adds up the seconds spent in each named phase: `with timer("data"): ...`; `timer.seconds` holds them."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def timed(self, phase: str, fn: Callable[..., T], *args) -> T:
        """`fn(*args)`, its seconds added to `phase` (for a call in another thread)."""
        with self(phase):
            return fn(*args)


def format_epoch(m: EpochMetrics, epochs: int) -> str:
    return (f"epoch {m.epoch}/{epochs}  train loss {m.train_loss:.4f} acc {m.train_acc:.2%}  "
            f"test loss {m.test_loss:.4f} acc {m.test_acc:.2%}  {m.seconds:.1f}s")
