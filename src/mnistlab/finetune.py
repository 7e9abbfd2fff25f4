"""`mnistlab finetune`: adapt a trained model to one person's handwriting.

The person's images come as a labelled folder (`DIR/0/ … DIR/9/`, what `serve --collect` saves and
`evaluate --images` evaluates), read by `mnistlab.labelled` and preprocessed by the same pipeline as
`predict`, so the model learns from exactly what it will be shown. A stratified, seeded share of them
is held out to measure the model before and after. Each training step mixes a few of the person's
images, randomly warped (`mnistlab.augment`), with several times as many training images of the base
model's own dataset: the model learns the person's style without forgetting the rest of the world,
which the test set's accuracy before and after shows. The result is an ordinary run folder, written
as `mnistlab train` writes one (`mnistlab.run_folder`), whose config.json records where it came from
("finetune").
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._io import file_sha256, json_text
from ._outputs import StagedFolder
from ._signals import progress_bar
from .augment import augment
from .checkpoints import Checkpoint, is_checkpoint_folder, non_finite_tensor
from .config import FinetuneConfig
from .data import Split, load_mnist, normalize, resolve_data_dir
from .dataset_info import SPLIT_FILES, checkpoint_dataset
from .errors import FinetuneError, escape_surrogates
from .evaluation import evaluate
from .labelled import DIGITS, LabelledImage, LabelledPixels, list_digit_images, read_pixels
from .limits import FINETUNE_STEPS as STEPS
from .model_loading import load_model
from .optim import eager
from .records import WEIGHTS_FILE
from .run_folder import check_run_name, write_run
from .training import channels_last

MAX_FINETUNE_IMAGES = 5_000  # one person's drawings: far more than anyone collects, few enough to preprocess in seconds
MAX_IMAGE_BYTES = 32 << 20  # a file larger than a 32 MiB phone photo is refused unread
MAX_HELD_OUT_RECORD = 256 << 10  # bytes of held-out file names in config.json (the loader reads at most 1 MiB)
MIN_PER_DIGIT = 2  # one to train on, one to hold out
# Where each stage of a fine-tune starts, as the share of its time (`on_progress`): about as a cnn's takes on a CPU.
PROGRESS = {"dataset": 0.05, "before": 0.15, "train": 0.2, "after": 0.85, "save": 0.97}


@dataclass
class FinetuneEvaluation:
    """Accuracy on the person's held-out images (None: nothing held out) and on the dataset's test set."""

    held_out: float | None
    test: float
    test_loss: float
    recorded: bool = False  # the test figures are the base's record, for the very same test files


@dataclass
class FinetuneResult:
    dir: Path
    config: FinetuneConfig
    checkpoint: Checkpoint  # the base, as loaded
    before: FinetuneEvaluation
    after: FinetuneEvaluation
    trained: int  # the person's images trained on
    held_out: int
    unreadable: list[tuple[LabelledImage, str]]
    steps: int
    seconds: float  # wall seconds of the training steps
    record: dict = field(repr=False)  # config.json's "finetune"


def read_person(folder: str | Path, model: Checkpoint) -> LabelledPixels:
    """Every image of a person's labelled folder, read and preprocessed for `model` (`mnistlab.labelled`).

    Raises:
        LabelledError: the folder is missing, holds no images, or cannot be read. FinetuneError: too many.
    """
    files = list_digit_images(folder)
    if len(files) > MAX_FINETUNE_IMAGES:
        raise FinetuneError(f"{folder}: {len(files):,} images; at most {MAX_FINETUNE_IMAGES:,} can be fine-tuned on")
    return read_pixels(files, model, MAX_IMAGE_BYTES)


def check_counts(person: LabelledPixels, folder: str | Path, holdout: float) -> None:
    """Every digit needs `MIN_PER_DIGIT` readable images (one when nothing is held out); name the first short one."""
    need = MIN_PER_DIGIT if holdout > 0 else 1
    counts = np.bincount(person.labels, minlength=len(DIGITS)).tolist()
    for digit, count in enumerate(counts):
        if count < need:
            failed = sum(image.label == digit for image, _ in person.unreadable)
            why = f" ({failed} more could not be read)" if failed else ""
            uses = "one to train on, one to hold out" if need > 1 else "one to train on"
            raise FinetuneError(f"{Path(folder) / str(digit)}: {count} readable image{'s' * (count != 1)}{why}; "
                                f"each digit needs at least {need} ({uses})")


def split_held_out(labels: torch.Tensor, holdout: float, seed: int) -> torch.Tensor:
    """A bool mask of the held-out images: `holdout` of each digit's (rounded, at least one, never all), drawn
    with `seed`. The same labels and seed give the same split, on any machine."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), bool)
    if holdout == 0:
        return torch.from_numpy(held)
    array = labels.numpy()
    for digit in DIGITS:
        members = np.flatnonzero(array == digit)
        count = min(max(1, round(holdout * len(members))), len(members) - 1)
        held[rng.permutation(members)[:count]] = True
    return torch.from_numpy(held)


