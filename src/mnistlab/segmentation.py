"""Find the digits of a handwritten number: the marks on a line, in reading order.

A number on paper is brought to ink (white on black, paper 0) by the same rules as one digit
(`mnistlab.preprocessing`: polarity, uneven light, contrast), then cut into marks:

    find_marks        connected components of the ink, specks dropped (by the line's digit height),
                      pieces of one digit merged (a 5 or a 4 in two strokes), left to right
    cut_candidates    for a mark too wide to be one digit (digits that touch or overlap): the
                      columns where it may be cut, at the minima of its ink's vertical profile
    pieces            the line over-segmented: narrow marks whole, wide ones cut at every candidate
    crop_pieces       consecutive pieces as one MNIST digit (28×28), by predict's own steps

Which pieces make a digit is the classifier's choice, in `mnistlab.reading` (segmentation by recognition).
Nothing here imports torch or knows about models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .errors import NoDigitError
from .preprocessing import INK_THRESHOLD, centre_by_mass, fit_box, stroke_width

SPECK_OF_HEIGHT = 0.2  # a mark whose long side is under this fraction of the line's digit height is a speck
TALL_OF_TALLEST = 0.5  # the line's digit height: the median height of the marks at least this fraction of the tallest
MERGE_OVERLAP = 0.5  # marks whose columns overlap by this fraction of the narrower one are one digit's pieces
MAX_MARKS = 200  # more marks than this (specks left out) is not a number: refused with one line
MAX_DIGIT_WIDTH = 1.0  # a mark wider than this many digit heights may hold several digits: cuts are tried
MIN_PIECE_WIDTH = 0.12  # candidate cuts are at least this many digit heights apart (a "1" is ~0.15 wide)
MAX_CUTS = 14  # candidate cut columns per wide mark: bounds the crops the classifier scores to ~C(16, 2)
_EIGHT_CONNECTED = np.ones((3, 3), bool)


@dataclass
class Mark:
    """One mark of the line: its components' labels and its box (top, left, bottom, right) in working pixels."""

    labels: list[int]
    box: tuple[int, int, int, int]

    @property
    def width(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def height(self) -> int:
        return self.box[2] - self.box[0]


@dataclass
class Line:
    """The ink of a line (float (H, W), white on black), its components and its marks in reading order."""

    ink: np.ndarray
    components: np.ndarray  # int (H, W): each pixel's component label, 0 for paper
    marks: list[Mark]
    digit_height: float  # pixels
    _inks: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # `mark_ink`'s answers, by mark

    def mark_ink(self, index: int) -> np.ndarray:
        """Mark `index`'s ink alone in its box: float (h, w); another mark's strokes inside the box are left out."""
        if index not in self._inks:
            top, left, bottom, right = self.marks[index].box
            own = np.isin(self.components[top:bottom, left:right], [0, *self.marks[index].labels])
            self._inks[index] = np.where(own, self.ink[top:bottom, left:right], 0)
        return self._inks[index]


def find_marks(ink: np.ndarray, max_marks: int = MAX_MARKS) -> Line:
    """The marks of a line of ink (specks dropped, broken digits merged), left to right.

    Raises:
        NoDigitError: no ink at all, or more than `max_marks` marks (not a number: noise, a drawing, text).
    """
    components, count = ndimage.label(ink > INK_THRESHOLD, structure=_EIGHT_CONNECTED)
    if count == 0:
        raise NoDigitError("no number found (the image is blank)")
    extents = ndimage.find_objects(components)
    boxes = np.array([(r.start, c.start, r.stop, c.stop) for r, c in extents])  # (count, 4)
    heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    tall = heights >= TALL_OF_TALLEST * heights.max()
    digit_height = float(np.median(heights[tall]))
    kept = np.flatnonzero(np.maximum(heights, widths) >= SPECK_OF_HEIGHT * digit_height)
    if len(kept) > max_marks:
        raise NoDigitError(f"no number found ({len(kept)} marks, more than the {max_marks} a number may have)")
    marks = [Mark([int(i) + 1], tuple(int(v) for v in boxes[i])) for i in kept]
    marks = _merge_pieces(sorted(marks, key=lambda m: m.box[1] + m.box[3]))
    specks = (components > 0) & ~np.isin(components, [label for m in marks for label in m.labels])
    return Line(np.where(specks, 0, ink), components, marks, digit_height)  # a stroke's faint edge stays


def _merge_pieces(marks: list[Mark]) -> list[Mark]:
    """Merge marks, sorted by centre, whose columns overlap by MERGE_OVERLAP of the narrower one."""
    merged: list[Mark] = []
    for mark in marks:
        if merged and overlap(merged[-1], mark) >= MERGE_OVERLAP * min(merged[-1].width, mark.width):
            last = merged.pop()
            box = (min(last.box[0], mark.box[0]), min(last.box[1], mark.box[1]),
                   max(last.box[2], mark.box[2]), max(last.box[3], mark.box[3]))
            mark = Mark(last.labels + mark.labels, box)
        merged.append(mark)
    return merged


def overlap(a: Mark, b: Mark) -> int:
    """How many columns two marks share; negative: how many columns lie between them."""
    return min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])


