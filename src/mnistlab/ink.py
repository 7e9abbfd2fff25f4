"""Any picture → an ink map: grayscale, the polarity of ink and paper, even light, stretched contrast.

The first steps of `mnistlab.preprocessing`: whatever the picture (a phone photo, a scan, a drawing
with transparency), the result is a float (H, W) array in [0, 1] where the paper is 0 and the ink 1.
`mnistlab.reading` uses the same steps on a whole line of digits before cutting it into digits.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .decoding import ImageLike, as_pixels, gray_mode
from .errors import ImageError, NoDigitError

MIN_DIGIT_PIXELS = 4  # a digit spans at least this many pixels: a smaller image is never reduced below it
WORKING_SIZE = 512  # larger images are first reduced to this long side: plenty for a 20-pixel digit
MIN_CONTRAST = 0.05  # ink must differ from the paper by this much of the full scale ...
MIN_SNR = 8.0  # ... and by this many standard deviations of the paper's noise
_SAMPLE_SIDE = 128  # statistics are taken on a grid of at most 128×128 pixels


# --- 1. any input → grayscale --------------------------------------------------------------------

def to_grayscale(image: ImageLike, working_size: int = WORKING_SIZE) -> np.ndarray:
    """A float32 (H, W) array in [0, 1]: upright, transparency composited, long side at most `working_size`.

    Raises:
        ImageError: an array of the wrong shape, dtype or values, or a Pillow mode that has no gray.
    """
    if not isinstance(image, Image.Image):
        return _array_to_grayscale(image, working_size)
    try:
        image = gray_mode(image)
        factor = _reduction(image.size, working_size)
        if factor > 1:
            image = image.reduce(factor)  # a box average: cheap, and a thin stroke fades instead of vanishing
    except ImageError:
        raise
    except Exception as e:  # a mode or a header Pillow cannot convert: this image is refused, not the caller
        raise ImageError(f"cannot convert its {image.mode} pixels to gray ({type(e).__name__}: {e})") from None
    if image.mode == "LA":
        pixels = np.asarray(image, dtype=np.float32) / 255
        return composite(pixels[..., 0], pixels[..., 1])
    scale = 1.0 if image.mode == "F" else 255.0
    return np.asarray(image, dtype=np.float32) / scale


def _reduction(size: tuple[int, int], working_size: int = WORKING_SIZE) -> int:
    """The box-average factor that brings the long side to `working_size`, but never the short side
    under MIN_DIGIT_PIXELS (a 1×100000 strip stays what it is, and is reported as such)."""
    return max(1, min(math.ceil(max(size) / working_size), min(size) // MIN_DIGIT_PIXELS))


def _array_to_grayscale(image: ImageLike, working_size: int = WORKING_SIZE) -> np.ndarray:
    """An in-memory image (array, tensor, nested lists), checked by `decoding.as_pixels` → float32 (H, W)."""
    values = as_pixels(image)
    if values.ndim == 3:  # colour (and transparency): Pillow's conversion, the same as for an image file
        return to_grayscale(Image.fromarray((values * 255 + 0.5).astype(np.uint8)), working_size)  # LA, RGB, RGBA
    factor = _reduction(values.shape, working_size)
    if factor > 1:
        values = np.asarray(Image.fromarray(values).reduce(factor), dtype=np.float32)
    return values


def composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten a transparent image onto the background that makes its drawing visible.

    A drawing on a transparent canvas (mostly transparent) goes onto the colour opposite its ink:
    black ink onto white, white ink onto black. A picture that is mostly opaque (a photo with
    transparent corners) goes onto its own paper colour.
    """
    opaque = alpha > 0.5
    if opaque.all():
        return gray
    level = float(np.median(gray[opaque])) if opaque.any() else 0.0
    if opaque.mean() < 0.5:  # the opaque part is the ink
        background = 1.0 if level < 0.5 else 0.0
    else:  # the opaque part is mostly paper
        background = level
    return alpha * gray + (1 - alpha) * background


# --- 2. polarity, paper and ink --------------------------------------------------------------------

def _sample(x: np.ndarray) -> np.ndarray:
    """A regular grid of at most _SAMPLE_SIDE² pixels: image statistics at a bounded cost."""
    step = max(1, math.ceil(max(x.shape) / _SAMPLE_SIDE))
    return x[::step, ::step]


def _border(x: np.ndarray) -> np.ndarray:
    """The pixels of a ring 5% of the short side wide (at least 1) around the image: mostly paper."""
    ring = max(1, round(0.05 * min(x.shape)))
    return np.concatenate([x[:ring].ravel(), x[-ring:].ravel(), x[:, :ring].ravel(), x[:, -ring:].ravel()])


