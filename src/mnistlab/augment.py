"""Data augmentation on the device: a random affine warp (and optional elastic wobble) per image.

The whole batch is warped at once, an affine sampling grid per image and one `grid_sample`, with
no per-sample Python, so augmentation costs a fraction of a training step on any device. The
random draws come from the `torch.Generator` passed in, so a seed gives the same warps on every
run; they are a handful of numbers per image, drawn on the generator's device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ELASTIC_GRID = 5  # control points per side of the elastic displacement field (one every ~7 px at 28×28)


@dataclass(frozen=True)
class AffineRange:
    """How far the affine warp goes at strength 1; each draw is uniform in ±range."""

    shift: float = 2.0  # pixels, in x and in y independently
    rotate: float = 10.0  # degrees
    scale: float = 0.1  # relative change of size (0.1: 90% to 110%)


DEFAULT_RANGE = AffineRange()


def augment(images: torch.Tensor, generator: torch.Generator, *, strength: float = 1.0, elastic: float = 0.0,
            ranges: AffineRange = DEFAULT_RANGE) -> torch.Tensor:
    """Randomly shift, rotate and scale each image of a batch (and with `elastic`, wobble it).

    Args:
        images: float (B, C, H, W), background 0 (pixels on a 0-1 scale, before normalisation),
            on any device.
        generator: the source of every random draw.
        strength: multiplies `ranges`; 0 leaves the affine part out.
        elastic: standard deviation, in pixels, of a smooth random displacement field (0: none).
    Returns:
        A new tensor of the same shape, dtype and device; the area shifted in from outside is 0.
    """
    if strength == 0 and elastic == 0:
        return images
    b, _, h, w = images.shape
    draw = torch.rand(b, 4, generator=generator, device=generator.device, dtype=torch.float32).mul_(2).sub_(1)
    angle = draw[:, 0] * (strength * math.radians(ranges.rotate))
    zoom = 1 + draw[:, 1] * (strength * ranges.scale)
    # The grid gives each output pixel p the input point it reads, in [-1, 1] coordinates (1 px = 2 / size):
    # reading R(-angle) p / zoom - shift draws the image shifted by `shift`, then turned by `angle` and
    # scaled by `zoom` about the centre.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift_x = draw[:, 2] * (strength * ranges.shift * 2 / w)
    shift_y = draw[:, 3] * (strength * ranges.shift * 2 / h)
    theta = torch.stack([torch.stack([cos, sin, -shift_x], 1), torch.stack([-sin, cos, -shift_y], 1)], 1)
    grid = affine_grid(theta.to(images.device, images.dtype), h, w)  # (B, H, W, 2)
    if elastic:
        grid = grid + elastic_field(b, h, w, elastic, generator).to(images.device, images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, (B, 1, height, width), align_corners=False)` as one batched matmul.

    The same numbers; on a CPU, affine_grid's own kernel was the dearest part of a step of the mlp, and
    the matmul costs a small fraction of it (docs/benchmarks.md, "Augmentation").
    """
    options = {"device": theta.device, "dtype": theta.dtype}
    xs = (torch.arange(width, **options) * 2 + 1) / width - 1  # pixel centres in [-1, 1]
    ys = (torch.arange(height, **options) * 2 + 1) / height - 1
    base = torch.stack([xs.repeat(height), ys.repeat_interleave(width), torch.ones(height * width, **options)])
    return (theta @ base).transpose(1, 2).reshape(len(theta), height, width, 2)  # (B, 2, H·W) -> (B, H, W, 2)


def elastic_field(batch: int, height: int, width: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """A smooth random displacement per image, (B, H, W, 2) in grid coordinates: Gaussian noise of `sigma`
    pixels at a coarse grid of control points, interpolated bicubically to every pixel."""
    coarse = torch.randn(batch, 2, ELASTIC_GRID, ELASTIC_GRID, generator=generator, device=generator.device)
    coarse[:, 0] *= sigma * 2 / width
    coarse[:, 1] *= sigma * 2 / height
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)  # (B, 2, H, W)
    return field.permute(0, 2, 3, 1)
