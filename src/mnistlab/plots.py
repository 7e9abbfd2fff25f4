"""Pictures of digits, predictions and training runs.

Each figure function returns a `matplotlib.figure.Figure` built without pyplot, so nothing here
needs a display or touches global plotting state: a notebook shows the figure, `save_figure`
writes it as PNG, and `show_figure` opens a window only when asked to (`--show`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ._figure_parts import (
    PIXEL_INCHES,
    CellText,
    add_cell_text,
    digit_mosaic,
    frames,
    message_figure,
    plain_text,
    text_inches,
    text_pixels,
    unit_pixels,
)
from ._outputs import atomic_path, check_output_file
from .augment import augment
from .config import PlotOptions, check_value
from .data import IMAGE_SIZE, MNIST_MEAN, MNIST_STD, NUM_CLASSES, normalize
from .errors import PlotError
from .evaluation import SplitPredictions

__all__ = ["SplitPredictions", "CellText", "PlotError", "pixel_view", "prediction_grid", "training_curves",
           "confusion_counts", "confusion_matrix", "confident_mistakes", "mistakes_gallery", "augmented_grid",
           "save_png", "save_figure", "check_figure_path", "show_figure"]

# Green and red; a wrong cell also gets a bold label and a thick frame, so colour blindness loses nothing.
RIGHT_COLOR = "#1a7f37"
WRONG_COLOR = "#cf222e"
DPI = 100  # figures are sized in inches for reading at 100% zoom at this resolution
PNG_COMPRESS_LEVEL = 1
SPLIT_STYLES = {"train": "--", "test": "-"}  # line style of each split in the curves
GRID_MODES = ("class", "random")  # prediction_grid: one column per digit, or a sample of the whole split
GRID_CELL = (34, 40)  # a prediction grid's cell (width, height) in digit pixels: the digit, its index and caption
GRID_HEADER = 9  # digit pixels above a by-class grid, for the digit heading each column
NON_INTERACTIVE_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def _check_options(**values: object) -> None:
    """`PlotError` (a ValueError) naming the first value outside its declared bounds (`config.PlotOptions`)."""
    try:
        for name, value in values.items():
            check_value(PlotOptions, name, value)
    except ValueError as e:
        raise PlotError(str(e)) from None


def save_png(fig: Figure, file: str | Path | BinaryIO, dpi: int = DPI) -> None:
    """Write `fig` as a PNG of exactly its size × `dpi` pixels to a path or a binary file."""
    # zlib level 1: figures of flat colours compress almost as well as at Pillow's default level, in far less time.
    fig.savefig(file, format="png", dpi=dpi, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})


def check_figure_path(path: str | Path) -> Path:
    """Before any drawing: `OutputError` unless a figure can be written at `path` (see `save_figure`)."""
    return check_output_file(path)


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write `fig` as a PNG of exactly its size × `dpi` pixels, atomically; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_png(fig, tmp, dpi)
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


@plain_text
def pixel_view(image: torch.Tensor, label: int | None = None, *, normalized: bool = False,
               mean: float = MNIST_MEAN, std: float = MNIST_STD, title: str | None = None) -> Figure:
    """One digit as its 28×28 grid, each pixel's value written in its cell.

    Args:
        image: uint8 pixels (0-255) or floats on a 0-1 scale, shaped (28, 28) or (1, 28, 28).
        label: the digit's label, named in the title.
        normalized: write the model's input `(x - mean) / std` instead of 0-255.
        title: the figure's title (default: "Pixel values", with the label).
    """
    pixels = unit_pixels(image)
    values = normalize(pixels, mean, std)[0, 0] if normalized else (pixels * 255).round()
    texts = ([f"{v:.1f}".replace("-0.0", "0.0") for v in values.flatten().tolist()] if normalized else
             [f"{v:.0f}" for v in values.flatten().tolist()])
    # Fixed margins (inches) instead of a layout engine: measuring 56 tick labels is slow and the answer never changes.
    fig = Figure(figsize=(10, 10.6))
    ax = fig.add_axes((0.6 / 10, 0.6 / 10.6, 9.2 / 10, 9.2 / 10.6))
    ax.imshow(pixels.numpy(), cmap="gray", vmin=0, vmax=1)
    rows, cols = torch.meshgrid(torch.arange(IMAGE_SIZE), torch.arange(IMAGE_SIZE), indexing="ij")
    # Dark text on light cells, light text on dark ones, so every value can be read; the switch sits
    # where black and white text have equal contrast on grey (sRGB ≈ 0.45).
    colors = ["black" if p > 0.45 else "white" for p in pixels.flatten().tolist()]
    add_cell_text(ax, texts, torch.stack([cols.flatten(), rows.flatten()], 1).tolist(), size=6.5, colors=colors)
    # Row and column numbers as cell text too: 56 matplotlib ticks cost more than the rest of the figure.
    ax.set_xticks([])
    ax.set_yticks([])
    numbers = [str(i) for i in range(IMAGE_SIZE)]
    add_cell_text(ax, numbers, [(i, IMAGE_SIZE - 0.5 + 0.45) for i in range(IMAGE_SIZE)], size=7, colors="black",
                  clip=False)
    add_cell_text(ax, numbers, [(-0.5 - 0.55, i) for i in range(IMAGE_SIZE)], size=7, colors="black", clip=False)
    ax.set_xlabel("column", labelpad=17)
    ax.set_ylabel("row", labelpad=20)
    scale = f"normalised: (x − {mean:g}) / {std:g}, x on a 0–1 scale" if normalized else "0–255"
    heading = title or ("Pixel values" if label is None else f"Pixel values: label {label}")
    ax.set_title(f"{heading}\n({scale})", fontsize=13)
    return fig


def _sample(candidates: torch.Tensor, n: int, seed: int | None) -> torch.Tensor:
    """The first `n` candidates, or a repeatable random `n` of them when a seed is given."""
    if seed is not None:
        candidates = candidates[torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))]
    return candidates[:n]


def _pick_digits(predictions: SplitPredictions, rows: int, cols: int, mode: str, errors_only: bool,
                 seed: int | None) -> dict[tuple[int, int], int]:
    """{(row, col): index} of the digits a prediction grid shows (see `prediction_grid`)."""
    allowed = predictions.wrong if errors_only else torch.ones(len(predictions), dtype=torch.bool)
    if mode == "random":
        picked = _sample(allowed.nonzero().flatten(), rows * cols, seed).tolist()
        return {divmod(i, cols): index for i, index in enumerate(picked)}
    columns = [_sample((allowed & (predictions.labels == digit)).nonzero().flatten(), rows, seed).tolist()
               for digit in range(NUM_CLASSES)]
    return {(row, col): index for col, column in enumerate(columns) for row, index in enumerate(column)}


def _grid_title(predictions: SplitPredictions, shown: list[int], rows: int, mode: str, errors_only: bool) -> str:
    """The two-line title of a prediction grid showing the digits `shown`."""
    n, n_wrong = len(predictions), int(predictions.wrong.sum())
    accuracy = f"model accuracy {predictions.accuracy:.2%}"
    here = int(predictions.wrong[shown].sum())
    noun, truth = predictions.noun, predictions.label_noun
    if mode == "class" and errors_only:
        return (f"Up to {rows} mistakes on each {truth} (columns: the true {truth})\n"
                f"{n_wrong:,} mistakes on {n:,} {noun}s · {accuracy}")
    if mode == "class":
        return (f"Predictions on {rows} test {noun}s of each class (columns: the true {truth})\n"
                f"{here} wrong here · {accuracy}")
    if errors_only:
        return f"{len(shown)} of the {n_wrong:,} mistakes\non {n:,} {noun}s ({accuracy})"
    return f"Predictions on {len(shown)} of {n:,} {noun}s\n{here} wrong here · {accuracy}"


@plain_text
def prediction_grid(predictions: SplitPredictions, *, rows: int = 5, cols: int = 5, mode: str = "class",
                    errors_only: bool = False, seed: int | None = None) -> Figure:
    """Test digits with their predictions: green where right, red (bold, thick frame) where wrong.

    Args:
        predictions: from `compute_predictions`.
        rows: digits per column ("class") or rows of the grid ("random").
        cols: columns of the grid in "random" mode; "class" mode always has ten.
        mode: "class": one column per digit 0-9 holding `rows` digits of that class, so every digit
            appears; "random": a rows × cols sample of the whole split.
        errors_only: draw only wrong predictions (in "class" mode, each column's mistakes on its digit).
        seed: draw a repeatable random sample; None takes the first digits in order.
    """
    if mode not in GRID_MODES:
        raise PlotError(f"mode must be one of {', '.join(GRID_MODES)}, got {mode!r}")
    _check_options(rows=rows, cols=cols, seed=seed)
    chosen = _pick_digits(predictions, rows, cols, mode, errors_only, seed)
    if not chosen:
        return message_figure(f"No mistakes: all {len(predictions):,} {predictions.noun}s are right")
    cells, indices = list(chosen), list(chosen.values())
    by_class = mode == "class"
    names = predictions.classes
    preds, labels = predictions.preds.tolist(), predictions.labels.tolist()
    # Long class names: the truth goes on a line of its own under the prediction, and the cells widen to fit.
    two_lines = predictions.named and not by_class
    captions = [f"pred {names[preds[i]]}" + ("" if by_class or two_lines else f" / true {names[labels[i]]}")
                for i in indices]
    cell_size = GRID_CELL
    if predictions.named:
        widest = max(text_pixels(f"pred {name}", 10) for name in names)
        cell_size = (max(GRID_CELL[0], widest + 2), GRID_CELL[1] + (6 if two_lines else 0))
    header = GRID_HEADER if by_class else 0
    mosaic = digit_mosaic({cell: predictions.images[index] for cell, index in chosen.items()},
                     max(row for row, _ in cells) + 1, NUM_CLASSES if by_class else cols, cell=cell_size, top=5,
                     header=header, title=_grid_title(predictions, indices, rows, mode, errors_only))
    is_wrong = [bool(predictions.wrong[index]) for index in indices]
    colors = [WRONG_COLOR if w else RIGHT_COLOR for w in is_wrong]
    corners = [mosaic.corner(*cell) for cell in cells]
    centre = IMAGE_SIZE / 2
    add_cell_text(mosaic.ax, [f"#{index}" for index in indices], [(x + centre, y - 2.2) for x, y in corners],
                  size=8, colors="dimgray")
    add_cell_text(mosaic.ax, captions, [(x + centre, y + IMAGE_SIZE + 3) for x, y in corners], size=10,
                  colors=colors, bold=is_wrong)
    if two_lines:
        add_cell_text(mosaic.ax, [f"true {names[labels[i]]}" for i in indices],
                      [(x + centre, y + IMAGE_SIZE + 8.5) for x, y in corners], size=10, colors="dimgray")
    frames(mosaic, cells, colors, [2.5 if w else 1 for w in is_wrong])
    if by_class:  # the class over each column, and "none" in a column without an example to show
        middles = [(col + 0.5) * cell_size[0] for col in range(NUM_CLASSES)]
        add_cell_text(mosaic.ax, list(names), [(x, header / 2) for x in middles],
                      size=10 if predictions.named else 15, colors="black", bold=True)
        empty = sorted(set(range(NUM_CLASSES)) - {col for _, col in cells})
        add_cell_text(mosaic.ax, ["none"] * len(empty), [(middles[col], header + 20) for col in empty], size=10,
                      colors="dimgray")
    return mosaic.fig


def _epoch_rows(history: Sequence) -> list[dict]:
    """metrics.json rows (dicts) or `Run.history` (EpochMetrics) → dicts."""
    return [row if isinstance(row, Mapping) else dataclasses.asdict(row) for row in history]


@plain_text
def training_curves(runs: Sequence | Mapping[str, Sequence], *, title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, train (dashed) and test (solid), in two panels.

    Args:
        runs: one run's epoch rows (metrics.json's "epochs", or `Run.history`), or a mapping
            {name: rows} to overlay several runs, one colour each, with a legend.
        title: the figure's title (default: "Training curves", whoever draws them: `mnistlab train`,
            `plot curves` and the report show one run's curves alike).
    """
    named = dict(runs) if isinstance(runs, Mapping) else {"": runs}
    if not named or not all(named.values()):
        raise PlotError("training_curves needs at least one run with at least one epoch")
    if len(named) == 1:  # fixed margins in inches: a layout engine is slow, and one run's panels never move
        fig = Figure(figsize=(11, 4.6))
        axes = [fig.add_axes((left / 11, 0.6 / 4.6, 4.45 / 11, 3.35 / 4.6)) for left in (0.8, 6.3)]
    else:  # the legend beside the panels is as wide as the run names: let the layout engine make room
        fig = Figure(figsize=(11, 4.6), layout="constrained")
        axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    panels = {"loss": (axes[0], 1, "Loss", "cross-entropy loss", "upper right"),
              "acc": (axes[1], 100, "Accuracy", "accuracy (%)", "lower right")}
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
    fig.suptitle(title or "Training curves", fontsize=13)
    return fig


def confusion_counts(predictions: SplitPredictions) -> torch.Tensor:
    """int64 (10, 10): row = true digit, column = predicted digit."""
    pairs = predictions.labels * NUM_CLASSES + predictions.preds
    return torch.bincount(pairs, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)


@plain_text
def confusion_matrix(predictions: SplitPredictions) -> Figure:
    """The confusion matrix: counts in the cells; right answers blue, errors red, each on its own scale.

    The diagonal holds about a thousand per digit and the errors a few dozen at most, so on one scale
    every error would look white. On their own scale the worst confusions stand out, and the scale
    starts at a pale red so that a single error still shows; empty cells stay white, with a faint 0.
    """
    counts = confusion_counts(predictions)
    diagonal = torch.eye(NUM_CLASSES, dtype=torch.bool)
    errors = counts.masked_fill(diagonal, 0)
    # Long class names need a wider left margin (y ticks) and a taller bottom one (x ticks, turned 45°).
    longest = max(text_inches(name, 10) for name in predictions.classes) if predictions.named else 0
    dx, dy = longest, longest * 0.75
    width, height = 7.8 + dx, 6.6 + dy
    fig = Figure(figsize=(width, height))
    # Fixed positions in inches (matrix, then two colour bars): a layout engine is slow and finds the same.
    ax = fig.add_axes(((0.75 + dx) / width, (0.7 + dy) / height, 5.3 / width, 5.3 / height))
    right_scale = Normalize(0, max(int(counts.diagonal().max()), 1))
    error_scale = Normalize(1, max(int(errors.max()), 2))
    blues = colormaps["Blues"].with_extremes(bad="none")
    reds = ListedColormap(colormaps["Reds"](np.linspace(0.15, 1, 256))).with_extremes(bad="none")
    # Masked (NaN) cells are transparent, so each layer shows only its own cells over the white axes.
    ax.imshow(counts.float().masked_fill(~diagonal, float("nan")).numpy(), cmap=blues, norm=right_scale)
    ax.imshow(errors.float().masked_fill(errors == 0, float("nan")).numpy(), cmap=reds, norm=error_scale)
    cells = torch.cartesian_prod(torch.arange(NUM_CLASSES), torch.arange(NUM_CLASSES)).tolist()
    colors = []
    for (true, pred), count in zip(cells, counts.flatten().tolist(), strict=True):
        shade = right_scale(count) if true == pred else error_scale(count)
        colors.append("silver" if count == 0 else "white" if shade > 0.6 else "black")
    add_cell_text(ax, [str(c) for c in counts.flatten().tolist()], [(pred, true) for true, pred in cells], size=9,
                  colors=colors)
    ax.set_xticks(range(NUM_CLASSES), predictions.classes, rotation=45 if predictions.named else 0,
                  ha="right" if predictions.named else "center", rotation_mode="anchor")
    ax.set_yticks(range(NUM_CLASSES), predictions.classes)
    what = predictions.label_noun
    ax.set_xlabel(f"predicted {what}")
    ax.set_ylabel(f"true {what}")
    ax.set_title(f"Confusion matrix: {len(predictions):,} {predictions.noun}s, {predictions.accuracy:.2%} right",
                 fontsize=13)
    for bottom, scale, cmap, label in ((3.45, error_scale, reds, "errors (off the diagonal)"),
                                       (0.7, right_scale, blues, "right answers (the diagonal)")):
        bar = fig.colorbar(ScalarMappable(scale, cmap), cax=fig.add_axes(
            ((6.35 + dx) / width, (bottom + dy) / height, 0.2 / width, 2.55 / height)))
        bar.set_label(label)
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    return fig


def confident_mistakes(predictions: SplitPredictions, count: int) -> torch.Tensor:
    """Indices of the `count` wrong predictions made with the highest probability, most confident first."""
    wrong = predictions.wrong.nonzero().flatten()
    confidence = predictions.probs[wrong].max(1).values
    return wrong[confidence.argsort(descending=True, stable=True)][:count]


@plain_text
def mistakes_gallery(predictions: SplitPredictions, *, count: int = 15, cols: int = 5) -> Figure:
    """The most confident wrong predictions, each with its top-3 probabilities."""
    _check_options(count=count, cols=cols)
    chosen = confident_mistakes(predictions, count).tolist()
    n_wrong = int(predictions.wrong.sum())
    noun = predictions.noun
    if not chosen:
        return message_figure(f"No mistakes: all {len(predictions):,} {noun}s are right")
    title = f"The {len(chosen)} most confident mistakes\n(of {n_wrong:,} on {len(predictions):,} {noun}s)"
    names, cells = predictions.classes, [divmod(i, cols) for i in range(len(chosen))]
    # Long class names: the top-3 lines start at the cell's edge rather than the image's, and the cells widen to
    # fit them (monospace characters are 0.6 em); the prediction is the first of those lines, not in the title.
    pad = max(len(name) for name in names)
    cell = (48, 52)
    if predictions.named:
        cell = (max(cell[0], math.ceil((pad + 15) * 9 * 0.6 / 72 / PIXEL_INCHES) + 8), cell[1])
    mosaic = digit_mosaic({cell: predictions.images[index] for cell, index in zip(cells, chosen, strict=True)},
                     cells[-1][0] + 1, min(cols, len(chosen)), cell=cell, top=6, title=title)
    corners = [mosaic.corner(*cell) for cell in cells]
    indent = (cell[0] - IMAGE_SIZE) // 2 - 2 if predictions.named else 0
    titles, lines, points = [], [], []
    for index, (x, y) in zip(chosen, corners, strict=True):
        true = int(predictions.labels[index])
        top = predictions.probs[index].topk(3)
        titles.append(f"#{index}: true {names[true]}" if predictions.named
                      else f"#{index}: true {names[true]}, pred {names[int(top.indices[0])]}")
        for line, (p, label) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True)):
            lines.append(f"{names[label] + ':':<{pad + 1}} {p:6.1%}{'  true' if label == true else ''}")
            points.append((x - indent, y + IMAGE_SIZE + 4 + 3.3 * line))
    add_cell_text(mosaic.ax, titles, [(x + IMAGE_SIZE / 2, y - 2.8) for x, y in corners], size=9, colors=WRONG_COLOR)
    add_cell_text(mosaic.ax, lines, points, size=9, colors="black", ha="left", family="monospace")
    frames(mosaic, cells, [WRONG_COLOR] * len(cells), [1.5] * len(cells))
    return mosaic.fig


