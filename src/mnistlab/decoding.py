"""Images from outside, decoded into pixels: files, Pillow images, arrays and tensors.

Everything here is a boundary (STYLE.md, 9): an image file or an in-memory image from anyone is
checked once, before any work or allocation, and comes out as plain pixels that `preprocessing`
trusts, or is refused with one `ImageError` line. Three guards:

    IMAGE_FORMATS      the only decoders Pillow may use, whatever a file is called
    MAX_PIXELS         width × height above which an image is refused from its header (a bomb)
    as_pixels          an array, tensor or nested list: its type, shape, size, dtype and values

`load_image` opens a file (only a regular one: a FIFO never blocks it) and decodes it upright;
`gray_mode` brings any Pillow mode to gray ("L", "LA" or "F"); `as_pixels` turns an array or a
tensor into float32 values on a 0-1 scale. A boolean array or tensor (a thresholded image) is
black and white: False is 0, True is 1.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ._io import NotRegularFileError, open_regular_file
from .errors import ImageError

if TYPE_CHECKING:  # torch is imported only by a caller that has tensors: an exported model predicts without it
    import torch

MAX_PIXELS = 64_000_000  # width × height above which a file is refused (a 48 MP phone photo fits)
# The only decoders Pillow may use (its names); the same list as the file suffixes `predict` collects.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # their file names
COLOUR_CHANNELS = (2, 3, 4)  # an (H, W, C) array: gray + alpha, RGB, RGBA (as Pillow's LA, RGB, RGBA)


ImageLike = Union[Image.Image, np.ndarray, "torch.Tensor"]  # noqa: UP007 (a name, not a type, for torch)


# --- files ---------------------------------------------------------------------------------------

def load_image(source: str | Path | bytes | BinaryIO, max_pixels: int = MAX_PIXELS, *,
               name: str | None = None) -> Image.Image:
    """Open an image file (a path, its bytes, or a binary file object), fully decoded and upright.

    Only the formats in `IMAGE_FORMATS` are decoded, whatever the file is called: the bytes never
    choose another decoder (an EPS file named `x.png` never reaches Ghostscript). Only a regular
    file is opened: a FIFO, socket or device is refused at once instead of blocking. An animated
    GIF, PNG or WebP, or a multi-page TIFF, gives its first frame.

    Args:
        source: a path, the file's bytes, or a binary file object (an upload, say).
        max_pixels: width × height above which the image is refused from its header (a bomb).
        name: what messages call the image (default: the path, or "image").

    Returns:
        The decoded image, its `filename` set to `name` (or the path) so that `preprocess` names it too.

    Raises:
        ImageError: one line naming the file and the problem (missing, not a regular file,
            unreadable, not an image, truncated, or over `max_pixels` pixels: a decompression bomb).
    """
    is_path = isinstance(source, (str, os.PathLike))
    label = name or (os.fsdecode(source) if is_path else "image")
    if is_path and "\0" in os.fsdecode(source):  # only a path built in memory can hold one; no file has it
        raise ImageError(f"{label}: no such file (a file name cannot hold a NUL byte)")
    try:
        with contextlib.ExitStack() as opened:  # closes the file we opened on every path
            if is_path:
                stream = opened.enter_context(open_regular_file(source))
            else:
                stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit, below, is lower
                # Not closed with the file: closing frees the pixels, and keeping them would cost a copy.
                image = Image.open(stream, formats=IMAGE_FORMATS)
            width, height = image.size
            if width * height > max_pixels:  # checked from the header, before any pixel is decoded
                raise ImageError(f"{label}: {width}×{height} pixels is over the limit of {max_pixels:,} "
                                 f"(a decompression bomb?)")
            image.load()  # decode now (the first frame), so that a truncated file fails here and not half-way
            ImageOps.exif_transpose(image, in_place=True)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except NotRegularFileError as e:  # a folder, FIFO, socket or device: refused from its fstat, never read
        kind = "is a directory" if e.file_type == stat.S_IFDIR else f"not a regular file: {e.kind}"
        raise ImageError(f"{label}: cannot read ({kind})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image (or an unsupported format)") from None
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours, met in its header check
        raise ImageError(f"{label}: over the limit of {max_pixels:,} pixels (a decompression bomb?)") from None
    except OSError as e:
        if e.errno is not None:  # from the system: permission denied, a symlink loop...
            raise ImageError(f"{label}: cannot read ({e.strerror})") from None
        raise ImageError(f"{label}: cannot decode ({e})") from None  # Pillow: "image file is truncated"...
    except Exception as e:  # a malformed file can make a decoder raise nearly anything
        raise ImageError(f"{label}: cannot decode ({type(e).__name__}: {e})") from None
    image.filename = label  # as Pillow names an image it opened from a file
    return image



# --- Pillow images -------------------------------------------------------------------------------

def gray_mode(image: Image.Image) -> Image.Image:
    """Any Pillow mode → "L", "LA" (transparency kept) or "F" (16/32-bit pixels on a 0-1 scale), upright.

    Raises:
        ImageError: float or 32-bit pixels that are not numbers. Pillow's own errors (a mode it cannot
            convert) pass on, for the caller to name.
    """
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit integer or float pixels
        return _to_float_image(image)
    if image.mode == "LAB":  # Pillow converts LAB only to RGB, by way of its bands; L is the lightness
        return image.getchannel("L")
    if image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema()[0] == 255:  # opaque: nothing to keep
        return image.convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return image.convert("LA")
    return image if image.mode == "L" else image.convert("L")  # 1, P, RGB, RGBX, CMYK, YCbCr, HSV


def _to_float_image(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit images as mode "F" on a 0-1 scale."""
    pixels = np.asarray(image, dtype=np.float32)
    if not np.isfinite(pixels).all():
        raise ImageError("some pixels are not numbers (NaN or infinite)")
    if image.mode.startswith("I;16"):
        full_scale = 65535.0
    elif image.mode == "F" and pixels.max(initial=0) <= 1:
        full_scale = 1.0
    else:  # mode "I" holds 16-bit PNGs in older Pillow; 8-bit values are read as such
        full_scale = 255.0 if pixels.max(initial=0) <= 255 else 65535.0
    return Image.fromarray(np.clip(pixels / full_scale, 0, 1, dtype=np.float32))


