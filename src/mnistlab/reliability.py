"""The reliability diagram: how often a model is right at each confidence, before and after calibration.

The answers are put in equal-width bins of their confidence (`mnistlab.calibration.reliability_table`,
the bins the expected calibration error is measured over). A calibrated model's bars sit on the
diagonal: of its answers given at 80-87%, about 83% are right. Under the bars, how many answers
each bin holds, on a log scale, since a good MNIST model gives almost all of them above 99%.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from ._figure_parts import plain_text
from .calibration import ECE_BINS, expected_calibration_error, reliability_table, rescale_probabilities
from .evaluation import SplitPredictions

__all__ = ["reliability_diagram"]

AFTER_COLOR = "#0969da"  # the calibrated answers: filled bars
BEFORE_COLOR = "#bc4c00"  # the same answers at temperature 1: an orange line with markers
WIDTH, HEIGHT = 7.0, 7.0  # inches; fixed margins, as `training_curves` draws one run


@plain_text
def reliability_diagram(predictions: SplitPredictions, temperature: float = 1.0, *,
                        title: str | None = None) -> Figure:
    """Accuracy against confidence in ECE_BINS bins, with each bin's count below.

    Args:
        predictions: the model's answers on a split, its probabilities calibrated (`predictions.probs`
            computed at `temperature`, as `Checkpoint.probabilities` gives them).
        temperature: the temperature those probabilities were computed at; when it is not 1, the same
            answers at temperature 1 (uncalibrated) are drawn too, for comparison.
        title: the figure's title (default: "Reliability on the N test digits").
    """
    labels = predictions.labels
    tables = {"after": reliability_table(predictions.probs, labels)}
    ece = {"after": expected_calibration_error(predictions.probs, labels)}
    if temperature != 1.0:
        raw = rescale_probabilities(predictions.probs, 1.0 / temperature)
        tables["before"], ece["before"] = reliability_table(raw, labels), expected_calibration_error(raw, labels)
    fig = Figure(figsize=(WIDTH, HEIGHT))
    top = fig.add_axes((0.9 / WIDTH, 2.35 / HEIGHT, 5.8 / WIDTH, 3.15 / HEIGHT))
    bottom = fig.add_axes((0.9 / WIDTH, 0.6 / HEIGHT, 5.8 / WIDTH, 1.3 / HEIGHT), sharex=top)
    width = 1 / ECE_BINS
    after = tables["after"]
    lows = np.array([b.low for b in after])
    top.bar(lows, [0 if math.isnan(b.accuracy) else 100 * b.accuracy for b in after], width=width, align="edge",
            color=AFTER_COLOR, alpha=0.75, edgecolor="white")
    what = "calibrated" if temperature != 1.0 else "answers"
    handles = [Patch(color=AFTER_COLOR, alpha=0.75, label=_legend(what, temperature, ece["after"])),
               top.plot([0, 1], [0, 100], color="black", linestyle=":", linewidth=1, zorder=3,
                        label="perfectly calibrated")[0]]
    if "before" in tables:
        shown = [b for b in tables["before"] if b.count]
        handles.insert(1, top.plot([b.confidence for b in shown], [100 * b.accuracy for b in shown], color=BEFORE_COLOR,
                                   marker="o", markersize=4, label=_legend("uncalibrated", 1.0, ece["before"]))[0])
    top.set(xlim=(0, 1), ylim=(0, 100), ylabel="accuracy in the bin (%)")
    top.tick_params(labelbottom=False)
    top.grid(alpha=0.3)
    # Above the axes: the bars may fill them anywhere.
    top.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.01), fontsize=9, frameon=False)
    counts = [max(b.count, 0) for b in after]
    bottom.bar(lows, counts, width=width, align="edge", color=AFTER_COLOR, alpha=0.75, edgecolor="white")
    if "before" in tables:
        bottom.step([*lows, 1.0], [*(b.count for b in tables["before"]), tables["before"][-1].count], where="post",
                    color=BEFORE_COLOR, linewidth=1)
    # A log scale, its ticks written as plain numbers (the figure's texts are not parsed as TeX: `plain_text`).
    bottom.set(yscale="log", ylim=(0.7, max(10, 3 * max(counts))), xlabel="confidence (the top class's probability)",
               ylabel="answers")
    bottom.yaxis.set_major_locator(LogLocator(base=10, numticks=6))
    bottom.yaxis.set_minor_locator(NullLocator())
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    bottom.grid(alpha=0.3)
    heading = title or f"Reliability on the {len(predictions):,} test {predictions.noun}s"
    fig.suptitle(f"{heading}\n{ECE_BINS} equal-width bins; ECE {ece['after']:.2%}", fontsize=12)
    return fig


def _legend(what: str, temperature: float, ece: float) -> str:
    return f"{what} (temperature {temperature:.3g}): ECE {ece:.2%}" if what != "answers" else f"ECE {ece:.2%}"
