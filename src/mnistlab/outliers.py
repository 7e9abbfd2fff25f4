"""Marks that are not digits, made from MNIST's own digits and from generated strokes.

Training with outlier exposure (`TrainConfig.outlier_exposure`) shows the model these marks and asks
it to be unsure of them; the "not a digit" benchmark measures the rule on other seeds and on a family
held out of training (`HELD_OUT_FAMILIES`). Every image comes out as MNIST frames a digit (the ink's
box scaled to 20 px, centred by mass in 28×28), so that the model cannot tell them apart by framing.

No font-rendered letters or symbols: a model tuned to fonts does not carry over to hand-made marks.
Care is taken not to make digits: a rotated 0, 1 or 8 and a 6 turned into a 9 stay digits, and no
family draws a lone line or a single closed loop. Every generator is a pure function of its inputs
and its `torch.Generator`; a batch is made at once, with no per-image Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .limits import IMAGE_SIZE

DIGIT_BOX = 20  # MNIST scales each digit's longer side to 20 px
LOW, HIGH = 4.0, 24.0  # strokes are drawn inside the 20-px box, in pixel coordinates
STROKE_CHUNK = 256  # images rasterised together (memory: chunk × segments × 784 floats)

# A digit turned by a quarter or a half turn, or seen in a mirror, stays a digit for these labels.
STILL_A_DIGIT_QUARTER = (0,)  # an upright oval
STILL_A_DIGIT_HALF = (0, 1, 5, 6, 8, 9)  # 6 ↔ 9; an upside-down 5 reads as a 2 or an S
SUBSUMED_IN_A_PAIR = (1,)  # a 1 drawn over another digit mostly reads as that digit
PAIR_SHIFT = (4, 7)  # px between overlapped digits: closer, two similar digits read as one

Family = Callable[[torch.Tensor, torch.Tensor, int, torch.Generator], torch.Tensor]


# --- drawing ---------------------------------------------------------------------------------------------------------


def draw_segments(segments: torch.Tensor, valid: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Rasterise line segments with soft edges.

    Args:
        segments: (N, M, 2, 2) end points (x, y) in pixel coordinates of the 28×28 image.
        valid: (N, M) bool, which segments are drawn.
        width: (N,) stroke width in pixels.
    Returns:
        float (N, 28, 28) ink in [0, 1].
    """
    centres = torch.arange(IMAGE_SIZE, dtype=torch.float32) + 0.5
    gx, gy = centres.repeat(IMAGE_SIZE), centres.repeat_interleave(IMAGE_SIZE)  # (784,) each, row by row
    out = []
    for start in range(0, len(segments), STROKE_CHUNK):
        chunk = segments[start:start + STROKE_CHUNK, :, :, :, None]  # (n, M, 2 ends, 2 coordinates, 1)
        ax, ay, dx, dy = chunk[:, :, 0, 0], chunk[:, :, 0, 1], chunk[:, :, 1, 0] - chunk[:, :, 0, 0], \
            chunk[:, :, 1, 1] - chunk[:, :, 0, 1]  # (n, M, 1) each
        px, py = gx - ax, gy - ay  # (n, M, 784)
        t = ((px * dx + py * dy) / (dx * dx + dy * dy).clamp_min(1e-6)).clamp_(0, 1)
        squared = (px - t * dx).square_() + (py - t * dy).square_()
        squared.masked_fill_(~valid[start:start + STROKE_CHUNK, :, None], float("inf"))
        distance = squared.amin(1).sqrt_()
        half = width[start:start + STROKE_CHUNK, None] / 2
        out.append((half + 0.5 - distance).clamp(0, 1))
    return torch.cat(out).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def polyline(points: torch.Tensor) -> torch.Tensor:
    """(N, K, 2) points → (N, K - 1, 2, 2) segments joining them in order."""
    return torch.stack([points[:, :-1], points[:, 1:]], 2)


