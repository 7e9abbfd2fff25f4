"""The parts the figures are built of: many short texts drawn at once, digits laid out as one image, and
figures whose texts are never read as TeX. `mnistlab.plots` composes its figures from them."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D

from .data import IMAGE_SIZE
from .errors import PlotError

TITLE_HEIGHT = 0.75  # inches above a grid of digits, for its two-line title
PIXEL_INCHES = 0.04  # one digit pixel in a grid of digits: 4 PNG pixels at 100 dpi, so a digit is 112 px wide
MIN_GRID_WIDTH = 5.0  # inches: room for that title over a narrow grid
NAME_CHAR_POINTS = 0.62  # a sans-serif character is about this many ems wide, to size cells and margins by


def plain_text(figure_function):
    """Build a figure whose texts are drawn as they are: a "$" in a class or file name is a dollar sign.

    Matplotlib reads text between dollar signs as TeX math and fails on what it cannot parse, and the
    names in a figure come from anyone's checkpoint or file name. Each text keeps the setting it was
    built with, so the figure draws the same when saved later.
    """
    @functools.wraps(figure_function)
    def build(*args, **kwargs):
        with rc_context({"text.parse_math": False}):
            return figure_function(*args, **kwargs)
    return build


def unit_pixels(image: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 or float 0-1 pixels shaped (28, 28) or (1, 28, 28) → float (28, 28) on a 0-1 scale."""
    image = torch.as_tensor(image).detach().cpu()
    if image.numel() != IMAGE_SIZE * IMAGE_SIZE:
        raise PlotError(f"expected one 28x28 image, got shape {tuple(image.shape)}")
    pixels = image.reshape(IMAGE_SIZE, IMAGE_SIZE).float()
    return pixels / 255 if image.dtype == torch.uint8 else pixels


class CellText(PathCollection):
    """Many short strings, each centred on (or, with `ha="left"`, starting at) a point in data units.

    One Text artist costs about a millisecond to build and draw, and the pixel view writes 784 of
    them. Here each distinct string becomes a glyph outline once (`TextPath`), and all of them are
    drawn in one call, as a scatter plot draws its markers. The strings are kept in `.texts`.
    """

    def __init__(self, fig: Figure, texts: Sequence[str], xy: Sequence[tuple[float, float]], *, size: float,
                 colors: Sequence | str, bold: Sequence[bool] | bool = False, ha: str = "center",
                 family: str = "sans-serif"):
        self.texts = list(texts)
        bold = [bold] * len(self.texts) if isinstance(bold, bool) else list(bold)
        fonts = {weight: FontProperties(family=family, size=size, weight=weight) for weight in ("normal", "bold")}
        # Bounds of the outline's vertices (its control points): close enough to centre by, and far
        # quicker than Path.get_extents, which solves every curve for its extremes.
        zero = TextPath((0, 0), "0", prop=fonts["normal"]).vertices
        glyphs = {}
        for key in set(zip(self.texts, bold, strict=True)):
            path = TextPath((0, 0), key[0], prop=fonts["bold" if key[1] else "normal"])
            blank = not len(path.vertices)  # "" or spaces: nothing to centre
            dx = 0 if ha == "left" or blank else -(path.vertices[:, 0].min() + path.vertices[:, 0].max()) / 2
            # Every string shares the baseline of a "0" centred on its point, as a line of text would.
            glyphs[key] = path.transformed(Affine2D().translate(dx, -(zero[:, 1].min() + zero[:, 1].max()) / 2))
        # The outlines are in points; 1/72 inch each, whatever dpi the figure is saved at.
        super().__init__([glyphs[key] for key in zip(self.texts, bold, strict=True)], offsets=xy,
                         transform=Affine2D().scale(1 / 72) + fig.dpi_scale_trans, facecolors=colors,
                         edgecolors="none")
        self.set_in_layout(False)