def held_out_record(person: LabelledPixels, held: torch.Tensor) -> dict[str, list[str]]:
    """{digit: [file names held out]}, as config.json records the split (undecodable bytes as the text `\\xff`)."""
    record: dict[str, list[str]] = {str(d): [] for d in DIGITS}
    for image, is_held in zip(person.files, held.tolist(), strict=True):
        if is_held:
            record[str(image.label)].append(escape_surrogates(image.path.name))
    return record


def evaluate_finetune(model: torch.nn.Module, held_out: Split | None, test: Split, mean: float, std: float,
                      batch_size: int) -> FinetuneEvaluation:
    """`model`'s accuracy on the person's held-out images (float pixels) and its loss and accuracy on `test`."""
    held = evaluate(model, held_out, mean, std, batch_size)[1] if held_out is not None else None
    loss, acc = evaluate(model, test, mean, std, batch_size)
    return FinetuneEvaluation(held, acc, loss)


def evaluate_base(base: Checkpoint, held_out: Split | None, test: Split, digests: dict[str, str],
                  batch_size: int) -> FinetuneEvaluation:
    """The base's accuracies. Its test accuracy is its record's when that was measured on these very test files
    (`mnistlab evaluate` reproduces it exactly), which saves a pass over the whole test set, a large share of a
    fine-tune's time. A record of other files, or none, is measured again."""
    recorded, files = base.metrics, base.config.get("dataset", {}).get("sha256", {})
    if "test_acc" in recorded and "test_loss" in recorded and all(
            files.get(stem) is not None and files.get(stem) == digests.get(stem) for stem in SPLIT_FILES["test"]):
        held = evaluate(base.model, held_out, base.mean, base.std, batch_size)[1] if held_out is not None else None
        return FinetuneEvaluation(held, recorded["test_acc"], recorded["test_loss"], recorded=True)
    return evaluate_finetune(base.model, held_out, test, base.mean, base.std, batch_size)


def adapt(model: torch.nn.Module, pixels: torch.Tensor, labels: torch.Tensor, world: Split, config: FinetuneConfig,
          mean: float, std: float, on_step: Callable[[], None] | None = None) -> tuple[int, float, float]:
    """Train `model` on the person's images (float (N, 28, 28)), each step also on `mix`× as many of `world`'s.

    Everything is on `model`'s device. Returns (steps, mean training loss, training accuracy on the
    person's warped images), both over the last epoch.
    """
    generator = torch.Generator().manual_seed(config.seed)  # on the CPU: a seed draws alike on every device
    device = pixels.device
    optimizer = eager(torch.optim.Adam, model.parameters(), lr=config.lr)
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps_per_epoch * config.epochs)
    model.train()
    step, loss_sum, right, seen = 0, 0.0, 0, 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(labels), generator=generator).to(device)
        for start in range(0, len(labels), config.batch_size):
            batch = order[start:start + config.batch_size]
            warp = augment(pixels[batch].unsqueeze(1).cpu(), generator, strength=config.augment).to(device)
            drawn = torch.randint(len(world), (len(batch) * config.mix,), generator=generator).to(device)
            # (B·(1 + mix), 1, 28, 28): the person's warped images, then the dataset's as they are
            x = torch.cat([normalize(warp, mean, std), normalize(world.images[drawn], mean, std)])
            y = torch.cat([labels[batch], world.labels[drawn]])
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if epoch == config.epochs - 1:  # the last epoch's figures, as a run's last row reports them
                loss_sum += loss.item() * len(y)
                right += (logits[:len(batch)].argmax(1) == labels[batch]).sum().item()
                seen += len(batch)
            if on_step is not None:
                on_step()
    return step, loss_sum / max(1, seen * (1 + config.mix)), right / max(1, seen)


