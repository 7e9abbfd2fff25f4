"""Measuring a PyTorch model on a split: one pass over the images gives its loss, accuracy and answers.

`evaluate` is the accuracy (and mean cross-entropy) that training records and `mnistlab evaluate`
reproduces; `compute_predictions` keeps every answer (`SplitPredictions`) for the figures. Both run
`evaluate_split`, so the final evaluation of a training run serves its metrics and its report alike.
The figures themselves (`mnistlab.plots`) only draw what this module computed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from ._signals import progress_bar
from .calibration import rescale_probabilities
from .data import MNIST_MEAN, MNIST_STD, DataError, Split, normalize
from .dataset_info import MNIST as MNIST_INFO

SHORT_NAME = 1  # class names this long (the digits) fit where a digit's layout puts them; longer ones get room


@dataclass(frozen=True)
class SplitPredictions:
    """A model's answers on one split, computed once and shared by every figure that needs them."""

    images: torch.Tensor  # uint8 (N, 28, 28), on the CPU
    labels: torch.Tensor  # int64 (N,)
    probs: torch.Tensor  # float32 (N, 10), softmax of the logits
    classes: tuple[str, ...] = MNIST_INFO.classes  # the name of each label, shown in every figure

    def __len__(self) -> int:
        return len(self.labels)

    def at_temperature(self, temperature: float) -> SplitPredictions:
        """The same answers with `probs` (computed at temperature 1) at `temperature`: a calibrated model's."""
        return dataclasses.replace(self, probs=rescale_probabilities(self.probs, temperature))

    # Computed once: every figure asks for them, and an argmax over 10,000 rows is not free.
    @cached_property
    def preds(self) -> torch.Tensor:
        return self.probs.argmax(1)

    @cached_property
    def wrong(self) -> torch.Tensor:
        """Boolean (N,): True where the prediction is wrong."""
        return self.preds != self.labels

    @property
    def accuracy(self) -> float:
        return int((~self.wrong).sum()) / len(self)

    @property
    def named(self) -> bool:
        """Whether the classes have names longer than a digit (Fashion's "T-shirt/top", KMNIST's "tsu")."""
        return max(len(name) for name in self.classes) > SHORT_NAME

    @property
    def noun(self) -> str:
        """What one example is called in titles: a digit for MNIST's classes, an image otherwise."""
        return "digit" if self.classes == MNIST_INFO.classes else "image"

    @property
    def label_noun(self) -> str:
        """What a label is called on an axis or a column: the digit for MNIST's classes, the class otherwise."""
        return "digit" if self.noun == "digit" else "class"


@dataclass(frozen=True)
class SplitEvaluation:
    """One pass of a model over a split: mean cross-entropy, accuracy, and (when kept) every answer."""

    loss: float
    accuracy: float
    probabilities: torch.Tensor | None  # float32 (N, classes) softmax, on the CPU; None unless asked for

    def predictions(self, split: Split, classes: Sequence[str] = MNIST_INFO.classes) -> SplitPredictions:
        """The kept answers with the split's images, for the figures."""
        if self.probabilities is None:
            raise ValueError("this evaluation kept no probabilities (evaluate_split(..., keep_probabilities=True))")
        return SplitPredictions(split.images.cpu(), split.labels.cpu(), self.probabilities, tuple(classes))


@torch.inference_mode()
def evaluate_split(model: nn.Module, split: Split, mean: float = MNIST_MEAN, std: float = MNIST_STD,
                   batch_size: int = 1000, *, keep_probabilities: bool = False,
                   progress: bool | None = False) -> SplitEvaluation:
    """Run `model` over `split` (already on the model's device) once, in eval mode.

    `progress`: a bar on stderr (None: only when stderr is a terminal).

    Raises:
        DataError: the split holds no images (its mean would be 0 / 0).
    """
    if len(split) == 0:
        raise DataError("nothing to evaluate: the split holds no images")
    model.eval()
    device = split.images.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    probabilities = []
    with progress_bar(total=len(split), desc="evaluating", unit="image", leave=False,
                      disable=None if progress is None else not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(split), batch_size):
            logits = model(normalize(split.images[start:start + batch_size], mean, std))  # (B, classes)
            labels = split.labels[start:start + batch_size]
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
            if keep_probabilities:
                probabilities.append(logits.softmax(1).float())
            bar.update(len(labels))
    kept = torch.cat(probabilities).cpu() if keep_probabilities else None  # one copy off the device, at the end
    return SplitEvaluation(loss_sum.item() / len(split), correct.item() / len(split), kept)


def evaluate(model: nn.Module, split: Split, mean: float = MNIST_MEAN, std: float = MNIST_STD,
             batch_size: int = 1000, *, progress: bool | None = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on `split` (already on the model's device).

    Raises:
        DataError: the split holds no images (its mean would be 0 / 0).
    """
    result = evaluate_split(model, split, mean, std, batch_size, progress=progress)
    return result.loss, result.accuracy


def compute_predictions(model: nn.Module, split: Split, mean: float = MNIST_MEAN, std: float = MNIST_STD,
                        batch_size: int = 1000, classes: Sequence[str] = MNIST_INFO.classes) -> SplitPredictions:
    """Class probabilities of `model` on `split` (already on the model's device), gathered on the CPU.

    `classes` names each label in the figures (`Checkpoint.classes`).
    """
    return evaluate_split(model, split, mean, std, batch_size, keep_probabilities=True).predictions(split, classes)