@plain_text
def augmented_grid(image: torch.Tensor, *, strength: float = 1.0, elastic: float = 0.0, rows: int = 4, cols: int = 6,
                   seed: int = 0, title: str | None = None) -> Figure:
    """One digit and rows × cols − 1 augmented copies of it, as training draws them (`mnistlab.augment`).

    Args:
        image: uint8 pixels (0-255) or floats on a 0-1 scale, shaped (28, 28) or (1, 28, 28).
        strength, elastic: as `TrainConfig.augment` and `TrainConfig.elastic`.
        seed: the generator's seed; the same seed draws the same copies.
    """
    if not (rows >= 1 and cols >= 1 and rows * cols <= 400):
        raise PlotError(f"augmented_grid: rows and cols must be ≥ 1 with at most 400 cells, got {rows} × {cols}")
    if not (0 <= strength < 10 and 0 <= elastic < 10):
        raise PlotError(f"augmented_grid: strength and elastic must be ≥ 0 and < 10, got {strength}, {elastic}")
    pixels = unit_pixels(image)[None, None]  # (1, 1, 28, 28)
    n = rows * cols
    copies = augment(pixels.expand(n - 1, -1, -1, -1).contiguous(), torch.Generator().manual_seed(seed),
                     strength=strength, elastic=elastic)
    digits = torch.cat([pixels, copies])[:, 0].clamp(0, 1)  # (n, 28, 28)
    heading = f"{title or 'Augmented copies'}\n(strength {strength:g}, elastic {elastic:g} px, seed {seed})"
    cells = [divmod(i, cols) for i in range(n)]
    mosaic = digit_mosaic(dict(zip(cells, digits, strict=True)), rows, cols, cell=GRID_CELL, top=5, title=heading)
    corners = [mosaic.corner(*cell) for cell in cells]
    add_cell_text(mosaic.ax, ["original", *(f"copy {i}" for i in range(1, n))],
                  [(x + IMAGE_SIZE / 2, y + IMAGE_SIZE + 3) for x, y in corners], size=8,
                  colors=["black", *["dimgray"] * (n - 1)])
    return mosaic.fig