def default_epochs(images: int, config: FinetuneConfig) -> int:
    """Enough passes over `images` training images for about `STEPS` steps."""
    return max(1, round(STEPS / math.ceil(images / config.batch_size)))


def load_base(name: str, device: str) -> Checkpoint:
    """The base model, by the loader every command uses; only a PyTorch checkpoint can be trained further."""
    model = load_model(name, device=device)
    if not isinstance(model, Checkpoint):
        raise FinetuneError(f"{name}: an exported model cannot be fine-tuned; give the run folder it was exported from")
    return model


def finetune(config: FinetuneConfig, on_unreadable: Callable[[LabelledImage, str], None] | None = None,
             on_progress: Callable[[float, str], None] | None = None) -> FinetuneResult:
    """Adapt `config.base` to the handwriting in `config.images`; write the run folder `config.out` whole.

    The inputs are checked first (the base, every image read), then the output folder, all before any
    training, so the first error names what is wrong. `on_unreadable(file, why)` hears of each image
    that cannot be used, before the counts are checked (so a user sees why a digit is short).
    `on_progress(share, what)` hears how far it is (0 to 1) and what it does; an exception it raises
    stops the fine-tune with nothing written (so a caller can cancel it).

    Raises:
        FinetuneError, LabelledError: a bad setting, images folder or base. CheckpointError: a base that
        is not a model. OutputError: a bad output folder (`RunExistsError`: a run, without
        `overwrite=True`) or a failed write. DataError: the dataset's files.
    """
    config.validate()
    report = on_progress or (lambda share, what: None)
    report(0.0, "reading your drawings")
    base = load_base(config.base, config.device)
    person = read_person(config.images, base)
    for image, why in person.unreadable:
        if on_unreadable is not None:
            on_unreadable(image, why)
    check_counts(person, config.images, config.holdout)
    info = checkpoint_dataset(base.config.get("dataset", {}), None, base.path)
    if config.data_dir is not None:
        resolve_data_dir(config.data_dir)  # a missing folder is named before the output is looked at
    if _same_folder(Path(config.out), base.path):
        raise FinetuneError(f"{config.out}: is the base run itself; write the fine-tuned model to another folder")
    check_run_name(config.out)
    with StagedFolder(config.out, overwrite=config.overwrite, replaceable=is_checkpoint_folder) as staging:
        labels = torch.from_numpy(person.labels)
        held = split_held_out(labels, config.holdout, config.seed)
        config = dataclasses.replace(config, epochs=config.epochs or default_epochs(int((~held).sum()), config))
        record = _record(config, base, person, held)
        report(PROGRESS["dataset"], f"loading {info.title}")
        data = load_mnist(config.data_dir, info.name, config.progress)
        device, (mean, std) = base.device, (base.mean, base.std)
        world, test = data.train.to(device), data.test.to(device)
        pixels, labels = torch.from_numpy(person.pixels).to(device), labels.to(device)
        held_device = held.to(device)
        mine = Split(pixels[held_device], labels[held_device]) if held.any() else None
        report(PROGRESS["before"], "measuring the model before")
        before = evaluate_base(base, mine, test, data.sha256, config.test_batch_size)
        started = time.perf_counter()
        model, (steps, train_loss, train_acc) = trained_copy(base, pixels[~held_device], labels[~held_device], world,
                                                             config, report)
        seconds = time.perf_counter() - started
        evaluated = time.perf_counter()
        report(PROGRESS["after"], f"measuring the new model on {info.title}'s test set")
        after = evaluate_finetune(model, mine, test, mean, std, config.test_batch_size)
        record["before"], record["after"] = _evaluation_record(before), _evaluation_record(after)
        row = {"epoch": config.epochs, "train_loss": train_loss, "train_acc": train_acc,
               "test_loss": after.test_loss, "test_acc": after.test, "seconds": time.perf_counter() - started,
               "step": steps, "train_seconds": seconds, "eval_seconds": time.perf_counter() - evaluated}
        base_name = escape_surrogates(str(config.base))
        report(PROGRESS["save"], "saving the new model")
        write_run(staging, model, model_name=base.model_name, model_args=base.config["model"]["args"], mean=mean,
                  std=std, dataset=data.record(), epochs=[row], train_config=base.config.get("train_config", {}),
                  config={"finetune": True, "base": base_name, "model": base.model_name, **_settings(config)},
                  device=str(device), wall_seconds=row["seconds"], train_seconds=seconds,
                  eval_seconds=row["eval_seconds"], time_to_target=None, finetune=record)
        staging.publish()
    report(1.0, "done")
    return FinetuneResult(Path(config.out), config, base, before, after, int((~held).sum()), int(held.sum()),
                          person.unreadable, steps, seconds, record)


