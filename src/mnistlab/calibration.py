"""Calibrated confidence: a model's softmax made into the probability that its answer is right.

A network trained with cross-entropy (and more so with label smoothing) is rarely calibrated: of the
answers it gives at 90%, far more or far fewer than 90% are right. Temperature scaling fixes that with
one number fitted after training: the logits are divided by T before the softmax, T chosen to minimise
the negative log-likelihood of held-out images the model was not trained on. Dividing by T > 0 keeps
the order of the logits, so the answer (the argmax), and with it the accuracy, never changes.

`mnistlab train` holds out the last images of the training set (`held_out_count` says how many),
fits T on them (`calibrate`) and records how in config.json's "calibration" (`Calibration`,
checked against `records.CALIBRATION` when read). `Checkpoint.probabilities` and the ONNX export apply
it. The expected calibration error (`expected_calibration_error`) is measured over ECE_BINS
equal-width bins of the confidence (the top class's probability), as Guo et al. (2017) measure it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Split, normalize
from .limits import MIN_CALIBRATION_IMAGES, TEMPERATURE_RANGE
from .records import CALIBRATION
from .rejection import fit_rule

ECE_BINS = 15  # equal-width confidence bins: (0, 1/15], (1/15, 2/15], ... (14/15, 1]
GOLDEN_STEPS = 60  # each shrinks the bracket of log T by 0.618: from 6 wide to 1e-12
HOLD_OUT_SHARE = 10  # at most a tenth of a training set is held out, however small the set


@dataclass(frozen=True)
class Calibration:
    """How a model's confidence was calibrated: config.json's "calibration" record, typed."""

    method: str  # "temperature", or "none" (temperature 1; `data` says why)
    temperature: float  # the logits are divided by it before the softmax
    data: str = ""  # the images it was fitted on, in words
    images: int = 0  # how many
    bins: int = ECE_BINS
    ece_before: float | None = None  # on those images, at temperature 1 and after
    ece_after: float | None = None
    nll_before: float | None = None
    nll_after: float | None = None

    @classmethod
    def check(cls, record: object, where: str = "calibration") -> Calibration:
        """A record from outside (config.json, an export's metadata), checked field by field.

        Raises:
            FieldError: the first field missing or out of its range ("calibration.temperature: must be ...").
        """
        return cls(**CALIBRATION.check(record, where))

    def to_record(self) -> dict:
        """The record as config.json holds it (fields not measured are left out)."""
        return {key: value for key, value in asdict(self).items() if value is not None}


def uncalibrated(reason: str) -> Calibration:
    """The record of a model left at temperature 1, saying why."""
    return Calibration("none", 1.0, data=reason)


def inherited(base: Calibration | None, base_name: str) -> Calibration:
    """The record of a fine-tune of `base`: its base's temperature, the best guess that a few hundred
    drawings cannot improve on (the figures measured on the base's images are left out)."""
    if base is None or base.method == "none":
        return uncalibrated(f"its base {base_name} was not calibrated")
    return Calibration(base.method, base.temperature, data=f"inherited from its base {base_name}: {base.data}",
                       images=base.images, bins=base.bins)


def held_out_count(train_images: int, calibration_size: int) -> int:
    """How many of the last training images a run holds out to calibrate on.

    `calibration_size`, but at most a tenth of the training set (so that a small set still mostly
    trains); when that leaves fewer than MIN_CALIBRATION_IMAGES, none: the run is not calibrated.
    """
    count = min(calibration_size, train_images // HOLD_OUT_SHARE)
    return count if count >= MIN_CALIBRATION_IMAGES else 0


def split_off(train: Split, count: int) -> tuple[Split, Split]:
    """(the images to train on, the last `count` images held out to calibrate on)."""
    keep = len(train) - count
    return Split(train.images[:keep], train.labels[:keep]), Split(train.images[keep:], train.labels[keep:])


@torch.inference_mode()
def split_logits(model: nn.Module, split: Split, mean: float, std: float, batch_size: int = 1000) -> torch.Tensor:
    """float32 (N, classes) logits of `model` (in eval mode) on `split` (on the model's device), on the CPU."""
    model.eval()
    return torch.cat([model(normalize(split.images[start:start + batch_size], mean, std)).float()
                      for start in range(0, len(split), batch_size)]).cpu()


class Tempered(nn.Module):
    """`model` with its logits divided by `temperature`: its cross-entropy is that of its calibrated answers."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature


def scaled_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the last dimension: the calibrated probabilities."""
    return (logits / temperature).softmax(-1)


def rescale_probabilities(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """Probabilities already computed at temperature 1 → at `temperature`.

    softmax(log p / T) equals softmax(logits / T), since log p differs from the logits by one constant per
    row; a probability that underflowed to 0 stays 0, which never touches the top class.
    """
    if temperature == 1.0:
        return probabilities
    return scaled_softmax(probabilities.double().log(), temperature).to(probabilities.dtype)


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean cross-entropy of softmax(logits / T) against `labels`."""
    return F.cross_entropy(torch.as_tensor(logits).double() / temperature, torch.as_tensor(labels).long()).item()


def fit_temperature(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """The T in TEMPERATURE_RANGE that minimises the NLL of softmax(logits / T); rows with a non-finite logit
    are left out.

    The NLL is convex in 1/T, so it has one minimum along log T: a golden-section search over the bounded
    range finds it to float precision. A gradient method (L-BFGS over log T) stalls on the flat tails, where a
    held-out set the model gets all right asks for the smallest T.
    """
    logits = torch.as_tensor(logits).detach().double().cpu()  # (N, classes)
    labels = torch.as_tensor(labels).long().cpu()  # (N,)
    finite = torch.isfinite(logits).all(1)
    logits, labels = logits[finite], labels[finite]
    if len(labels) == 0:
        raise ValueError("no finite logits to fit a temperature on")

    def nll(log_t: float) -> float:
        return F.cross_entropy(logits / math.exp(log_t), labels).item()

    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    nll_a, nll_b = nll(a), nll(b)
    for _ in range(GOLDEN_STEPS):
        if nll_a <= nll_b:
            high, b, nll_b = b, a, nll_a
            a = high - ratio * (high - low)
            nll_a = nll(a)
        else:
            low, a, nll_a = a, b, nll_b
            b = low + ratio * (high - low)
            nll_b = nll(b)
    return math.exp((low + high) / 2)


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin of a reliability diagram: (low, high], its answers, how sure and how right."""

    low: float
    high: float
    count: int
    confidence: float  # mean top-class probability of its answers (NaN when empty)
    accuracy: float  # share of its answers that are right (NaN when empty)


def reliability_table(probabilities: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                      bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Each of `bins` equal-width bins of the confidence (bin i holds (i/bins, (i+1)/bins]; 0 goes in the first)."""
    probabilities = torch.as_tensor(probabilities).double().cpu()  # (N, classes)
    labels = torch.as_tensor(labels).long().cpu()
    confidence, answer = probabilities.max(1)
    right = (answer == labels).double()
    index = (confidence * bins).ceil().long().clamp(1, bins) - 1
    counts = torch.bincount(index, minlength=bins)
    sum_confidence = torch.bincount(index, confidence, minlength=bins)
    sum_right = torch.bincount(index, right, minlength=bins)
    table = []
    for i in range(bins):
        n = int(counts[i])
        table.append(ReliabilityBin(i / bins, (i + 1) / bins, n, float(sum_confidence[i] / n) if n else math.nan,
                                    float(sum_right[i] / n) if n else math.nan))
    return table


def expected_calibration_error(probabilities: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Σ over the bins of (its share of the answers) × |its accuracy − its mean confidence|, in [0, 1]."""
    table = reliability_table(probabilities, labels, bins)
    total = sum(b.count for b in table)
    return sum(b.count / total * abs(b.accuracy - b.confidence) for b in table if b.count)


def calibrate(logits: torch.Tensor, labels: torch.Tensor, data: str) -> Calibration:
    """Fit a temperature on held-out `logits` and measure it there: the record a run keeps.

    `data`: the images the logits are of, in words, as the record says it.
    """
    temperature = fit_temperature(logits, labels)
    logits = logits.double()
    return Calibration(
        "temperature", temperature, data=data, images=len(labels), bins=ECE_BINS,
        ece_before=expected_calibration_error(logits.softmax(1), labels),
        ece_after=expected_calibration_error(scaled_softmax(logits, temperature), labels),
        nll_before=negative_log_likelihood(logits, labels), nll_after=negative_log_likelihood(logits, labels,
                                                                                              temperature))


def calibrate_held_out(model: nn.Module, held_out: Split, mean: float, std: float, data: str,
                       batch_size: int = 1000, score_temperature: float | None = None) -> tuple[Calibration, dict]:
    """`model`'s temperature fitted on the `held_out` images (`data` says which, in words), and the "not a digit"
    thresholds fitted on their calibrated answers (`mnistlab.rejection.fit_rule`, its score at
    `score_temperature`): config.json's two records."""
    logits = split_logits(model, held_out, mean, std, batch_size)
    calibration = calibrate(logits, held_out.labels.cpu(), data)
    probabilities = scaled_softmax(logits, calibration.temperature).numpy()
    return calibration, fit_rule(probabilities, calibration.temperature, score_temperature).record()