def add_cell_text(ax: Axes, texts: Sequence[str], xy: Sequence[tuple[float, float]], *, clip: bool = True,
                  **style) -> CellText:
    """Draw `CellText` on `ax`, its points in `ax`'s data units (see `CellText` for `style`).

    `clip=False` lets the text stand outside the axes, as tick labels do.
    """
    cells = CellText(ax.get_figure(root=True), texts, xy, **style)
    cells.set_offset_transform(ax.transData)
    cells.set_clip_on(clip)
    ax.add_collection(cells, autolim=False)
    return cells


def text_inches(text: str, size: float) -> float:
    """About how wide `text` is at `size` points, in inches."""
    return len(text) * size * NAME_CHAR_POINTS / 72


def text_pixels(text: str, size: float) -> int:
    """About how many digit pixels wide `text` is at `size` points."""
    return math.ceil(text_inches(text, size) / PIXEL_INCHES)


@plain_text
def message_figure(text: str) -> Figure:
    """A small figure that says why there is nothing to draw."""
    fig = Figure(figsize=(6, 1.2))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=13)
    return fig


@dataclass(frozen=True)
class Mosaic:
    """Digits laid out in cells of one image, under a two-line title.

    Every length is in digit pixels (a digit is 28 of them) and one digit pixel is drawn as
    `PIXEL_INCHES`, a whole number of PNG pixels, so the digits stay crisp. Cell (row, col) holds
    its digit `top` pixels below the cell's top edge, centred across the cell.
    """

    fig: Figure
    ax: Axes
    cell: tuple[int, int]  # (width, height)
    top: int

    def corner(self, row: int, col: int) -> tuple[int, int]:
        """(x, y) of the digit's top-left corner in cell (row, col); y grows downwards."""
        return col * self.cell[0] + (self.cell[0] - IMAGE_SIZE) // 2, row * self.cell[1] + self.top


def digit_mosaic(images: Mapping[tuple[int, int], torch.Tensor], rows: int, cols: int, *, cell: tuple[int, int],
                 top: int, title: str, header: int = 0) -> Mosaic:
    """A figure with `images` {(row, col): digit} drawn in a rows × cols grid of cells, as one image.

    One imshow of the whole grid, with fixed positions: one axes per digit, placed by a layout engine,
    took most of a grid's drawing time. `header` pixels are left free above the first row.
    """
    height, width = rows * cell[1] + header, cols * cell[0]
    inches = (max(width * PIXEL_INCHES, MIN_GRID_WIDTH), height * PIXEL_INCHES + TITLE_HEIGHT)
    fig = Figure(figsize=inches)
    fig.suptitle(title, y=1 - 0.1 / inches[1], va="top", fontsize=13)
    left = (inches[0] - width * PIXEL_INCHES) / 2
    ax = fig.add_axes((left / inches[0], 0, width * PIXEL_INCHES / inches[0], height * PIXEL_INCHES / inches[1]))
    ax.set_axis_off()
    mosaic = Mosaic(fig, ax, cell, top + header)
    canvas = torch.full((height, width), float("nan"))  # NaN: no digit here, drawn as the white background
    for (row, col), image in images.items():
        x, y = mosaic.corner(row, col)
        canvas[y:y + IMAGE_SIZE, x:x + IMAGE_SIZE] = unit_pixels(image)
    ax.imshow(canvas.numpy(), cmap=colormaps["gray"].with_extremes(bad="white"), vmin=0, vmax=1,
              interpolation="nearest", extent=(0, width, height, 0))
    return mosaic


def frames(mosaic: Mosaic, cells: Sequence[tuple[int, int]], colors: Sequence[str], widths: Sequence[float]) -> None:
    """A coloured frame around the digit of each of `cells`."""
    boxes = [Rectangle(mosaic.corner(row, col), IMAGE_SIZE, IMAGE_SIZE) for row, col in cells]
    mosaic.ax.add_collection(PatchCollection(boxes, facecolors="none", edgecolors=colors, linewidths=widths),
                             autolim=False)