# --- arrays and tensors --------------------------------------------------------------------------

def as_pixels(image: object) -> np.ndarray:
    """An in-memory image (array, tensor, nested lists) → float32 (H, W) or (H, W, 2|3|4) in [0, 1].

    Everything about the input is checked here, the boundary: its type, shape and size (before any
    copy, so a huge broadcast view costs nothing), dtype, and that its values are finite. A (1, H, W)
    or (H, W, 1) image comes back as (H, W).

    Raises:
        ImageError: an object that is not an image, or an array of the wrong shape, dtype or values.
    """
    pixels = _as_numpy(image)
    if pixels.ndim == 3 and pixels.shape[0] == 1:  # (1, H, W), as a tensor of one image comes
        pixels = pixels[0]
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] in COLOUR_CHANNELS)):
        raise ImageError(f"expected an image of shape (H, W), (1, H, W) or (H, W, 1|2|3|4), "
                         f"got {tuple(pixels.shape)}")
    height, width = pixels.shape[:2]
    if height * width == 0:
        raise ImageError(f"the image is empty (shape {tuple(pixels.shape)})")
    if height * width > MAX_PIXELS:
        raise ImageError(f"{width}×{height} pixels is over the limit of {MAX_PIXELS:,}")
    return _unit_scale(pixels)


def _as_numpy(image: object) -> np.ndarray:
    """A tensor or array-like as a NumPy array of real numbers or booleans (no copy of a large array yet)."""
    torch = sys.modules.get("torch")  # an object can be a tensor only once torch is imported
    try:
        if torch is not None and isinstance(image, torch.Tensor):
            if image.is_complex():
                raise ImageError(f"expected real pixel values, got a tensor of {image.dtype}")
            if image.numel() > 4 * MAX_PIXELS:
                raise ImageError(f"the tensor of shape {tuple(image.shape)} is over the limit of {MAX_PIXELS:,} pixels")
            image = image.detach().to("cpu")
            image = image.float() if image.is_floating_point() and image.dtype != torch.float64 else image
            return image.numpy()
        pixels = np.asarray(image)
    except ImageError:
        raise
    except Exception as e:  # a sparse or meta tensor, a ragged list, an object NumPy cannot read...
        raise ImageError(f"cannot read {type(image).__name__} as an image ({type(e).__name__}: {e})") from None
    if pixels.dtype == object and pixels.ndim == 0:  # None, a dict, a number...
        raise ImageError(f"expected an image (a path, Pillow image, array or tensor), got {type(image).__name__}")
    if pixels.dtype.kind not in "buif":
        raise ImageError(f"expected integer or float pixel values, got dtype {pixels.dtype}")
    return pixels


def _unit_scale(pixels: np.ndarray) -> np.ndarray:
    """Pixel values → float32 in [0, 1]: booleans as 0 and 1, uint8 /255, uint16 /65535, other integers by
    their largest value (up to 255 or up to 65535), floats as 0-1 (0-255 if any is above 1)."""
    if pixels.dtype == np.bool_:  # a thresholded image: True is ink (or paper: `invert` decides), False not
        return pixels.astype(np.float32)
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes infinite, and is refused below
        values = pixels.astype(np.float32)
    if pixels.dtype.kind == "f":
        if not np.isfinite(values).all():  # also a float64 beyond float32's range
            raise ImageError("some pixel values are not finite (NaN or infinity)")
        return np.clip(values / 255 if values.max() > 1 else values, 0, 1)
    if pixels.dtype == np.uint16:
        return values / 65535
    low, high = pixels.min(), pixels.max()
    if low < 0 or high > 65535:
        raise ImageError(f"integer pixel values must lie in 0-255 or 0-65535, found {low} to {high}")
    return values / (255 if high <= 255 else 65535)
