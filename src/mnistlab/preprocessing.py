"""Turn anyone's picture of a digit into an MNIST-style 28×28 image.

MNIST digits are white on black, scaled to fit a 20×20 box (aspect ratio kept, anti-aliased) and
placed in 28×28 so that their centre of mass sits at pixel (14, 14). A phone photo, a scan or a
drawing from Paint is none of these, and a model trained on MNIST sees it as noise until it is
brought to that convention. `preprocess` does so in small, pure steps, each a function (the first
four in `mnistlab.ink`, the rest below):

    to_grayscale       any mode, EXIF orientation, transparency → float (H, W) in [0, 1]
    ink_is_dark        polarity: the border (paper) against the extremes (ink)
    level_background   even out uneven light, measured by a surface fitted to the paper
    stretch_contrast   paper → 0, ink → 1, by robust statistics; a blank image stops here
    find_digit         threshold, drop specks of noise, the ink's bounding box
    fit_box            crop with a margin, redraw hairlines and marker strokes, scale to fit 20×20
    centre_by_mass     place in 28×28 with the centre of mass at (14, 14)

An image that already follows the convention (a 28×28 MNIST digit) passes through unchanged.
Fashion-MNIST and KMNIST fill their frame instead (`layout="fill"`): after `find_digit`, the
object is scaled so that its long side spans all 28 pixels and centred by its box (`fill_frame`).

Reading a file and checking an array or a tensor (formats, size limits, dtypes) happen before the
pipeline, in `mnistlab.decoding`; past it, the pixels are trusted.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from scipy import ndimage

from .config import INVERT_CHOICES
from .dataset_info import LAYOUTS
from .decoding import (  # noqa: F401 (IMAGE_* and load_image: their old home)
    IMAGE_FORMATS,
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    ImageLike,
    as_pixels,
    gray_mode,
    load_image,
)
from .errors import ImageError, NoDigitError
from .ink import (
    MIN_CONTRAST,
    MIN_DIGIT_PIXELS,
    ink_is_dark,
    ink_level,
    level_background,
    stretch_contrast,
    to_grayscale,
)
from .limits import IMAGE_SIZE

if TYPE_CHECKING:  # torch is imported only by a caller that has tensors: an exported model predicts without it
    import torch


DIGIT_BOX = 20  # MNIST: the digit's long side, every anti-aliased pixel included
CENTRE = 14.0  # MNIST: where the centre of mass lands (row and column index; all 10,000 test digits round to it)
INK_THRESHOLD = 0.25  # after stretching, a pixel above this is ink (at it, MNIST's digit boxes are DIGIT_BOX)
CORE_THRESHOLD = 0.5  # a stroke's core, for measuring its width
# Stroke width (2 × area / boundary of the core, in 28×28 pixels) of the MNIST training digits:
MIN_STROKE = 2.0  # 1st percentile: a hairline is below it ...
TARGET_STROKE = 2.9  # ... and is redrawn with the median width;
MAX_STROKE = 4.4  # 95th percentile: a marker's strokes are trimmed down to it
OVERSAMPLE = 4  # strokes are redrawn at 4× the final resolution
SPECK_FRACTION = 0.1  # a blob under this fraction of the largest one's area is a speck
MAX_LONE_SPECKS = 2  # more specks than this is noise: all are dropped, not only the stray ones
MIN_DIGIT_FRACTION = 0.05  # a digit's largest blob spans at least this fraction of the image's long side
# "Draw it larger": a digit is taller than 2.4 of its own stroke widths, and a tap, a blob or a dash is not
# (docs/serving.md, "Too small to be a digit", has the measurements). Scale-free: a photo's small digit stays.
MIN_HEIGHT_IN_STROKES = 2.4
TOO_SMALL = "draw it larger: the mark is too small or too faint to be a digit"
_EIGHT_CONNECTED = np.ones((3, 3), bool)


def preprocess(image: ImageLike, invert: str = "auto", *, name: str | None = None,
               layout: str = "digit") -> torch.Tensor:
    """`preprocess_array` as a float32 tensor (28, 28) in [0, 1], for PyTorch callers."""
    import torch

    return torch.from_numpy(preprocess_array(image, invert, name=name, layout=layout))


def preprocess_array(image: ImageLike, invert: str = "auto", *, name: str | None = None,
                     layout: str = "digit", refuse_small_marks: bool = False) -> np.ndarray:
    """Bring a picture of one digit to MNIST's convention.

    Args:
        image: a Pillow image (any mode), or a (H, W), (1, H, W) or (H, W, 1|2|3|4) array or tensor:
            integers 0-255 (uint16, or larger values: 0-65535), finite floats 0-1 (any above 1: 0-255)
            or booleans (a thresholded image: True is 1, False 0).
        invert: "auto" detects dark ink on light paper and inverts it; "yes" always inverts,
            "no" never does (the image is already white on black).
        name: what error messages call the image (default: the `filename` of a Pillow image, as
            `load_image` sets it; else nothing; "": nothing).
        layout: "digit" (MNIST: 20×20 box, centred by mass) or "fill" (Fashion-MNIST, KMNIST: the
            long side spans the whole 28 pixels, centred by the box); a model's dataset decides.
        refuse_small_marks: for the "digit" layout, refuse a mark shorter than MIN_HEIGHT_IN_STROKES
            of its own stroke widths (a dot, a blob, a dash): what a drawing pad wants, where such a
            mark is a stroke just begun, not a digit.

    Returns:
        float32 array (28, 28) in [0, 1]: a white digit on black, 20×20 box, centred by mass.

    Raises:
        NoDigitError: the image is blank or near-blank ("no digit found"), or with `refuse_small_marks`,
            the mark is too small (TOO_SMALL).
        ImageError: the image cannot be read as one: a bad shape, dtype or value, an unknown mode.
    """
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert must be one of {', '.join(INVERT_CHOICES)}, got {invert!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    label = getattr(image, "filename", None) if name is None and isinstance(image, Image.Image) else name
    try:
        gray = to_grayscale(image)
        if min(gray.shape) < MIN_DIGIT_PIXELS:
            raise NoDigitError(f"no digit found (the image is only {gray.shape[1]}×{gray.shape[0]} pixels)")
        dark_ink = ink_is_dark(gray) if invert == "auto" else invert == "yes"
        ink = level_background(1.0 - gray if dark_ink else gray)
        ink = stretch_contrast(ink)
        ink, box = find_digit(ink)
        if layout == "fill":
            return fill_frame(ink, box)
        top, left, bottom, right = box
        width = stroke_width(ink[top:bottom, left:right])
        if refuse_small_marks and width > 0 and (bottom - top) / width < MIN_HEIGHT_IN_STROKES:
            raise NoDigitError(TOO_SMALL)
        return centre_by_mass(fit_box(ink, box, stroke=width))
    except ImageError as e:
        if not label:
            raise
        raise type(e)(f"{label}: {e}") from None


# --- 1. the digit's extent -----------------------------------------------------------------------

def find_digit(ink: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Drop specks of noise and return the cleaned image with the digit's box (top, left, bottom, right).

    Blobs of ink under SPECK_FRACTION of the largest one's area are specks. A few are kept when
    they lie inside the box of the large blobs (the broken stroke of a real digit) and stray
    ones are dropped. Many specks are noise: all are dropped, and the box is measured on a
    median-filtered copy, where the specks stuck to the strokes are gone too.

    Raises:
        NoDigitError: no blob of ink spans MIN_DIGIT_FRACTION of the image (specks, dust, noise).
    """
    labels, count = ndimage.label(ink > INK_THRESHOLD, structure=_EIGHT_CONNECTED)
    if count == 0:
        raise NoDigitError("no digit found (the image is blank)")
    areas = np.bincount(labels.ravel())[1:]
    extents = ndimage.find_objects(labels)  # each blob's (rows, cols) slices
    biggest = extents[areas.argmax()]
    if max(s.stop - s.start for s in biggest) < max(MIN_DIGIT_PIXELS, MIN_DIGIT_FRACTION * max(ink.shape)):
        raise NoDigitError("no digit found (only specks of ink; is the digit very small in the picture?)")
    large = areas >= SPECK_FRACTION * areas.max()
    box = _union([extents[i] for i in np.flatnonzero(large)])
    specks = np.flatnonzero(~large) + 1
    noisy = len(specks) > MAX_LONE_SPECKS
    if 0 < len(specks) <= MAX_LONE_SPECKS:
        top, left, bottom, right = box
        specks = specks[~np.isin(specks, labels[top:bottom, left:right])]
    if len(specks):
        ink = np.where(np.isin(labels, specks), 0, ink)
    if noisy:
        smooth = ndimage.median_filter(ink, size=3) > INK_THRESHOLD
        box = _box(smooth) if smooth.any() else box
    return ink, box


