"""Write examples/numbers/: handwritten numbers photographed on paper, made from MNIST *test* digits.

`number_photo` lays digits along a slanted line (sizes, gaps and slant as given), turns them into pen
strokes and photographs them: dark ink on warm paper, a lamp's light falling off, sensor noise, JPEG.
benchmarks/read_numbers.py composes its numbers with it. The output is the same on every run.

    python examples/make_sample_numbers.py [FOLDER]      # default: examples (writes FOLDER/numbers)
"""

import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

import mnistlab

# file name → the MNIST test digits that write it (index per digit)
SAMPLES = {"photo-2903.jpg": (1, 7, 3, 18)}  # checked below: they must write the name's number
HEIGHT = 90  # a digit's height in the photo, in pixels


def number_photo(digits: Sequence[np.ndarray], rng: np.random.Generator, *, height: int = HEIGHT,
                 gap: float = 0.15, size_jitter: float = 0.15, slant: float = 0.08, quality: int = 85) -> Image.Image:
    """28×28 uint8 MNIST digits (white on black) → an RGB JPEG-compressed photo of them written in a row.

    Args:
        gap: the space between two digits' ink, as a fraction of `height` (negative: they overlap).
        size_jitter: each digit's size varies by up to this fraction.
        slant: the baseline rises by this fraction of the line's length.
    """
    inks, x = [], 0.0
    for digit in digits:
        rows, cols = np.flatnonzero(digit.max(1) > 0), np.flatnonzero(digit.max(0) > 0)
        tight = digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        scale = height * (1 + rng.uniform(-size_jitter, size_jitter)) / tight.shape[0]
        size = (max(1, round(tight.shape[1] * scale)), max(1, round(tight.shape[0] * scale)))
        big = np.asarray(Image.fromarray(tight).resize(size, Image.Resampling.BICUBIC), np.float32) / 255
        inks.append((x, np.clip((big - 0.3) / 0.3, 0, 1)))
        x += size[0] + gap * height
    length = x - gap * height
    margin = height // 2
    w, h = int(length + 2 * margin), int(1.6 * height + slant * length + 2 * margin)
    sheet = np.zeros((h, w), np.float32)
    for left, ink in inks:
        top = int(h - margin - 1.2 * height - slant * (left + ink.shape[1] / 2))  # a rising baseline
        top = top + (round(1.2 * height) - ink.shape[0])  # digits stand on it
        region = sheet[top:top + ink.shape[0], int(margin + left):int(margin + left) + ink.shape[1]]
        np.maximum(region, ink[:region.shape[0], :region.shape[1]], out=region)
    rows, cols = np.mgrid[0:h, 0:w]
    light = 1.0 - 0.4 * (rows / h + cols / w) / 2  # 100% at the top left, 60% at the bottom right
    paper, pen = np.array([235, 226, 205]), np.array([40, 45, 80])
    colour = (paper + (pen - paper) * sheet[..., None]) * light[..., None] + rng.normal(0, 3.0, (h, w, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(colour, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def main(examples: Path) -> None:
    folder = examples / "numbers"
    folder.mkdir(parents=True, exist_ok=True)
    test = mnistlab.load_mnist().test
    rng = np.random.default_rng(2903)
    for name, indices in SAMPLES.items():
        labels = "".join(str(int(test.labels[i])) for i in indices)
        assert labels == name.split("-")[1].split(".")[0], f"test digits {indices} write {labels}"
        photo = number_photo([test.images[i].numpy() for i in indices], rng)
        (folder / name).write_bytes(photo.fp.getvalue())
    print(f"wrote {len(SAMPLES)} number photo(s) in {folder}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
