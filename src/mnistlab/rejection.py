"""The "not a digit" rule: when an answer's best probability is too low to be a digit, say so instead.

A model trained with outlier exposure (`TrainConfig.outlier_exposure`) is unsure of marks that are not
digits, so a low score tells them. Its score is the largest class probability of its logits softened to
SCORE_TEMPERATURE, whatever the temperature its confidence is calibrated at: softer probabilities tell
digits from other marks better (Liang et al., "ODIN", 2018; measured in docs/benchmarks.md, "Not a
digit"). They are computed from the calibrated ones, softmax(log p × T_calibration / SCORE_TEMPERATURE),
so that every answer's own probabilities give its score. Any other model is scored by its calibrated
confidence, which still tells some non-digits (the max-softmax baseline).
The thresholds, one per strictness, are fit on digits the model did not train on (the held-out end of
the training set) so that each strictness refuses a known share of real digits (`REFUSED_SHARE`), and
are recorded in the run folder's config.json as its "reject" record (`mnistlab.records.REJECT`).

A model without the record (a run from before the rule, one trained on every training image, an export
of one) refuses nothing: with no digits held out there is nothing to fit a threshold on, and such a
run keeps answering as it did.
This module imports nothing but numpy and the bottom layer: a deployment without PyTorch runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .classifier import Classifier
from .config import PredictOptions, default
from .records import REJECT_LEVELS, REJECT_SCORES, STRICTNESS

DEFAULT_STRICTNESS = default(PredictOptions, "reject")
SCORE_TEMPERATURE = 2.0  # the score's softmax is taken at this temperature of the logits (see above) ...
# ... for a model trained with outlier exposure. One that was not is scored by its calibrated answers: softened,
# its scores refused more of the digits from outside MNIST (`cnn_small`: 9.6% → 21.6% of the UCI digits).
# The share of held-out training digits each strictness refuses: its threshold is that quantile of their scores.
REFUSED_SHARE = dict(zip(REJECT_LEVELS, (0.002, 0.01), strict=True))
DEFAULT_THRESHOLDS = dict.fromkeys(REJECT_LEVELS, 0.0)  # a model without a "reject" record refuses nothing
NOT_A_DIGIT = "not a digit"  # the reason a refused answer gives, in `predict`'s rows and the library's Prediction


@dataclass(frozen=True)
class Threshold:
    """One strictness's threshold on a model's score, and how the model's calibrated probabilities give it."""

    value: float  # an answer scoring under it is "not a digit"; 0 refuses nothing
    rescale: float = 1.0  # log p is multiplied by this before the score's softmax (T_calibration / T_score)

    def scores(self, probabilities: np.ndarray) -> np.ndarray:
        return score(probabilities, self.rescale)

    def refuses(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, classes) probabilities → (N,) bool: the answers scoring under the threshold ("not a digit").
        A row that is not finite is not refused here: it is an error of its own."""
        return self.scores(probabilities) < self.value

    def __bool__(self) -> bool:
        return self.value > 0


NO_REFUSAL = Threshold(0.0)


@dataclass(frozen=True)
class RejectRule:
    """The thresholds of a model's "not a digit" rule, one per strictness (above "off"), on its score."""

    thresholds: Mapping[str, float]
    held_out_digits: int | None = None  # None: the default thresholds, which refuse nothing
    temperature: float | None = None  # the score's temperature; None: the calibrated probabilities' (older records)
    rescale: float = 1.0  # T_calibration / `temperature`: calibrated probabilities → the score's (`Threshold`)

    def threshold(self, strictness: str) -> Threshold:
        """The threshold of `strictness`: 0 for "off"; "strict" never below "normal"."""
        if strictness not in STRICTNESS:
            raise ValueError(f"reject: expected one of {', '.join(STRICTNESS)}, got {strictness!r}")
        normal = self.thresholds["normal"]
        value = 0.0 if strictness == "off" else normal if strictness == "normal" else max(normal,
                                                                                         self.thresholds["strict"])
        return Threshold(value, self.rescale)

    def scores(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, classes) calibrated probabilities → (N,) their scores (`score`)."""
        return score(probabilities, self.rescale)

    def refuses(self, probabilities: np.ndarray, strictness: str = DEFAULT_STRICTNESS) -> np.ndarray:
        """(N, classes) calibrated probabilities → (N,) bool: which answers are "not a digit" at `strictness`."""
        return self.threshold(strictness).refuses(probabilities)

    def record(self) -> dict:
        """The "reject" record of config.json."""
        held = {} if self.held_out_digits is None else {"held_out_digits": self.held_out_digits}
        temperature = {} if self.temperature is None else {"temperature": self.temperature}
        return {"score": REJECT_SCORES[0], **temperature, "thresholds": dict(self.thresholds), **held}


DEFAULT_RULE = RejectRule(DEFAULT_THRESHOLDS)


def score(probabilities: np.ndarray, rescale: float = 1.0) -> np.ndarray:
    """How much an answer looks like a digit, (N, classes) → (N,): the largest probability of each row of
    softmax(log p × `rescale`) (1: the row's own). A row that is not finite scores 1 (it is an error of its own);
    a probability that underflowed to 0 stays 0, which never touches the top class."""
    p = np.asarray(probabilities, dtype=np.float64)
    finite = np.isfinite(p).all(1)
    p = np.where(finite[:, None], p, 1.0)
    if rescale == 1.0:
        return p.max(1, initial=0.0)
    with np.errstate(divide="ignore"):
        logs = np.log(p) * rescale
    logs -= logs.max(1, keepdims=True, initial=-np.inf)
    return np.where(finite, 1.0 / np.exp(logs).sum(1), 1.0)


def score_temperature_for(outlier_exposure: float) -> float | None:
    """The temperature a model's score is taken at: SCORE_TEMPERATURE for one trained with outlier exposure
    (`TrainConfig.outlier_exposure` above 0), else None (its calibrated confidence)."""
    return SCORE_TEMPERATURE if outlier_exposure > 0 else None


def score_temperature_of(config: Mapping) -> float | None:
    """`score_temperature_for` a trained model, from its record (`Checkpoint.config`, an export's metadata)."""
    return score_temperature_for(config.get("train_config", {}).get("outlier_exposure", 0))


def _rescale(model_temperature: float, score_temperature: float | None) -> float:
    """What log p of calibrated probabilities is multiplied by to give the score's (`Threshold.rescale`)."""
    return model_temperature / score_temperature if score_temperature else 1.0


def fit_rule(probabilities: np.ndarray, model_temperature: float = 1.0, score_temperature: float | None = None
             ) -> RejectRule:
    """The thresholds that refuse `REFUSED_SHARE` of the digits whose (N, classes) calibrated probabilities are
    given (at `model_temperature`): digits the model did not train on, in the same convention as the ones it
    will judge. The score is taken at `score_temperature` (`score_temperature_for`), or None: the calibrated
    probabilities as they are.

    Raises:
        ValueError: no rows, or rows that are not finite.
    """
    if len(probabilities) == 0 or not np.isfinite(np.asarray(probabilities)).all():
        raise ValueError("reject: the held-out digits' probabilities are empty or not finite")
    rescale = _rescale(model_temperature, score_temperature)
    scores = score(probabilities, rescale)
    thresholds = {name: float(np.quantile(scores, share)) for name, share in REFUSED_SHARE.items()}
    return RejectRule(thresholds, len(scores), score_temperature, rescale)


def rule_of(config: Mapping, model_temperature: float | None = None) -> RejectRule:
    """The rule a model's checked record holds (`Checkpoint.config`, an export's metadata), or `DEFAULT_RULE`;
    `model_temperature`: the model's (`Classifier.temperature`), by default its record's calibration."""
    record = config.get("reject")
    if not record:
        return DEFAULT_RULE
    temperature = record.get("temperature")
    if model_temperature is None:
        model_temperature = config.get("calibration", {}).get("temperature", 1.0)
    return RejectRule(record["thresholds"], record.get("held_out_digits"), temperature,
                      _rescale(model_temperature, temperature))


def threshold_for(model: Classifier, strictness: str = DEFAULT_STRICTNESS) -> Threshold:
    """The threshold under which `model`'s answers are "not a digit" at `strictness`: its rule's, or one that
    refuses nothing for a model of another dataset's layout, whose classes are not digits."""
    return rule_of(model.config, model.temperature).threshold(strictness) if model.layout == "digit" else NO_REFUSAL