def is_wide(line: Line, mark: Mark) -> bool:
    """Whether the mark may hold several digits (touching or overlapping ones)."""
    return mark.width > MAX_DIGIT_WIDTH * max(line.digit_height, mark.height)


def cut_candidates(ink: np.ndarray, digit_height: float, max_cuts: int = MAX_CUTS) -> list[int]:
    """Columns where a wide mark's ink (h, w) may be cut: the deepest minima of its smoothed vertical
    profile (the ink per column), at most `max_cuts`, sorted; the edges 0 and w not included."""
    profile = ndimage.uniform_filter1d((ink > INK_THRESHOLD).sum(0).astype(np.float32), 3)
    w = len(profile)
    margin = max(1, round(MIN_PIECE_WIDTH * digit_height))
    inner = np.arange(margin, w - margin)
    if inner.size == 0:
        return []
    left, right = profile[inner - 1], profile[np.minimum(inner + 1, w - 1)]
    minima = inner[(profile[inner] <= left) & (profile[inner] <= right)]
    chosen: list[int] = []
    for column in minima[np.argsort(profile[minima], kind="stable")]:  # deepest first, spaced apart
        if all(abs(int(column) - c) >= margin for c in chosen):
            chosen.append(int(column))
        if len(chosen) == max_cuts:
            break
    return sorted(chosen)


@dataclass
class Piece:
    """Columns [start, stop) of a mark: the mark whole, or one of its parts between two candidate cuts."""

    mark: int  # its index in the line's marks
    start: int
    stop: int
    cut: bool  # True when the piece is a part of a mark (a cut was made through its ink)


def pieces(line: Line) -> list[Piece]:
    """The line over-segmented, left to right: each narrow mark whole, each wide mark cut at every candidate."""
    found = []
    for m, mark in enumerate(line.marks):
        cuts = cut_candidates(line.mark_ink(m), line.digit_height) if is_wide(line, mark) else []
        edges = [0, *cuts, mark.width]
        found += [Piece(m, a, b, bool(cuts)) for a, b in zip(edges, edges[1:], strict=False)]
    return found


def crop_pieces(line: Line, group: list[Piece]) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """Consecutive pieces as one MNIST digit (28×28), with its ink's box (top, left, bottom, right) in the
    line's pixels; None when they hold no ink."""
    top = min(line.marks[p.mark].box[0] for p in group)
    left = min(line.marks[p.mark].box[1] + p.start for p in group)
    bottom = max(line.marks[p.mark].box[2] for p in group)
    right = max(line.marks[p.mark].box[1] + p.stop for p in group)
    canvas = np.zeros((bottom - top, right - left), np.float32)
    for p in group:
        mark = line.marks[p.mark]
        ink = line.mark_ink(p.mark)[:, p.start:p.stop]
        y, x = mark.box[0] - top, mark.box[1] + p.start - left
        region = canvas[y:y + ink.shape[0], x:x + ink.shape[1]]
        np.maximum(region, ink, out=region)
    strokes = canvas > INK_THRESHOLD
    rows, cols = np.flatnonzero(strokes.any(1)), np.flatnonzero(strokes.any(0))
    if rows.size == 0:
        return None
    box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    y0, x0, y1, x1 = box
    digit = centre_by_mass(fit_box(canvas, box, stroke=stroke_width(canvas[y0:y1, x0:x1])))
    return digit, (top + y0, left + x0, top + y1, left + x1)