def trained_copy(base: Checkpoint, pixels: torch.Tensor, labels: torch.Tensor, world: Split, config: FinetuneConfig,
                 report: Callable[[float, str], None] = lambda share, what: None,
                 ) -> tuple[torch.nn.Module, tuple[int, float, float]]:
    """A copy of the base's model after `adapt`, in eval mode and finite, with what `adapt` returned;
    `report(share, what)` hears of each step, as `finetune`'s `on_progress`."""
    model = copy.deepcopy(base.model)
    total = math.ceil(len(labels) / config.batch_size) * config.epochs
    first, span = PROGRESS["train"], PROGRESS["after"] - PROGRESS["train"]
    done = 0

    def step(bar) -> None:
        nonlocal done
        done += 1
        bar.update(1)
        report(first + span * done / total, f"learning: step {done} of {total}")

    with progress_bar(total=total, desc="fine-tuning", unit="step", leave=False, disable=not config.progress) as bar, \
            channels_last(model):
        report(first, f"learning: step 0 of {total}")
        figures = adapt(model, pixels, labels, world, config, base.mean, base.std, on_step=lambda: step(bar))
    bad = non_finite_tensor(model.state_dict())
    if bad is not None:
        raise FinetuneError(f"weight {bad} holds NaN or infinite values: fine-tuning diverged (try a smaller --lr)")
    return model.eval(), figures


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a name too long, a symlink loop: StagedFolder says what is wrong with it
        return False


def _evaluation_record(evaluation: FinetuneEvaluation) -> dict:
    return {"held_out_acc": evaluation.held_out, "test_acc": evaluation.test}


def _settings(config: FinetuneConfig) -> dict:
    return {name: getattr(config, name) for name in ("epochs", "lr", "batch_size", "mix", "augment", "holdout", "seed")}


def _record(config: FinetuneConfig, base: Checkpoint, person: LabelledPixels, held: torch.Tensor) -> dict:
    """config.json's "finetune": where the model came from, what it learnt from, and which images it never saw."""
    record = {"base": escape_surrogates(str(config.base)), "base_sha256": file_sha256(base.path / WEIGHTS_FILE),
              "images": escape_surrogates(str(config.images)),
              "images_sha256": person.sha256, "trained_images": int((~held).sum()), "held_out_images": int(held.sum()),
              "unreadable_images": len(person.unreadable), **_settings(config),
              "held_out": held_out_record(person, held)}
    size = len(json_text(record["held_out"]).encode())
    if size > MAX_HELD_OUT_RECORD:  # config.json is read bounded: a record it cannot hold would make the run unloadable
        raise FinetuneError(f"{config.images}: the held-out file names take {size:,} bytes to record "
                            f"(at most {MAX_HELD_OUT_RECORD:,}); use shorter file names or fewer images")
    return record
