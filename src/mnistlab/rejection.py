"""The "not a digit" rule: when an answer's best probability is too low to be a digit, say so instead.

The score is the largest class probability a model gives (after its calibration). A model trained with
outlier exposure (`TrainConfig.outlier_exposure`) is unsure of marks that are not digits, so a low
score tells them; any other model's score still tells some of them (the max-softmax baseline).
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
# The share of held-out training digits each strictness refuses: its threshold is that quantile of their scores.
REFUSED_SHARE = dict(zip(REJECT_LEVELS, (0.002, 0.01), strict=True))
DEFAULT_THRESHOLDS = dict.fromkeys(REJECT_LEVELS, 0.0)  # a model without a "reject" record refuses nothing
NOT_A_DIGIT = "not a digit"  # the reason a refused answer gives, in `predict`'s rows and the library's Prediction


@dataclass(frozen=True)
class RejectRule:
    """The thresholds of a model's "not a digit" rule, one per strictness (above "off")."""

    thresholds: Mapping[str, float]
    held_out_digits: int | None = None  # None: the default thresholds, which refuse nothing

    def threshold(self, strictness: str) -> float:
        """The score below which `strictness` refuses: 0 for "off"; "strict" never below "normal"."""
        if strictness not in STRICTNESS:
            raise ValueError(f"reject: expected one of {', '.join(STRICTNESS)}, got {strictness!r}")
        if strictness == "off":
            return 0.0
        normal = self.thresholds["normal"]
        return normal if strictness == "normal" else max(normal, self.thresholds["strict"])

    def refuses(self, probabilities: np.ndarray, strictness: str = DEFAULT_STRICTNESS) -> np.ndarray:
        """(N, classes) probabilities → (N,) bool: which answers are "not a digit" at `strictness`.
        A row that is not finite is not refused here: it is an error of its own."""
        return refused(probabilities, self.threshold(strictness))

    def record(self) -> dict:
        """The "reject" record of config.json."""
        held = {} if self.held_out_digits is None else {"held_out_digits": self.held_out_digits}
        return {"score": REJECT_SCORES[0], "thresholds": dict(self.thresholds), **held}


DEFAULT_RULE = RejectRule(DEFAULT_THRESHOLDS)


def score(probabilities: np.ndarray) -> np.ndarray:
    """How much an answer looks like a digit: the largest probability of each row, (N, classes) → (N,)."""
    return np.nan_to_num(np.asarray(probabilities, dtype=np.float64), nan=1.0).max(1)


def refused(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """(N, classes) probabilities → (N,) bool: the answers scoring under `threshold` ("not a digit")."""
    return score(probabilities) < threshold


def fit_rule(probabilities: np.ndarray) -> RejectRule:
    """The thresholds that refuse `REFUSED_SHARE` of the digits whose (N, classes) probabilities are given:
    digits the model did not train on, in the same convention as the ones it will judge.

    Raises:
        ValueError: no rows, or rows that are not finite.
    """
    scores = score(probabilities)
    if len(scores) == 0 or not np.isfinite(np.asarray(probabilities)).all():
        raise ValueError("reject: the held-out digits' probabilities are empty or not finite")
    thresholds = {name: float(np.quantile(scores, share)) for name, share in REFUSED_SHARE.items()}
    return RejectRule(thresholds, held_out_digits=len(scores))


def rule_of(config: Mapping) -> RejectRule:
    """The rule a model's checked record holds (`Checkpoint.config`, an export's metadata), or `DEFAULT_RULE`."""
    record = config.get("reject")
    if not record:
        return DEFAULT_RULE
    return RejectRule(record["thresholds"], record.get("held_out_digits"))


def threshold_for(model: Classifier, strictness: str = DEFAULT_STRICTNESS) -> float:
    """The score under which `model`'s answers are "not a digit" at `strictness`: its rule's threshold, or 0
    (nothing refused) for a model of another dataset's layout, whose classes are not digits."""
    return rule_of(model.config).threshold(strictness) if model.layout == "digit" else 0.0
