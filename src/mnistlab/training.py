"""Training: the classic MNIST recipe, made fast, and the recipes beyond it.

Speed comes from doing less, not from changing the recipe: the dataset stays one uint8 tensor
on the device, each epoch draws one seeded permutation and each batch gathers its rows from that
tensor, pixels are normalised (and, when asked, augmented) per batch on the device, Adam uses its
fused kernel, and the loop never waits on the device except to update the progress bar and to
evaluate. The optimizer and schedule (`mnistlab.optim`), regularisation and augmentation come from
the config, which `mnistlab.recipes` fills in by name; the test set is measured by `mnistlab.evaluation`
and the run folder written by `mnistlab.run_folder`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ._outputs import StagedFolder
from ._signals import progress_bar
from .augment import augment
from .calibration import Calibration, calibrate_held_out, held_out_count, split_off, uncalibrated
from .checkpoints import is_checkpoint_folder, load_checkpoint, non_finite_tensor
from .config import TrainConfig
from .data import Split, dataset_dir, load_mnist, normalize
from .dataset_info import get_dataset
from .device import resolve_device
from .downloads import source_kind
from .errors import CheckpointError, FieldError, TrainingError
from .evaluation import SplitEvaluation, SplitPredictions, evaluate_split
from .evaluation import evaluate as evaluate  # where it was defined first: `from mnistlab.training import evaluate`
from .limits import MAX_EVALUATIONS, MIN_CALIBRATION_IMAGES
from .models import create_model, list_models, model_arguments, model_defaults
from .optim import make_optimizer, make_scheduler
from .outliers import make_outliers, vary_style
from .recipes import recipe_names
from .records import METRICS_FILE
from .rejection import score_temperature_for
from .run_folder import check_run_name, default_run_dir, write_run

PROGRESS_EVERY = 50  # steps between progress-bar loss updates (each one reads a value off the device)
OUTLIER_POOL = 15_000  # non-digit marks made once per run; each step draws half a batch of them, warped anew
T = TypeVar("T")


def check_config(config: TrainConfig) -> None:
    """Raise `ValueError` naming the first field of `config` that cannot work: every declared field
    (`TrainConfig.validate`), then the model's name and arguments and the recipe's name, whose registries
    live above the configuration's layer."""
    config.validate()
    if config.model not in list_models():
        raise ValueError(f"model: unknown model {config.model!r}; choose from: {', '.join(list_models())}")
    unknown = set(config.model_args) - set(model_defaults(config.model))
    if unknown:
        raise ValueError(f"model_args: {config.model} takes no {', '.join(sorted(unknown))}; "
                         f"it takes {model_defaults(config.model)}")
    try:  # each model declares its arguments' types and bounds (`models.model_arguments`)
        model_arguments(config.model).check(config.model_args, "model_args")
    except FieldError as e:
        raise ValueError(str(e)) from None
    if config.recipe not in [*recipe_names(), None]:
        raise ValueError(f"recipe: expected one of {', '.join(recipe_names())}, None, got {config.recipe!r}")
    if config.init is not None:
        initial_weights(config)


