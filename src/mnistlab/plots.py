"""Pictures of digits, predictions and training runs.

Each figure function returns a `matplotlib.figure.Figure` built without pyplot, so nothing here
needs a display or touches global plotting state: a notebook shows the figure, `save_figure`
writes it as PNG, and `show_figure` opens a window only when asked to (`--show`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from torch import nn

from ._io import atomic_path
from .data import IMAGE_SIZE, MNIST_MEAN, MNIST_STD, NUM_CLASSES, Split, normalize
from .errors import MnistlabError

# Green and red; a wrong cell also gets a bold label and a thick frame, so colour blindness loses nothing.
RIGHT_COLOR = "#1a7f37"
WRONG_COLOR = "#cf222e"
DPI = 100  # figures are sized in inches for reading at 100% zoom at this resolution
SPLIT_STYLES = {"train": "--", "test": "-"}  # line style of each split in the curves
TITLE_HEIGHT = 0.75  # inches above a grid of digits, for its two-line title
MIN_GRID_WIDTH = 5.0  # inches: room for that title over a narrow grid
NON_INTERACTIVE_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


class PlotError(MnistlabError, ValueError):
    """A figure cannot be drawn or shown (no display for --show, an unusable input)."""


@dataclass(frozen=True)
class SplitPredictions:
    """A model's answers on one split, computed once and shared by every figure that needs them."""

    images: torch.Tensor  # uint8 (N, 28, 28), on the CPU
    labels: torch.Tensor  # int64 (N,)
    probs: torch.Tensor  # float32 (N, 10), softmax of the logits

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def preds(self) -> torch.Tensor:
        return self.probs.argmax(1)

    @property
    def wrong(self) -> torch.Tensor:
        """Boolean (N,): True where the prediction is wrong."""
        return self.preds != self.labels

    @property
    def accuracy(self) -> float:
        return int((~self.wrong).sum()) / len(self)


@torch.inference_mode()
def compute_predictions(model: nn.Module, split: Split, mean: float = MNIST_MEAN, std: float = MNIST_STD,
                        batch_size: int = 1000) -> SplitPredictions:
    """Class probabilities of `model` on `split` (already on the model's device), gathered on the CPU."""
    model.eval()
    probs = [model(normalize(split.images[start:start + batch_size], mean, std)).softmax(1).float().cpu()
             for start in range(0, len(split), batch_size)]
    return SplitPredictions(split.images.cpu(), split.labels.cpu(), torch.cat(probs))


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write `fig` as a PNG of exactly its size × `dpi` pixels, atomically; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def show_figure(fig: Figure) -> None:
    """Open `fig` in a window and wait until it is closed (needs a display)."""
    import matplotlib
    import matplotlib.pyplot as plt

    backend = plt.get_backend()  # resolves the automatic choice: Agg when there is no display
    if backend.lower() in NON_INTERACTIVE_BACKENDS:
        raise PlotError(f"--show needs a display, but matplotlib's backend is {backend!r}; "
                        "write a file with --out instead")
    try:
        plt.figure(fig)  # pyplot adopts a Figure built without it since matplotlib 3.11
    except (TypeError, ValueError):
        raise PlotError(f"--show needs matplotlib 3.11 or later (this is {matplotlib.__version__}); "
                        "write a file with --out instead") from None
    plt.show()