def _quantiles(values: np.ndarray, *fractions: float) -> list[float]:
    """`np.quantile(values, fractions)` (linear interpolation) from one partial sort: for the small
    samples taken here, np.percentile's own overhead was most of a drawing's preprocessing time."""
    flat = values.ravel()
    last = flat.size - 1
    positions = [fraction * last for fraction in fractions]
    kth = sorted({int(p) for p in positions} | {min(int(p) + 1, last) for p in positions})
    part = np.partition(flat, kth)
    found = []
    for position in positions:
        below, above = float(part[int(position)]), float(part[min(int(position) + 1, last)])
        found.append(below + (above - below) * (position - int(position)))
    return found


def ink_is_dark(gray: np.ndarray) -> bool:
    """True for dark ink on light paper: the border (paper) is nearer the light extreme."""
    (paper,) = _quantiles(_border(gray), 0.5)
    darkest, lightest = _quantiles(_sample(gray), 0.001, 0.999)
    return paper - darkest > lightest - paper


def level_background(ink: np.ndarray) -> np.ndarray:
    """Even out uneven light, measured by a quadratic surface fitted to the paper, ink excluded.

    The first fit is to the darker half of the border (paper); each refit takes every pixel within three
    noise deviations above the last fit, which leaves out the ink however much of the image it
    covers. An image with an even border is left as it is.
    """
    low, high = _quantiles(_border(ink), 0.05, 0.95)
    if high - low < MIN_CONTRAST:  # evenly lit: nothing to do
        return ink
    h, w = ink.shape
    step = max(1, math.ceil(max(h, w) / 32))
    rows, cols = np.mgrid[0:h:step, 0:w:step]
    u, v = rows.ravel() / max(h - 1, 1), cols.ravel() / max(w - 1, 1)
    terms = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)
    values = ink[::step, ::step]
    ring = np.zeros(values.shape, bool)
    width = max(1, round(0.05 * min(values.shape)))
    ring[:width], ring[-width:], ring[:, :width], ring[:, -width:] = True, True, True, True
    values, ring = values.ravel(), ring.ravel()
    (middle,) = _quantiles(values[ring], 0.5)
    keep = ring & (values <= middle)  # the darker half of the border: paper, even in a tight crop
    for _ in range(3):
        coef = _least_squares(terms[keep], values[keep])
        residual = values - terms @ coef
        noise = 1.4826 * _quantiles(np.abs(residual[keep]), 0.5)[0]
        keep = residual <= max(3 * noise, MIN_CONTRAST / 2)
    u, v = np.linspace(0, 1, h)[:, None], np.linspace(0, 1, w)[None, :]
    surface = coef[0] + coef[1] * u + coef[2] * v + coef[3] * u * u + coef[4] * u * v + coef[5] * v * v
    if surface.max() - surface.min() < MIN_CONTRAST:  # even light: nothing to correct
        return ink
    # Paper reflects light and ink absorbs a share of it, so where the light is dim the ink's
    # contrast is dim too: (ink - paper) / (1 - paper) is that share, the same under any light.
    return ((ink - surface) / np.maximum(1 - surface, MIN_CONTRAST)).astype(np.float32)


def _least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve min |a·x - b| by the normal equations. einsum, not BLAS: for a problem this small
    BLAS's threads cost more than the sums, and fight the model's threads for the cores."""
    a = a.astype(np.float64)
    return np.linalg.solve(np.einsum("ni,nj->ij", a, a) + 1e-9 * np.eye(a.shape[1]), np.einsum("ni,n->i", a, b))


def stretch_contrast(ink: np.ndarray) -> np.ndarray:
    """Map the paper to 0 and the ink to 1, judging both by robust statistics.

    The paper is the median of the image or of its border, whichever is darker (a bold digit can
    cover half the image, a tight crop half the border); its noise, the median absolute deviation
    of the pixels on the paper's side of half-way to the ink (`ink_level`). Anything within 3 noise
    deviations of the paper → 0.

    Raises:
        NoDigitError: the ink is too faint against the paper or its noise.
    """
    sample = _sample(ink)
    middle, brightest = _quantiles(sample, 0.5, 0.999)
    paper = min(middle, _quantiles(_border(ink), 0.5)[0])
    level = ink_level(sample, paper, brightest)
    paper_side = sample[sample <= (paper + level) / 2]
    noise = 1.4826 * _quantiles(np.abs(paper_side - paper), 0.5)[0]  # MAD → standard deviation
    if level - paper < max(MIN_CONTRAST, MIN_SNR * noise):
        raise NoDigitError("no digit found (the image is blank or its marks are too faint)")
    floor = paper + 3 * noise
    return np.clip((ink - floor) / (level - floor), 0, 1, dtype=np.float32)


def ink_level(values: np.ndarray, paper: float = 0.0, brightest: float | None = None) -> float:
    """The ink's level: the 90th percentile of the pixels past half-way from the paper to the
    brightest ones (99.9th percentile, when the caller has not taken it already), so that a few
    saturated pixels or salt noise do not set it."""
    if brightest is None:
        (brightest,) = _quantiles(values, 0.999)
    strong = values[values > (paper + brightest) / 2]
    return _quantiles(strong, 0.9)[0] if strong.size else brightest