def initial_weights(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The weights of `config.init`, a checkpoint of the model the config trains, with the same arguments and
    normalisation.

    Raises:
        ValueError: `config.init` is not a checkpoint that loads, or it holds another model.
    """
    try:
        base = load_checkpoint(config.init, device="cpu")
    except CheckpointError as e:
        raise ValueError(f"init: {e}") from None
    recorded, wanted = base.config["model"], {"name": config.model, "args": full_model_args(config)}
    if recorded != wanted:
        raise ValueError(f"init: {config.init} holds {recorded['name']} {recorded['args']}; this run trains "
                         f"{wanted['name']} {wanted['args']}")
    mean, std = config.normalization()
    if (base.mean, base.std) != (mean, std):
        raise ValueError(f"init: {config.init} was trained on inputs normalised with mean {base.mean:g}, std "
                         f"{base.std:g}; this run normalises with {mean:g}, {std:g}")
    return base.model.state_dict()


def full_model_args(config: TrainConfig) -> dict:
    """The model's arguments with its defaults filled in, as a checkpoint records them."""
    return {**model_defaults(config.model), **config.model_args}


@dataclass
class EpochMetrics:
    """One row of metrics.json: one test evaluation (after each epoch, or every `eval_every` steps).

    Train figures are running averages over the steps since the previous row (as Keras reports).
    """

    epoch: float  # epochs done: whole after an epoch, fractional with eval_every
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    seconds: float  # wall time since the previous row: training and this evaluation
    step: int  # optimizer steps done
    train_seconds: float  # training time since the start, evaluations excluded
    eval_seconds: float  # this evaluation's time


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
    final_evaluation: SplitEvaluation | None = field(default=None, repr=False)  # the last pass over test_split
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase: data, model, training, ...
    pictures: list[str] = field(default_factory=list)  # the figures written beside it (`mnistlab.runs.train`)
    calibration: Calibration | None = None  # fitted on the held-out images after training (`mnistlab.calibration`)
    reject: dict | None = None  # the "not a digit" thresholds fitted on them too (`mnistlab.rejection`), as recorded

    @property
    def final(self) -> EpochMetrics:
        return self.history[-1]

    @property
    def test_predictions(self) -> SplitPredictions:
        """The model's answers on the test split, from the evaluation that gave `final` (no second pass)."""
        if self.final_evaluation is None:
            raise ValueError("this run holds no evaluation of its test split (it was not made by `train`)")
        predictions = self.final_evaluation.predictions(self.test_split, get_dataset(self.config.dataset).classes)
        return predictions if self.calibration is None else predictions.at_temperature(self.calibration.temperature)

    @property
    def time_to_target(self) -> float | None:
        """Training seconds until the test accuracy first reached `config.stop_at` (None: not asked or not reached)."""
        return time_to_accuracy(self.history, self.config.stop_at)


def time_to_accuracy(history: list[EpochMetrics], target: float | None) -> float | None:
    """Training seconds (evaluations excluded) at the first evaluation with test accuracy ≥ `target`."""
    reached = [row.train_seconds for row in history if target is not None and row.test_acc >= target]
    return reached[0] if reached else None


def timing_summary(history: list[EpochMetrics], config: TrainConfig) -> dict:
    """metrics.json's totals: training and evaluation seconds kept apart, and the time to `stop_at`."""
    return {"train_seconds": history[-1].train_seconds, "eval_seconds": sum(row.eval_seconds for row in history),
            "time_to_target": time_to_accuracy(history, config.stop_at)}


def build_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The config's model, initialised from its seed without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = create_model(config.model, **config.model_args)
    return model.to(device)


def uses_conv(model: nn.Module) -> bool:
    """Whether `model` has 2-D convolutions, which run faster channels-last (and, on CUDA, in bf16)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@contextmanager
def channels_last(model: nn.Module) -> Iterator[nn.Module]:
    """Train a model with convolutions channels-last (faster on CPU and CUDA alike); it comes back in the
    standard memory format, as a checkpoint rebuilds it, so that `evaluate` reproduces its accuracy exactly."""
    conv = uses_conv(model)
    if conv:
        model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        if conv:
            model.to(memory_format=torch.contiguous_format)


def batch_input(images: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, 28, 28) pixels → the normalised, augmented when the config asks, model input (B, 1, 28, 28)."""
    if not (config.augment or config.elastic):
        return normalize(images, config.mean, config.std)
    pixels = images.unsqueeze(1).to(torch.float32).div_(255)  # warped before normalising: the border stays 0
    return normalize(augment(pixels, generator, strength=config.augment, elastic=config.elastic),
                     config.mean, config.std)


def outlier_pool(split: Split, config: TrainConfig) -> torch.Tensor | None:
    """The non-digit marks outlier exposure shows the model, made from the training digits (uint8, on their
    device); None when the config asks for no outlier exposure."""
    if not config.outlier_exposure:
        return None
    count = max(1, min(len(split) // 2, OUTLIER_POOL))
    return make_outliers(split.images.cpu(), split.labels.cpu(), count, config.seed).to(split.images.device)


def uniform_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the softmax of `logits` (B, classes) to the uniform distribution: 0 when unsure."""
    return (torch.logsumexp(logits, 1) - logits.mean(1)).mean() - math.log(logits.shape[1])


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, split: Split, config: TrainConfig,
                    generator: torch.Generator, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    augment_generator: torch.Generator | None = None, outliers: torch.Tensor | None = None
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """One shuffled pass over `split`, one optimizer step per batch.

    Yields after each step its (mean loss, number right, batch size), the first two as device tensors, so
    that the caller decides when to wait for them. Augmentation draws from `augment_generator` (default:
    `generator`), which lives on the training device so that drawing never waits on a copy. With `outliers`
    (`outlier_pool`), half a batch of them joins each step, and `config.outlier_exposure` weighs the loss
    that makes the model unsure of them (Hendrycks et al., "Deep anomaly detection with outlier exposure").
    """
    model.train()
    device = split.images.device
    # bf16 autocast pays off for convolutions on CUDA; elsewhere the model runs in float32.
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and uses_conv(model)
                else nullcontext())
    # The permutation is drawn on the CPU so that a seed shuffles alike on every device.
    order = torch.randperm(len(split), generator=generator).to(device)
    for start in range(0, len(split), config.batch_size):
        # Gathering each batch's rows is cheaper than a shuffled copy of the epoch, and needs no memory.
        batch = order[start:start + config.batch_size]
        y = split.labels[batch]
        images = split.images[batch]
        if outliers is not None:
            drawn = torch.randint(len(outliers), (max(1, len(batch) // 2),), generator=generator).to(device)
            images = vary_style(torch.cat([images, outliers[drawn]]), generator)
        x = batch_input(images, config, augment_generator or generator)  # (B + B/2 outliers, 1, 28, 28)
        with autocast:
            logits = model(x)
            loss = F.cross_entropy(logits[:len(y)], y, label_smoothing=config.label_smoothing)
            if outliers is not None:
                loss = loss + config.outlier_exposure * uniform_loss(logits[len(y):].float())
            logits = logits[:len(y)]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        yield loss.detach(), (logits.argmax(1) == y).sum(), len(y)


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_split: Split, test_split: Split,
        config: TrainConfig) -> tuple[list[EpochMetrics], float]:
    """Train `model` as the config says, evaluating on `test_split` every `eval_every` steps (default:
    after each epoch) and after the last step; stop early once the test accuracy reaches `stop_at`.

    Returns one row per evaluation, and the wall seconds. The rows' training clock stops while the test
    set is evaluated. A model with convolutions trains channels-last (`channels_last`).
    """
    history, _, seconds = _fit(model, optimizer, train_split, test_split, config)
    return history, seconds


def _fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_split: Split, test_split: Split,
         config: TrainConfig) -> tuple[list[EpochMetrics], SplitEvaluation, float]:
    """`fit`, with the last evaluation's answers, which the report draws."""
    started = time.perf_counter()
    with channels_last(model):
        history, last = _train_and_evaluate(model, optimizer, train_split, test_split, config)
    return history, last, time.perf_counter() - started


def _train_and_evaluate(model: nn.Module, optimizer: torch.optim.Optimizer, train_split: Split, test_split: Split,
                        config: TrainConfig) -> tuple[list[EpochMetrics], SplitEvaluation]:
    device = train_split.images.device
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    eval_every = config.eval_every or steps_per_epoch
    check_evaluations(total_steps, eval_every)
    scheduler = make_scheduler(optimizer, config, total_steps)
    step_model = torch.compile(model) if config.compile else model
    generator = torch.Generator().manual_seed(config.seed)
    augment_generator = torch.Generator(device).manual_seed(config.seed) if device.type != "cpu" else None
    outliers = outlier_pool(train_split, config)
    history: list[EpochMetrics] = []
    running = RunningMeans(device)
    step, train_seconds = 0, 0.0
    row_start = clock = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        with progress_bar(total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", unit="step", leave=False,
                          disable=not config.progress, dynamic_ncols=True) as bar:
            for loss, right, n in train_one_epoch(step_model, optimizer, train_split, config, generator, scheduler,
                                                  augment_generator, outliers):
                step += 1
                running.add(loss, right, n)
                bar.update(1)
                if step % PROGRESS_EVERY == 0:
                    bar.set_postfix(loss=f"{running.loss():.4f}", refresh=False)
                if step % eval_every and step < total_steps:
                    continue
                if device.type == "cuda":
                    torch.cuda.synchronize(device)  # stop the clock when the device has finished, not before
                paused = time.perf_counter()
                train_seconds += paused - clock
                # The answers are kept, so that the last evaluation serves the report's figures too.
                last = evaluate_split(eval_copy(model), test_split, config.mean, config.std, config.test_batch_size,
                                      keep_probabilities=True)
                test_loss, test_acc = last.loss, last.accuracy
                now = time.perf_counter()
                epochs_done = round(step / steps_per_epoch, 4)
                history.append(EpochMetrics(
                    epoch=int(epochs_done) if epochs_done.is_integer() else epochs_done,
                    train_loss=running.loss(), train_acc=running.accuracy(), test_loss=test_loss,
                    test_acc=test_acc, seconds=now - row_start, step=step, train_seconds=train_seconds,
                    eval_seconds=now - paused))
                if config.progress:
                    tqdm.write(format_epoch(history[-1], config.epochs))
                if not (math.isfinite(history[-1].train_loss) and math.isfinite(test_loss)):
                    bad = history[-1].train_loss if not math.isfinite(history[-1].train_loss) else test_loss
                    raise TrainingError(f"the loss became {bad} at step {step}: training diverged "
                                        f"(lr {config.lr:g} may be too large)")
                if config.stop_at is not None and test_acc >= config.stop_at:
                    return history, last
                step_model.train()  # the evaluation left the model in eval mode
                running = RunningMeans(device)
                row_start = clock = time.perf_counter()
    return history, last


def check_evaluations(total_steps: int, eval_every: int) -> None:
    """Refuse, before the first step, a run that would evaluate more than MAX_EVALUATIONS times: each
    evaluation is a row of metrics.json, and the reader accepts no more (it reads back what this writes)."""
    evaluations = math.ceil(total_steps / eval_every)  # every eval_every steps, and after the last
    if evaluations > MAX_EVALUATIONS:
        raise TrainingError(f"eval_every: evaluating every {eval_every:,} of {total_steps:,} steps makes "
                            f"{evaluations:,} evaluations, over the limit of {MAX_EVALUATIONS:,} (rows of "
                            f"{METRICS_FILE}); evaluate every {math.ceil(total_steps / MAX_EVALUATIONS):,} steps "
                            "or more")


class RunningMeans:
    """The training loss and accuracy since the last evaluation, summed on the device; read back only when asked."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        self.loss_sum += loss * n
        self.correct += correct
        self.seen += n

    def loss(self) -> float:
        return self.loss_sum.item() / self.seen

    def accuracy(self) -> float:
        return self.correct.item() / self.seen


def eval_copy(model: nn.Module) -> nn.Module:
    """The model as a checkpoint rebuilds it (standard memory format), so that `mnistlab evaluate` reproduces
    the recorded accuracy exactly; the model itself when it already is."""
    if not uses_conv(model):
        return model
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


def train_run(config: TrainConfig, before_publish: Callable[[Run, Path], None] | None = None,
          command: str | None = None, prepare: Callable[[], None] | None = None) -> Run:
    """Train `config.model` on `config.dataset`, evaluate after every epoch, and save the run folder whole.

    The inputs are checked first (the config, a `data_dir`), then the output folder (see
    `mnistlab._outputs.StagedFolder`), so the first error names what is wrong and none comes after
    the long work. The run is written into a temporary sibling folder that is renamed into place at
    the end: an error or interrupt at any point leaves nothing new behind (and an old run it was to
    replace untouched). `before_publish(run, folder)` may write more files into that folder (the
    command line draws the pictures there); they are published with the run, or not at all.
    `prepare()` runs while the data loads in another thread (the pictures import matplotlib there).
    `command`, the command line that asked for the run (the CLI passes its own), is recorded in
    config.json.

    Raises:
        ValueError: a config field that cannot work. `mnistlab.DataError`: a bad `data_dir`.
        `mnistlab.OutputError`: a bad output folder (one named `pretrained:...`, or a run without
        `overwrite=True`) or a failed write. `TrainingError`: the loss became NaN or infinite.
    """
    timer = _Timer()
    check_config(dataclasses.replace(config, init=None))  # `init` is checked below, where its weights load once
    initial = initial_weights(config) if config.init is not None else None
    mean, std = config.normalization()
    config = dataclasses.replace(config, model_args=full_model_args(config), mean=mean, std=std)
    device = resolve_device(config.device)
    run_dir = Path(config.out) if config.out else default_run_dir(config.model)
    folder = None
    if source_kind(get_dataset(config.dataset), config.data_dir) != "cache":  # a download waits for the output check
        with timer("data"):
            folder, _ = dataset_dir(config.dataset, config.data_dir, config.progress)
    check_run_name(run_dir)
    with StagedFolder(run_dir, overwrite=config.overwrite, replaceable=is_checkpoint_folder) as staging:
        if folder is None:
            with timer("data"):  # a download happens here, in the main thread, where Ctrl-C stops it at once
                folder, _ = dataset_dir(config.dataset, config.data_dir, config.progress)
        # The data is read in a thread while the model is built: decompressing and hashing release the GIL.
        with ThreadPoolExecutor(max_workers=1) as pool:
            loading = pool.submit(timer.timed, "data", load_mnist, folder, config.dataset)
            with timer("model"):
                model = build_model(config, device)
                if initial is not None:
                    model.load_state_dict(initial)
                optimizer = make_optimizer(model, config)
            if prepare is not None:
                with timer("extras"):
                    prepare()
            data = loading.result()
        held_out = held_out_count(len(data.train), config.calibration_size)
        train_split, calibration_split = split_off(data.train, held_out)
        if config.train_limit is not None:
            train_split = train_split.subset(config.train_limit)
        train_split, test_split = train_split.to(device), data.test.to(device)
        dataset = data.record(train_size=len(train_split))
        if config.progress:
            kept = f" ({held_out:,} more held out to calibrate on)" if held_out else ""
            tqdm.write(f"training {config.model} on {get_dataset(config.dataset).title}: {len(train_split):,} "
                       f"training{kept} and {len(test_split):,} test images")
        try:
            history, last, wall_seconds = _fit(model, optimizer, train_split, test_split, config)
            bad = non_finite_tensor(model.state_dict())
            if bad is not None:
                raise TrainingError(f"weight {bad} holds NaN or infinite values: training diverged")
            timer.seconds["training"] = history[-1].train_seconds
            timer.seconds["evaluation"] = sum(row.eval_seconds for row in history)
        except TrainingError as e:
            raise TrainingError(f"{e}; {staging.nothing_new()}") from None
        run = Run(run_dir, config, model, history, str(device), wall_seconds, test_split, last, timer.seconds)
        with timer("calibration"):
            run.calibration, run.reject = _calibrate(model, calibration_split.to(device), config, len(data.train))
        with timer("writing"):
            _write_run(staging, run, dataset, command)
        if before_publish is not None:
            with timer("extras"):
                before_publish(run, staging.path)
        with timer("publish"):
            staging.publish()
    return run


def _calibrate(model: nn.Module, held_out: Split, config: TrainConfig,
               train_images: int) -> tuple[Calibration, dict | None]:
    """The temperature fitted on the held-out images (`mnistlab.calibration`), or why there is none; and the
    "not a digit" rule fitted on the same images' calibrated answers (`mnistlab.rejection`; None: not calibrated,
    so it refuses nothing)."""
    title = get_dataset(config.dataset).title
    if config.calibration_size == 0:
        return uncalibrated("not calibrated (calibration_size 0)"), None
    if len(held_out) == 0:
        return uncalibrated(f"not calibrated: a tenth of the {train_images:,} {title} training images is fewer "
                            f"than the {MIN_CALIBRATION_IMAGES} a temperature needs"), None
    data = f"the last {len(held_out):,} of the {train_images:,} {title} training images, held out of training"
    if config.init is not None:  # the weights it started from may have been trained on them
        data += " by this run, which started from trained weights (its `init`) that may have seen them"
    calibration, reject = calibrate_held_out(model, held_out, config.mean, config.std, data, config.test_batch_size,
                                             score_temperature_for(config.outlier_exposure))
    if config.progress:
        tqdm.write(f"calibrated on {len(held_out):,} held-out images: temperature {calibration.temperature:.3f}, "
                   f"ECE {calibration.ece_before:.2%} → {calibration.ece_after:.2%}")
    return calibration, reject


def _write_run(staging: StagedFolder, run: Run, dataset: dict, command: str | None) -> None:
    """The run's checkpoint and metrics.json, into the staging folder, as `mnistlab.run_folder` writes every run."""
    config = run.config
    write_run(staging, run.model, model_name=config.model, model_args=config.model_args, mean=config.mean,
              std=config.std, dataset=dataset, epochs=[asdict(row) for row in run.history], config=asdict(config),
              train_config=asdict(config), device=run.device, wall_seconds=run.wall_seconds,
              **timing_summary(run.history, config), command=command,
              calibration=run.calibration.to_record() if run.calibration is not None else None,
              reject=run.reject)


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
    return (f"epoch {m.epoch:g}/{epochs}  train loss {m.train_loss:.4f} acc {m.train_acc:.2%}  "
            f"test loss {m.test_loss:.4f} acc {m.test_acc:.2%}  {m.seconds:.1f}s")