def _unit_pixels(image: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 or float 0-1 pixels shaped (28, 28) or (1, 28, 28) → float (28, 28) on a 0-1 scale."""
    image = torch.as_tensor(image).detach().cpu()
    if image.numel() != IMAGE_SIZE * IMAGE_SIZE:
        raise PlotError(f"expected one 28x28 image, got shape {tuple(image.shape)}")
    pixels = image.reshape(IMAGE_SIZE, IMAGE_SIZE).float()
    return pixels / 255 if image.dtype == torch.uint8 else pixels


def _digit(ax, image: torch.Tensor) -> None:
    """Draw one digit as MNIST stores it: white ink on black."""
    ax.imshow(_unit_pixels(image).numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def pixel_view(image: torch.Tensor, label: int | None = None, *, normalized: bool = False,
               mean: float = MNIST_MEAN, std: float = MNIST_STD, title: str | None = None) -> Figure:
    """One digit as its 28×28 grid, each pixel's value written in its cell.

    Args:
        image: uint8 pixels (0-255) or floats on a 0-1 scale, shaped (28, 28) or (1, 28, 28).
        label: the digit's label, named in the title.
        normalized: write the model's input `(x - mean) / std` instead of 0-255.
        title: the figure's title (default: "Pixel values", with the label).
    """
    pixels = _unit_pixels(image)
    values = normalize(pixels, mean, std)[0, 0] if normalized else (pixels * 255).round()
    fmt = "{:.1f}" if normalized else "{:.0f}"
    fig = Figure(figsize=(10, 10.6), layout="constrained")
    ax = fig.subplots()
    ax.imshow(pixels.numpy(), cmap="gray", vmin=0, vmax=1)
    cells = torch.cartesian_prod(torch.arange(IMAGE_SIZE), torch.arange(IMAGE_SIZE)).tolist()
    for (row, col), value in zip(cells, values.flatten().tolist(), strict=True):
        # Dark text on light cells, light text on dark ones, so every value can be read; the switch sits
        # where black and white text have equal contrast on grey (sRGB ≈ 0.45).
        color = "black" if pixels[row, col] > 0.45 else "white"
        text = fmt.format(value).replace("-0.0", "0.0") if normalized else fmt.format(value)
        # in_layout=False: the values sit inside the axes, and measuring 784 texts for the layout is slow.
        ax.text(col, row, text, ha="center", va="center", fontsize=6.5, color=color, in_layout=False)
    ax.set_xticks(range(IMAGE_SIZE))
    ax.set_yticks(range(IMAGE_SIZE))
    ax.tick_params(labelsize=7, length=2)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    scale = f"normalised: (x − {mean:g}) / {std:g}, x on a 0–1 scale" if normalized else "0–255"
    heading = title or ("Pixel values" if label is None else f"Pixel values: label {label}")
    ax.set_title(f"{heading}\n({scale})", fontsize=13)
    return fig


def _sample(candidates: torch.Tensor, n: int, seed: int | None) -> torch.Tensor:
    """The first `n` candidates, or a repeatable random `n` of them when a seed is given."""
    if seed is not None:
        candidates = candidates[torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))]
    return candidates[:n]


def _message(text: str) -> Figure:
    """A small figure that says why there is nothing to draw."""
    fig = Figure(figsize=(6, 1.2))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=13)
    return fig


def _digit_axes(n: int, cols: int, cell: tuple[float, float], image: float, above: float,
                title: str) -> tuple[Figure, list]:
    """A figure of `n` square digit axes, `cols` to a row, under a two-line title.

    Each digit sits in a cell of `cell` (width, height) inches, its image `image` inches wide and
    `above` inches below the cell's top (room for a title over it; below it, room for a label).
    Positions are fixed in inches rather than left to a layout engine, which is slow with many axes.
    """
    rows = math.ceil(n / cols)
    width, height = max(cols * cell[0], MIN_GRID_WIDTH), rows * cell[1] + TITLE_HEIGHT
    fig = Figure(figsize=(width, height))
    fig.suptitle(title, y=1 - 0.1 / height, va="top", fontsize=13)
    margin = (width - cols * cell[0]) / 2
    axes = []
    for i in range(n):
        row, col = divmod(i, cols)
        left = margin + col * cell[0] + (cell[0] - image) / 2
        bottom = height - TITLE_HEIGHT - row * cell[1] - above - image
        axes.append(fig.add_axes((left / width, bottom / height, image / width, image / height)))
    return fig, axes


def prediction_grid(predictions: SplitPredictions, *, rows: int = 5, cols: int = 5, errors_only: bool = False,
                    seed: int | None = None) -> Figure:
    """A rows × cols grid of digits with "pred P / true T" under each: green if right, red if wrong.

    Args:
        predictions: from `compute_predictions`.
        errors_only: draw only wrong predictions.
        seed: draw a repeatable random sample; None takes the first digits in order.
    """
    wrong = predictions.wrong
    pool = wrong.nonzero().flatten() if errors_only else torch.arange(len(predictions))
    chosen = _sample(pool, rows * cols, seed).tolist()
    n, n_wrong = len(predictions), int(wrong.sum())
    if not chosen:
        return _message(f"No mistakes: all {n:,} digits are right")
    accuracy = f"model accuracy {predictions.accuracy:.2%}"
    title = (f"{len(chosen)} of the {n_wrong:,} mistakes\non {n:,} digits ({accuracy})" if errors_only else
             f"Predictions on {len(chosen)} of {n:,} digits\n{int(wrong[chosen].sum())} wrong here · {accuracy}")
    fig, axes = _digit_axes(len(chosen), cols, cell=(1.55, 1.8), image=1.3, above=0.2, title=title)
    preds = predictions.preds
    for ax, index in zip(axes, chosen, strict=True):
        _digit(ax, predictions.images[index])
        color = WRONG_COLOR if wrong[index] else RIGHT_COLOR
        ax.set_title(f"#{index}", fontsize=8, color="dimgray", pad=2)
        ax.set_xlabel(f"pred {int(preds[index])} / true {int(predictions.labels[index])}", color=color, fontsize=10,
                      fontweight="bold" if wrong[index] else "normal")
        for spine in ax.spines.values():
            spine.set(color=color, linewidth=2.5 if wrong[index] else 1)
    return fig


def _epoch_rows(history: Sequence) -> list[dict]:
    """metrics.json rows (dicts) or `Run.history` (EpochMetrics) → dicts."""
    return [row if isinstance(row, Mapping) else dataclasses.asdict(row) for row in history]


def training_curves(runs: Sequence | Mapping[str, Sequence], *, title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, train (dashed) and test (solid), in two panels.

    Args:
        runs: one run's epoch rows (metrics.json's "epochs", or `Run.history`), or a mapping
            {name: rows} to overlay several runs, one colour each, with a legend.
        title: the figure's title (default: "Training curves").
    """
    named = dict(runs) if isinstance(runs, Mapping) else {"": runs}
    if not named or not all(named.values()):
        raise PlotError("training_curves needs at least one run with at least one epoch")
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    panels = {"loss": (fig.add_subplot(1, 2, 1), 1, "Loss", "cross-entropy loss", "upper right"),
              "acc": (fig.add_subplot(1, 2, 2), 100, "Accuracy", "accuracy (%)", "lower right")}
    for i, (name, history) in enumerate(named.items()):
        rows = _epoch_rows(history)
        epochs = [row["epoch"] for row in rows]
        for split, style in SPLIT_STYLES.items():
            for metric, (ax, scale, *_) in panels.items():
                ax.plot(epochs, [scale * row[f"{split}_{metric}"] for row in rows], style, marker="o",
                        color=f"C{i % 10}", label=split if len(named) == 1 else f"{name} {split}")
    for ax, _, heading, what, corner in panels.values():
        ax.set(title=heading, xlabel="epoch", ylabel=what)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(named) == 1:
            ax.legend(loc=corner)
    if len(named) > 1:  # one colour per run, one line style per split: n + 2 legend entries, not 2n
        handles = [Line2D([], [], color=f"C{i % 10}", marker="o", label=name) for i, name in enumerate(named)]
        handles += [Line2D([], [], color="black", linestyle=s, label=split) for split, s in SPLIT_STYLES.items()]
        fig.legend(handles=handles, loc="outside right upper")
    only = next(iter(named)) if len(named) == 1 else ""
    fig.suptitle(title or f"Training curves{': ' + only if only else ''}", fontsize=13)
    return fig


def confusion_counts(predictions: SplitPredictions) -> torch.Tensor:
    """int64 (10, 10): row = true digit, column = predicted digit."""
    pairs = predictions.labels * NUM_CLASSES + predictions.preds
    return torch.bincount(pairs, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)


def confusion_matrix(predictions: SplitPredictions) -> Figure:
    """The confusion matrix: counts in the cells, colour = share of each true digit's row."""
    counts = confusion_counts(predictions)
    shares = counts / counts.sum(1, keepdim=True).clamp(min=1)
    fig = Figure(figsize=(7.6, 6.6), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    cells = torch.cartesian_prod(torch.arange(NUM_CLASSES), torch.arange(NUM_CLASSES)).tolist()
    for (true, pred), count in zip(cells, counts.flatten().tolist(), strict=True):
        color = "white" if shares[true, pred] > 0.5 else ("silver" if count == 0 else "black")
        ax.text(pred, true, str(count), ha="center", va="center", fontsize=9, color=color, in_layout=False)
    ax.set_xticks(range(NUM_CLASSES))
    ax.set_yticks(range(NUM_CLASSES))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    fig.colorbar(image, ax=ax, label="share of the true digit's images (row-normalised)", shrink=0.85)
    ax.set_title(f"Confusion matrix: {len(predictions):,} digits, {predictions.accuracy:.2%} right", fontsize=13)
    return fig


def confident_mistakes(predictions: SplitPredictions, count: int) -> torch.Tensor:
    """Indices of the `count` wrong predictions made with the highest probability, most confident first."""
    wrong = predictions.wrong.nonzero().flatten()
    confidence = predictions.probs[wrong].max(1).values
    return wrong[confidence.argsort(descending=True, stable=True)][:count]


def mistakes_gallery(predictions: SplitPredictions, *, count: int = 15, cols: int = 5) -> Figure:
    """The most confident wrong predictions, each with its top-3 probabilities."""
    chosen = confident_mistakes(predictions, count).tolist()
    n_wrong = int(predictions.wrong.sum())
    if not chosen:
        return _message(f"No mistakes: all {len(predictions):,} digits are right")
    title = f"The {len(chosen)} most confident mistakes\n(of {n_wrong:,} on {len(predictions):,} digits)"
    fig, axes = _digit_axes(len(chosen), cols, cell=(1.9, 2.6), image=1.6, above=0.25, title=title)
    for ax, index in zip(axes, chosen, strict=True):
        _digit(ax, predictions.images[index])
        true = int(predictions.labels[index])
        top = predictions.probs[index].topk(3)
        ax.set_title(f"#{index}: true {true}, pred {int(top.indices[0])}", fontsize=9, color=WRONG_COLOR)
        lines = [f"{digit}: {p:6.1%}{'  true' if digit == true else ''}"
                 for p, digit in zip(top.values.tolist(), top.indices.tolist(), strict=True)]
        ax.set_xlabel("\n".join(lines), fontsize=9, family="monospace", loc="left")
        for spine in ax.spines.values():
            spine.set(color=WRONG_COLOR, linewidth=1.5)
    return fig


def augmented_grid(image: torch.Tensor, *, strength: float = 1.0, elastic: float = 0.0, rows: int = 4, cols: int = 6,
                   seed: int = 0, title: str | None = None) -> Figure:
    """One digit and rows × cols − 1 augmented copies of it, as training draws them (`mnistlab.augment`).

    Args:
        image: uint8 pixels (0-255) or floats on a 0-1 scale, shaped (28, 28) or (1, 28, 28).
        strength, elastic: as `TrainConfig.augment` and `TrainConfig.elastic`.
        seed: the generator's seed; the same seed draws the same copies.
    """
    from .augment import augment  # here: only this figure needs it

    if not (1 <= rows * cols <= 400 and rows >= 1 and cols >= 1):
        raise PlotError(f"augmented_grid: rows and cols must be ≥ 1 with at most 400 cells, got {rows} × {cols}")
    if not (0 <= strength < 10 and 0 <= elastic < 10):
        raise PlotError(f"augmented_grid: strength and elastic must be ≥ 0 and < 10, got {strength}, {elastic}")
    pixels = _unit_pixels(image)[None, None]  # (1, 1, 28, 28)
    n = rows * cols
    copies = augment(pixels.expand(n - 1, -1, -1, -1).contiguous(), torch.Generator().manual_seed(seed),
                     strength=strength, elastic=elastic)
    heading = title or "Augmented copies"
    fig, axes = _digit_axes(n, cols, cell=(1.35, 1.45), image=1.2, above=0.2,
                            title=f"{heading}\n(strength {strength:g}, elastic {elastic:g} px, seed {seed})")
    for i, (ax, digit) in enumerate(zip(axes, torch.cat([pixels, copies]), strict=True)):
        _digit(ax, digit.clamp(0, 1))
        ax.set_title("original" if i == 0 else f"copy {i}", fontsize=8, color="black" if i == 0 else "dimgray", pad=2)
    return fig