def fit_to_box(ink: torch.Tensor) -> torch.Tensor:
    """Frame ink as MNIST frames a digit: its box's longer side scaled to 20 px, its centre of mass at the
    centre. float (N, 28, 28) in [0, 1] → the same; an empty image stays empty."""
    n = len(ink)
    mask = ink > 0.1
    centres = torch.arange(IMAGE_SIZE, dtype=torch.float32) + 0.5
    rows, cols = mask.any(2), mask.any(1)  # (N, 28)
    big = torch.full_like(centres, 1e9)

    def extent(hit: torch.Tensor) -> torch.Tensor:
        low = torch.where(hit, centres, big).amin(1) - 0.5
        high = torch.where(hit, centres, -big).amax(1) + 0.5
        return (high - low).clamp_min(1)

    scale = DIGIT_BOX / torch.maximum(extent(rows), extent(cols))  # (N,)
    mass = ink.sum((1, 2)).clamp_min(1e-6)
    cy = (ink.sum(2) * centres).sum(1) / mass
    cx = (ink.sum(1) * centres).sum(1) / mass
    # Output pixel p reads the input at centre_of_mass + (p - 14) / scale, in [-1, 1] grid units.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, 0, 2] = cx * 2 / IMAGE_SIZE - 1
    theta[:, 1, 2] = cy * 2 / IMAGE_SIZE - 1
    grid = F.affine_grid(theta, (n, 1, IMAGE_SIZE, IMAGE_SIZE), align_corners=False)
    framed = F.grid_sample(ink.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return framed.squeeze(1).clamp(0, 1)


def _uniform(generator: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return torch.rand(*shape, generator=generator) * (high - low) + low


def _widths(count: int, generator: torch.Generator) -> torch.Tensor:
    return _uniform(generator, count, low=1.6, high=3.2)


def _pick(labels: torch.Tensor, count: int, generator: torch.Generator, allowed: torch.Tensor | None = None
          ) -> torch.Tensor:
    """`count` indices into the digits, drawn among those `allowed` (default: all)."""
    pool = torch.arange(len(labels)) if allowed is None else allowed.nonzero().squeeze(1)
    return pool[torch.randint(len(pool), (count,), generator=generator)]


# --- families made from digits ------------------------------------------------------------------------------------


def overlapped_pairs(digits: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator
                     ) -> torch.Tensor:
    """Two digits of different classes drawn over each other, the second shifted by 4-7 px so that both show.

    No 1s: a single stroke over another digit, or a digit shifted less, mostly makes a digit still."""
    allowed = ~torch.isin(labels, torch.tensor(SUBSUMED_IN_A_PAIR))
    first = _pick(labels, count, generator, allowed)
    second = _pick(labels, count * 4, generator, allowed).view(count, 4)
    # For each first digit, the first candidate of another class (a same-class pair is one thick digit).
    differs = labels[second] != labels[first][:, None]
    second = second[torch.arange(count), differs.to(torch.int8).argmax(1)]
    sign = torch.randint(0, 2, (count,), generator=generator) * 2 - 1
    shifts = torch.stack([sign * torch.randint(PAIR_SHIFT[0], PAIR_SHIFT[1] + 1, (count,), generator=generator),
                          torch.randint(-3, 4, (count,), generator=generator)], 1)  # (dx, dy) px
    return torch.maximum(digits[first], _rolled(digits[second], shifts))


def side_by_side(digits: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Two digits squeezed into one image, left and right: two digits where one was asked for."""
    left, right = _pick(labels, count, generator), _pick(labels, count, generator)
    pair = torch.stack([digits[left], digits[right]], 1)[:, :, :, 4:24]  # (N, 2, 28, 20): MNIST's empty sides cut
    halves = F.interpolate(pair, size=(IMAGE_SIZE, IMAGE_SIZE // 2), mode="bilinear", antialias=True,
                           align_corners=False)
    drop = torch.randint(-3, 4, (count,), generator=generator)
    right_half = _rolled(halves[:, 1], torch.stack([torch.zeros_like(drop), drop], 1))
    return torch.cat([halves[:, 0], right_half], 2)


def turned_digits(digits: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator
                  ) -> torch.Tensor:
    """Digits turned by a quarter or a half turn, only those that do not become a digit so."""
    quarter = _pick(labels, count, generator, ~torch.isin(labels, torch.tensor(STILL_A_DIGIT_QUARTER)))
    half = _pick(labels, count, generator, ~torch.isin(labels, torch.tensor(STILL_A_DIGIT_HALF)))
    turns = torch.randint(1, 4, (count,), generator=generator)  # 1 and 3 quarter turns, or 2 (half)
    chosen = torch.where(turns == 2, half, quarter)
    out = digits[chosen]
    for k in range(1, 4):
        out[turns == k] = torch.rot90(out[turns == k], k, (1, 2))
    return out


def _rolled(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Each image (N, H, W) shifted by its whole (dx, dy) pixels of `shifts` (N, 2), what leaves coming back
    on the other side (blank margins: nothing does for the small shifts used here)."""
    out = torch.empty_like(images)
    for shift in shifts.unique(dim=0):
        chosen = (shifts == shift).all(1)
        out[chosen] = torch.roll(images[chosen], (int(shift[1]), int(shift[0])), (1, 2))
    return out


# --- families of generated strokes -----------------------------------------------------------------------------


def _smooth_walk(count: int, points: int, generator: torch.Generator, turn: float) -> torch.Tensor:
    """Random walks whose heading drifts by up to `turn` radians a step, scaled into the box: (N, K, 2)."""
    heading = _uniform(generator, count, 1, high=2 * math.pi) + torch.cumsum(
        _uniform(generator, count, points, low=-turn, high=turn), 1)
    steps = torch.stack([heading.cos(), heading.sin()], -1)
    path = torch.cumsum(steps, 1)
    low, high = path.amin(1, keepdim=True), path.amax(1, keepdim=True)
    return LOW + (path - low) / (high - low).amax(-1, keepdim=True).clamp_min(1e-6) * (HIGH - LOW)


def scribbles(digits: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """A long wandering stroke that crosses itself: a scribble."""
    points = _smooth_walk(count, 50, generator, turn=1.6)
    return draw_segments(polyline(points), torch.ones(count, 49, dtype=torch.bool), _widths(count, generator))


def crosses(digits: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Two slanted strokes crossing near the middle: an x (the upright + is kept for the benchmark)."""
    first = _uniform(generator, count, low=math.radians(30), high=math.radians(60))
    second = first + _uniform(generator, count, low=math.radians(70), high=math.radians(110))
    centre = 14 + _uniform(generator, count, 2, low=-2, high=2)
    lengths = _uniform(generator, count, 2, low=7, high=10)
    ends = []
    for i, angle in enumerate((first, second)):
        direction = torch.stack([angle.cos(), angle.sin()], -1) * lengths[:, i, None]
        ends.append(torch.stack([centre - direction, centre + direction], 1))
    return draw_segments(torch.stack(ends, 1), torch.ones(count, 2, dtype=torch.bool), _widths(count, generator))


def zigzags(digits: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """A stroke that zigzags 5-8 times across the box, across or down."""
    turns = 9
    along = torch.linspace(LOW, HIGH, turns).expand(count, turns)
    used = torch.arange(turns - 1) < torch.randint(5, turns, (count, 1), generator=generator)
    across = torch.where(torch.arange(turns) % 2 == 0, LOW + 4, HIGH - 4) + _uniform(generator, count, turns,
                                                                                  low=-3, high=3)
    points = torch.stack([along, across], -1)
    upright = torch.rand(count, generator=generator) < 0.5
    points = torch.where(upright[:, None, None], points.flip(-1), points)
    return draw_segments(polyline(points), used, _widths(count, generator))


def spirals(digits: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """A spiral of two to three and a half turns, either way round."""
    steps = 28
    turns = _uniform(generator, count, low=2, high=3.5)
    phase = torch.linspace(0, 1, steps)
    angle = phase * turns[:, None] * 2 * math.pi + _uniform(generator, count, 1, high=2 * math.pi)
    angle = torch.where(torch.rand(count, 1, generator=generator) < 0.5, angle, -angle)
    radius = 1 + phase * 9
    squash = _uniform(generator, count, 1, low=0.7, high=1.0)
    points = 14 + torch.stack([angle.cos() * radius, angle.sin() * radius * squash], -1)
    return draw_segments(polyline(points), torch.ones(count, steps - 1, dtype=torch.bool), _widths(count, generator))


def hatching(digits: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Four to six parallel strokes at one slant, sometimes crossed by a second set."""
    lines = 6
    segments, valid = [], []
    for layer in range(2):
        angle = _uniform(generator, count, low=0, high=math.pi)
        direction = torch.stack([angle.cos(), angle.sin()], -1)
        normal = torch.stack([-angle.sin(), angle.cos()], -1)
        offsets = torch.linspace(-8, 8, lines) + _uniform(generator, count, lines, low=-0.8, high=0.8)
        middle = 14 + offsets[..., None] * normal[:, None]  # (N, lines, 2)
        reach = direction[:, None] * _uniform(generator, count, lines, 1, low=6, high=9)
        segments.append(torch.stack([middle - reach, middle + reach], 2))
        drawn = torch.randint(4, lines + 1, (count, 1), generator=generator)
        if layer:
            drawn = drawn * (torch.rand(count, 1, generator=generator) < 0.4)
        # The lines drawn are the middle ones: the set stays centred.
        index = torch.arange(lines)
        valid.append((index >= (lines - drawn) // 2) & (index < (lines - drawn) // 2 + drawn))
    return draw_segments(torch.cat(segments, 1), torch.cat(valid, 1), _widths(count, generator))


def random_marks(digits: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Three to five short curved strokes scattered over the box."""
    strokes, points = 5, 6
    walks = _smooth_walk(count * strokes, points, generator, turn=0.5)  # each fills the box: shrink and place it
    size = _uniform(generator, count * strokes, 1, 1, low=0.25, high=0.5)
    place = _uniform(generator, count * strokes, 1, 2, low=LOW, high=HIGH - 8)
    walks = (place + (walks - LOW) * size).view(count, strokes * points, 2)
    segments = torch.stack([walks[:, :-1], walks[:, 1:]], 2)
    within = (torch.arange(strokes * points - 1) % points) != points - 1  # no segment joins two strokes
    drawn = torch.arange(strokes * points - 1) < torch.randint(3, strokes + 1, (count, 1), generator=generator) * points
    return draw_segments(segments, within & drawn, _widths(count, generator))


# --- the held-out family: hand-drawn-like symbols, for the benchmark only --------------------------------------------


def _wobble(ends: torch.Tensor, generator: torch.Generator, amount: float = 1.2) -> torch.Tensor:
    """Each segment's ends moved a little, as a hand draws: (N, M, 2, 2) → the same."""
    return ends + _uniform(generator, *ends.shape, low=-amount, high=amount)


def _circle(centre: torch.Tensor, radius: float, steps: int = 10) -> torch.Tensor:
    """(N, 2) centres → (N, steps, 2, 2) segments of a circle."""
    angle = torch.linspace(0, 2 * math.pi, steps + 1)
    ring = centre[:, None] + radius * torch.stack([angle.cos(), angle.sin()], -1)
    return polyline(ring)


def _line(x0: float, y0: float, x1: float, y1: float, count: int) -> torch.Tensor:
    return torch.tensor([[x0, y0], [x1, y1]]).expand(count, 1, 2, 2)


def symbols(digits: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Hand-drawn-like symbols from wobbly strokes: + = % # → * and a five-pointed star."""
    shapes = {
        "plus": [_line(14, 5, 14, 23, count), _line(5, 14, 23, 14, count)],
        "equals": [_line(6, 11, 22, 11, count), _line(6, 17, 22, 17, count)],
        "percent": [_line(21, 5, 7, 23, count), _circle(torch.full((count, 2), 8.5), 3.0),
                    _circle(torch.full((count, 2), 19.5), 3.0)],
        "hash": [_line(5, 10, 23, 10, count), _line(5, 18, 23, 18, count), _line(11, 4, 9, 24, count),
                 _line(19, 4, 17, 24, count)],
        "arrow": [_line(4, 14, 24, 14, count), _line(24, 14, 18, 8, count), _line(24, 14, 18, 20, count)],
        "asterisk": [_line(14, 5, 14, 23, count), _line(6, 9, 22, 19, count), _line(6, 19, 22, 9, count)],
        "star": [polyline(torch.stack([torch.tensor([14 + 10 * math.sin(k * 4 * math.pi / 5),
                                                     15 - 10 * math.cos(k * 4 * math.pi / 5)])
                                       for k in range(6)])[None].expand(count, 6, 2))],
    }
    most = max(sum(part.shape[1] for part in parts) for parts in shapes.values())
    which = torch.randint(len(shapes), (count,), generator=generator)
    segments, valid = torch.zeros(count, most, 2, 2), torch.zeros(count, most, dtype=torch.bool)
    for k, parts in enumerate(shapes.values()):
        drawn = torch.cat([_wobble(part, generator) for part in parts], 1)
        chosen = which == k
        segments[chosen, :drawn.shape[1]] = drawn[chosen]
        valid[chosen, :drawn.shape[1]] = True
    # A random slant and size about the centre, as each hand draws them.
    angle = _uniform(generator, count, 1, 1, low=-0.4, high=0.4)
    turn = torch.stack([torch.cat([angle.cos(), -angle.sin()], -1), torch.cat([angle.sin(), angle.cos()], -1)], -2)
    segments = 14 + torch.einsum("nij,nmkj->nmki", turn.squeeze(1), segments - 14)
    return draw_segments(segments, valid, _widths(count, generator))


STYLES = ("as drawn", "thick", "blurred", "coarse")  # what `vary_style` may do to an image
BLUR_SIGMAS = (0.7, 1.0, 1.3)  # px: a soft scan, an out-of-focus photo
COARSE_SIZES = (9, 10, 11, 12, 14, 16)  # the 28×28 frame seen at this many pixels: ~6-11 across the digit


def vary_style(images: torch.Tensor, generator: torch.Generator, share: float = 0.5) -> torch.Tensor:
    """Give a random `share` of uint8 images (B, 28, 28) one of the looks of digits written elsewhere: strokes
    thicker by a pixel each side, a Gaussian blur, or a coarse grid (seen at 9-16 px, then resampled to 28).

    Shown to digits and marks alike, so that the look tells the model nothing: trained with outlier exposure
    on MNIST's crisp strokes alone, a model takes every digit not written so (scans, photos, the UCI digits'
    8×8 grid) for a non-digit. A blurred or coarse image keeps its brightest ink at full level, as
    `predict`'s contrast stretch leaves a picture.
    """
    n, device = len(images), images.device
    style = torch.randint(1, len(STYLES), (n,), generator=generator)
    style = torch.where(torch.rand(n, generator=generator) < share, style, 0).to(device)
    sigma = torch.tensor(BLUR_SIGMAS)[torch.randint(len(BLUR_SIGMAS), (n,), generator=generator)].to(device)
    coarse = torch.tensor(COARSE_SIZES)[torch.randint(len(COARSE_SIZES), (n,), generator=generator)].to(device)
    ink = images[:, None].float() / 255  # (B, 1, 28, 28)
    out = torch.where((style == 1)[:, None, None, None], F.max_pool2d(ink, 3, stride=1, padding=1), ink)
    for value in BLUR_SIGMAS:
        chosen = (style == 2) & (sigma == value)
        if chosen.any():
            out[chosen] = _blur(ink[chosen], value)
    for size in COARSE_SIZES:
        chosen = (style == 3) & (coarse == size)
        if chosen.any():
            small = F.interpolate(ink[chosen], size=(size, size), mode="area")
            out[chosen] = F.interpolate(small, size=ink.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    resampled = (style >= 2)[:, None, None, None]
    out = torch.where(resampled, out / out.amax((1, 2, 3), keepdim=True).clamp_min(1 / 255), out)
    return out[:, 0].mul(255).round_().to(images.dtype)


def _blur(ink: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, 1, H, W) → the same, blurred by a Gaussian of `sigma` pixels (separable, 3 sigmas each side)."""
    reach = math.ceil(3 * sigma)
    taps = torch.exp(-torch.arange(-reach, reach + 1, dtype=ink.dtype, device=ink.device).square() / (2 * sigma ** 2))
    taps = taps / taps.sum()
    across = F.conv2d(ink, taps.view(1, 1, 1, -1), padding=(0, reach))
    return F.conv2d(across, taps.view(1, 1, -1, 1), padding=(reach, 0))


TRAINING_FAMILIES: dict[str, Family] = {
    "overlapped_pairs": overlapped_pairs, "side_by_side": side_by_side, "turned_digits": turned_digits,
    "scribbles": scribbles, "crosses": crosses, "zigzags": zigzags, "spirals": spirals, "hatching": hatching,
    "random_marks": random_marks,
}
HELD_OUT_FAMILIES: dict[str, Family] = {"symbols": symbols}  # never shown in training: the benchmark's test
FAMILIES = {**TRAINING_FAMILIES, **HELD_OUT_FAMILIES}


def make_outliers(digits: torch.Tensor, labels: torch.Tensor, count: int, seed: int,
                  families: tuple[str, ...] = tuple(TRAINING_FAMILIES)) -> torch.Tensor:
    """`count` non-digit images, an equal share from each named family, in MNIST's framing.

    Args:
        digits: uint8 (N, 28, 28) MNIST-format digits the digit families are made from (on the CPU).
        labels: int64 (N,) their classes.
        count: how many images to make.
        seed: the draws' seed: the same inputs and seed give the same images.
        families: names from `FAMILIES`.
    Returns:
        uint8 (count, 28, 28), the families interleaved (image i comes from family i mod len(families)).
    """
    unknown = [name for name in families if name not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"families: unknown {', '.join(unknown) or 'none given'}; choose from {', '.join(FAMILIES)}")
    generator = torch.Generator().manual_seed(seed)
    pixels = digits.to("cpu", torch.float32) / 255
    labels = labels.to("cpu")
    shares = [len(range(k, count, len(families))) for k in range(len(families))]
    out = torch.zeros(count, IMAGE_SIZE, IMAGE_SIZE)
    for k, (name, share) in enumerate(zip(families, shares, strict=True)):
        if share:
            out[k::len(families)] = fit_to_box(FAMILIES[name](pixels, labels, share, generator))
    return (out * 255).round().to(torch.uint8)
