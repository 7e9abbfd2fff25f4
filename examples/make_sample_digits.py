"""Write examples/digits/ and examples/my-digits/: digits as people hand them in, made from MNIST *test* digits.

Each MNIST digit is enlarged and turned into pen strokes on paper, then presented one way:
drawn in Paint, written with a pen, photographed under a desk lamp, scanned; plus a blank sheet.
examples/my-digits/ holds two of each digit laid out as `mnistlab evaluate --images` reads a
person's own collection (my-digits/0/ … my-digits/9/): a stand-in until you collect your own.
The README's `predict`, `show` and `evaluate --images` examples use these files, and
tests/test_readme.py runs them. The output is the same on every run (fixed digits, fixed noise seeds).

    python examples/make_sample_digits.py [FOLDER]      # default: examples (writes FOLDER/digits, FOLDER/my-digits)
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

import mnistlab
from mnistlab.data import Split

# file name → (MNIST test index, its label, long side of the digit in pixels)
SAMPLES = {"paint-3.png": (18, 3, 220), "pen-4.png": (4, 4, 150), "photo-7.jpg": (0, 7, 300),
           "scan-0.png": (3, 0, 120)}


def strokes(digit: np.ndarray, size: int) -> np.ndarray:
    """A 28×28 uint8 digit → float (size, size) ink coverage in [0, 1] with smooth, pen-like edges."""
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    return np.clip((big - 0.3) / 0.3, 0, 1)  # the blurry upscale's middle grey becomes the stroke's edge


def on_paper(ink: np.ndarray, canvas: tuple[int, int], at: tuple[int, int], paper: float, pen: float,
             noise: float, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage placed on a sheet: float (H, W) grey levels 0-255, paper light, ink dark."""
    sheet = np.zeros(canvas, np.float32)
    sheet[at[0]:at[0] + ink.shape[0], at[1]:at[1] + ink.shape[1]] = ink
    grey = paper + (pen - paper) * sheet
    return grey + rng.normal(0, noise, canvas) if noise else grey


def labelled(folder: Path, test: Split, per_digit: int = 2) -> None:
    """folder/0/ … folder/9/: the first `per_digit` test digits of each class past #100, drawn in Paint and in pen."""
    rng = np.random.default_rng(1)
    for label in range(10):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        indices = [i for i in range(100, len(test)) if int(test.labels[i]) == label][:per_digit]
        for n, index in enumerate(indices):
            ink = strokes(test.images[index].numpy(), 200)
            if n % 2 == 0:  # Paint: black on white, hard edges
                grey = on_paper((ink > 0.5).astype(np.float32), (260, 260), (30, 30), 255, 0, 0, rng)
            else:  # a pen on paper, without sensor noise (small files)
                grey = on_paper(ink, (240, 240), (20, 20), 242, 35, 0, rng)
            Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).save(folder / str(label) / f"test-{index}.png")
    print(f"wrote {10 * per_digit} labelled digits in {folder}/0 … {folder}/9")


def main(examples: Path) -> None:
    folder = examples / "digits"
    folder.mkdir(parents=True, exist_ok=True)
    test = mnistlab.load_mnist().test
    rng = np.random.default_rng(0)
    for name, (index, label, size) in SAMPLES.items():
        assert int(test.labels[index]) == label, f"test digit #{index} is not a {label}"
        ink = strokes(test.images[index].numpy(), size)
        if name.startswith("paint"):  # Paint: pure black on white, hard edges, a square canvas
            grey = on_paper((ink > 0.5).astype(np.float32), (280, 280), (30, 30), 255, 0, 0, rng)
        elif name.startswith("pen"):  # a pen on printer paper, cropped loosely: a tall, narrow image
            grey = on_paper(ink, (230, 190), (45, 20), 242, 35, 2.0, rng)
        elif name.startswith("scan"):  # a grey scan with sensor noise
            grey = on_paper(ink, (160, 160), (20, 20), 225, 60, 4.0, rng)
        else:  # a phone photo: warm paper, blue-black ink, a lamp's light falling off across the sheet, JPEG
            h, w = 480, 400
            grey = on_paper(ink, (h, w), (90, 50), 1.0, 0.18, 0, rng)
            rows, cols = np.mgrid[0:h, 0:w]
            light = 1.0 - 0.45 * (rows / h + cols / w) / 2  # 100% at the top left, 55% at the bottom right
            colour = np.stack([grey * 235, grey * 226 + (1 - grey) * 10, grey * 205 + (1 - grey) * 60], -1)
            photo = colour * light[..., None] + rng.normal(0, 3.0, (h, w, 3))
            Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(folder / name, quality=85)
            continue
        Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).save(folder / name)
    Image.new("L", (200, 200), 240).save(folder / "blank.png")  # a blank sheet: "no digit found"
    print(f"wrote {', '.join(sorted([*SAMPLES, 'blank.png']))} in {folder}")
    labelled(examples / "my-digits", test)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "examples"))