def _union(extents: list[tuple[slice, slice]]) -> tuple[int, int, int, int]:
    """The box (top, left, bottom, right) around blobs given as `ndimage.find_objects` slices."""
    return (min(r.start for r, _ in extents), min(c.start for _, c in extents),
            max(r.stop for r, _ in extents), max(c.stop for _, c in extents))


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 × area / boundary of the strokes' core (exact for long strokes).

    The boundary is the core's pixels with a 4-neighbour outside it (the image's edge counts as outside).
    """
    core = np.pad(ink > CORE_THRESHOLD, 1)
    inner = core[1:-1, 1:-1]
    interior = inner & core[:-2, 1:-1] & core[2:, 1:-1] & core[1:-1, :-2] & core[1:-1, 2:]
    area = np.count_nonzero(inner)
    boundary = area - np.count_nonzero(interior)
    return 2 * area / boundary if boundary else 0.0


# --- 2. scale and centre -------------------------------------------------------------------------

def fit_box(ink: np.ndarray, box: tuple[int, int, int, int], size: int = DIGIT_BOX, *,
            stroke: float | None = None) -> np.ndarray:
    """The digit in `box`, scaled so that its long side is `size`, with a one-pixel margin; `stroke` is
    the stroke width of the ink in `box` when the caller has measured it.

    Strokes that would come out thinner than MNIST's thinnest are first redrawn with its median
    width; thicker than its thickest, trimmed to that (see `restroke`). Trimming goes no further
    because eroding a stroke wipes out its thin parts.
    """
    top, left, bottom, right = box
    scale = size / max(bottom - top, right - left)
    pad = math.ceil(2 / scale) + 2  # room for the margin and the resampling filter's reach
    crop = np.zeros((bottom - top + 2 * pad, right - left + 2 * pad), np.float32)
    paste(ink, crop, pad - top, pad - left)
    box = (pad, pad, pad + bottom - top, pad + right - left)
    width = (stroke_width(crop) if stroke is None else stroke) * scale
    if not MIN_STROKE <= width <= MAX_STROKE:
        redrawn = restroke(crop, scale, TARGET_STROKE if width < MIN_STROKE else MAX_STROKE)
        if (redrawn > INK_THRESHOLD).any():
            crop, box = redrawn, _box(redrawn > INK_THRESHOLD)
            scale = size / max(box[2] - box[0], box[3] - box[1])
    return resize_box(crop, box, scale, margin=1)


def restroke(crop: np.ndarray, scale: float, width: float) -> np.ndarray:
    """Redraw a digit with strokes `width` pixels wide at the final scale, working at OVERSAMPLE× it.

    A pen line in a large photo shrinks to a faint hairline at 20 pixels; a marker fills the
    loops. Dilating by r pixels (eroding for r < 0) changes both the stroke's width w and the
    box's long side L, so r is solved from (w + 2r) / (L + 2r) = width / DIGIT_BOX. A hairline
    comes out of the first resampling faint, so the redrawn ink is brought back to full level.
    The result has a border of empty pixels wide enough for `fit_box`'s margin.
    """
    image = resize_box(crop, (0, 0, *crop.shape), scale * OVERSAMPLE, margin=0)
    ratio = width / DIGIT_BOX
    radius = (ratio * DIGIT_BOX * OVERSAMPLE - stroke_width(image)) / (2 * (1 - ratio))
    reach = round(abs(radius))
    grid = np.arange(-reach, reach + 1)
    disk = grid[:, None] ** 2 + grid[None, :] ** 2 <= (reach + 0.5) ** 2  # reaches `reach` pixels along the axes
    image = np.pad(image, reach + 2 * OVERSAMPLE)
    morph = ndimage.grey_erosion if radius < 0 else ndimage.grey_dilation
    image = morph(image, footprint=disk)
    return np.minimum(image / max(ink_level(image[image > 0]), MIN_CONTRAST), 1)


def resize_box(image: np.ndarray, box: tuple[int, int, int, int], scale: float, margin: int) -> np.ndarray:
    """Resample `box` (top, left, bottom, right) of `image` by `scale`, plus `margin` output pixels per side.

    The box and its margin must lie inside `image`. Downscaling averages areas, as MNIST's
    anti-aliasing of binary digits did; upscaling is bilinear.
    """
    top, left, bottom, right = box
    out_h, out_w = max(1, round((bottom - top) * scale)), max(1, round((right - left) * scale))
    # The box is stretched onto the rounded output size; the margin is whole output pixels.
    my, mx = margin * (bottom - top) / out_h, margin * (right - left) / out_w
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    source = Image.fromarray(image.astype(np.float32, copy=False))
    resized = source.resize((out_w + 2 * margin, out_h + 2 * margin), resample,
                            box=(left - mx, top - my, right + mx, bottom + my))
    return np.clip(np.asarray(resized, dtype=np.float32), 0, 1)


def paste(source: np.ndarray, target: np.ndarray, top: int, left: int) -> None:
    """Copy `source` into `target` with its corner at (top, left), clipping what falls outside."""
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + source.shape[0], target.shape[0]), min(left + source.shape[1], target.shape[1])
    if y1 > y0 and x1 > x0:
        target[y0:y1, x0:x1] = source[y0 - top:y1 - top, x0 - left:x1 - left]


def fill_frame(ink: np.ndarray, box: tuple[int, int, int, int], size: int = IMAGE_SIZE) -> np.ndarray:
    """The object in `box`, scaled so that its long side is `size` and centred by its box.

    Fashion-MNIST's convention (its items were trimmed, resized to 28 on the long side and centred);
    no stroke is redrawn: a garment is a filled shape, not a pen line.
    """
    top, left, bottom, right = box
    scale = size / max(bottom - top, right - left)
    item = resize_box(ink, box, scale, margin=0)
    out = np.zeros((size, size), np.float32)
    paste(item[:size, :size], out, (size - min(item.shape[0], size)) // 2, (size - min(item.shape[1], size)) // 2)
    return out


def centre_by_mass(digit: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Paste `digit` into a size×size black image so that its centre of mass lands on (CENTRE, CENTRE).

    The shift is rounded to whole pixels, as MNIST's was, so the digit is not blurred again.
    """
    mass = digit.sum()
    h, w = digit.shape
    cy = float(digit.sum(1) @ np.arange(h)) / mass
    cx = float(digit.sum(0) @ np.arange(w)) / mass
    out = np.zeros((size, size), np.float32)
    paste(digit, out, round(CENTRE - cy), round(CENTRE - cx))
    return out
