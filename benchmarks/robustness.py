"""How well do models read digits presented the way people present them?

From the MNIST *test* set (never seen in training) this writes, as real image files, each way a
user's image differs from MNIST's convention, then classifies every file twice:

(a) naive resize: open the file, convert to grayscale, resize to 28×28, normalise, classify;
(b) mnistlab: `mnistlab predict CHECKPOINT FOLDER --json`, run in-process (`mnistlab.cli.main`).

It prints a Markdown table of accuracy per variant and model, then the time `mnistlab predict`
takes for the "upscaled" files (100-300 px PNGs; 1,000 by default), checkpoint loading included.
Without --checkpoint it trains the default MLP (`mnistlab train`'s defaults, ~5 s).

    python benchmarks/robustness.py                         # default MLP, 1,000 digits per variant
    python benchmarks/robustness.py --checkpoint runs/demo --checkpoint runs/cnn -n 2000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

import mnistlab
from mnistlab.cli import main as mnistlab_main
from mnistlab.data import normalize
from mnistlab.training import TrainConfig, train_run

Variant = Callable[[np.ndarray, np.random.Generator], tuple[Image.Image, str]]  # digit → (image, suffix)


def _upscale(digit: np.ndarray, size: int) -> Image.Image:
    return Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)


def plain(digit, rng):
    return Image.fromarray(digit), ".png"


def inverted(digit, rng):
    """Dark ink on white paper: how nearly everyone writes."""
    return Image.fromarray(255 - digit), ".png"


def upscaled(digit, rng):
    """A 100-300 px image instead of 28 px."""
    return _upscale(digit, int(rng.integers(100, 301))), ".png"


def off_centre(digit, rng):
    """The digit somewhere on a canvas 2-4 times its size."""
    canvas = np.zeros((int(rng.integers(56, 113)),) * 2, np.uint8)
    top, left = rng.integers(0, canvas.shape[0] - 28, 2)
    canvas[top:top + 28, left:left + 28] = digit
    return Image.fromarray(canvas), ".png"


def thick(digit, rng):
    """A marker: strokes about 2 px (at 28×28) wider, drawn at 4× resolution."""
    return _upscale(digit, 112).filter(ImageFilter.MaxFilter(9)), ".png"


def thin(digit, rng):
    """A fine pen: strokes about a third of MNIST's width, on a 224 px image."""
    return _upscale(digit, 224).filter(ImageFilter.MinFilter(13)), ".png"


def rotated(digit, rng):
    """Written at a slant: rotated by up to ±15°."""
    return Image.fromarray(digit).rotate(float(rng.uniform(-15, 15)), Image.Resampling.BILINEAR), ".png"


def rgb_jpeg(digit, rng):
    """Blue ballpoint on white paper, an RGB JPEG at quality 70, 112 px."""
    ink = np.asarray(_upscale(digit, 112), np.float32)[..., None] / 255
    rgb = (1 - ink) * np.array([250, 248, 240]) + ink * np.array([20, 40, 150])
    buffer = io.BytesIO()
    Image.fromarray(rgb.round().astype(np.uint8)).save(buffer, format="JPEG", quality=70)
    return Image.open(buffer), ".jpg"


def lighting(digit, rng):
    """Dark ink on paper lit unevenly: light falls from 100% to 35% across a random direction."""
    ink = np.asarray(_upscale(digit, 112), np.float32) / 255
    angle = rng.uniform(0, 2 * np.pi)
    u = np.linspace(-0.5, 0.5, 112)
    ramp = np.cos(angle) * u[:, None] + np.sin(angle) * u[None, :]  # -0.71..0.71
    light = 0.675 + 0.46 * ramp
    return Image.fromarray((255 * light * (1 - 0.85 * ink)).round().astype(np.uint8)), ".png"


def salt(digit, rng):
    """Salt noise: 5% of the pixels set to white."""
    noisy = digit.copy()
    noisy[rng.random(digit.shape) < 0.05] = 255
    return Image.fromarray(noisy), ".png"


VARIANTS: dict[str, Variant] = {
    "plain (MNIST as is)": plain, "inverted (dark on light)": inverted, "upscaled to 100-300 px": upscaled,
    "off-centre on a 56-112 px canvas": off_centre, "RGB JPEG q70 (blue ink on white, 112 px)": rgb_jpeg,
    "lighting gradient (100% → 35%)": lighting, "thick strokes (+2 px)": thick,
    "thin strokes (about ⅓ width, 224 px)": thin, "rotated ±15°": rotated, "salt noise 5%": salt,
}


def write_variant(name: str, images: np.ndarray, folder: Path, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths = []
    for i, digit in enumerate(images):
        image, suffix = VARIANTS[name](digit, rng)
        paths.append(folder / f"{i:05d}{suffix}")
        image.save(paths[-1])
    return paths


def naive_accuracy(checkpoint: mnistlab.Checkpoint, paths: list[Path], labels: np.ndarray) -> float:
    """What a user does without mnistlab: grayscale, resize to 28×28, classify."""
    pixels = np.stack([np.asarray(Image.open(p).convert("L").resize((28, 28))) for p in paths])
    with torch.inference_mode():
        logits = checkpoint.model(normalize(torch.from_numpy(pixels), checkpoint.mean, checkpoint.std))
    return float((logits.argmax(1).numpy() == labels).mean())


def mnistlab_predict(checkpoint: Path, folder: Path) -> tuple[dict[str, int | None], float]:
    """`mnistlab predict CHECKPOINT FOLDER --json`, in-process: labels by file name (None: an error), seconds."""
    out, err = io.StringIO(), io.StringIO()  # stderr: the progress bar
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mnistlab_main(["predict", str(checkpoint), str(folder), "--json", "--device", "cpu"])
    seconds = time.perf_counter() - start
    return {Path(row["file"]).name: row.get("label") for row in json.loads(out.getvalue())}, seconds


def command_line_seconds(checkpoint: Path, folder: Path) -> float:
    """The same as a fresh `mnistlab predict` process: Python, torch and the checkpoint loaded from cold."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mnistlab", "predict", str(checkpoint), str(folder), "--json",
                    "--device", "cpu"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", metavar="RUN",
                        help="a checkpoint to measure; repeat for several (default: train the default MLP)")
    parser.add_argument("-n", type=int, default=1000, help="test digits per variant (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="which digits, and the variants' randomness")
    args = parser.parse_args()
    test = mnistlab.load_mnist().test
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(len(test), size=min(args.n, len(test)), replace=False))
    images, labels = test.images.numpy()[chosen], test.labels.numpy()[chosen]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoints = [Path(c) for c in args.checkpoint or []]
        if not checkpoints:
            train_run(TrainConfig(out=str(tmp / "mlp"), progress=False, device="cpu"))
            checkpoints = [tmp / "mlp"]
        loaded = [mnistlab.load_checkpoint(c) for c in checkpoints]
        print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
              f"torch {torch.__version__}, mnistlab {mnistlab.__version__}; {len(chosen)} test digits per variant")
        print("models: " + "; ".join(f"{c.model_name} {c.config['model']['args']} at {c.path} (MNIST test "
                                     f"accuracy {c.metrics.get('test_acc', float('nan')):.2%})" for c in loaded))
        header = "| variant | " + " | ".join(f"{c.model_name.upper()}: naive resize | {c.model_name.upper()}: mnistlab"
                                            for c in loaded) + " |"
        print(f"\n{header}\n|---|" + "---|---|" * len(loaded))
        timing = {}
        for v, name in enumerate(VARIANTS):
            folder = tmp / f"variant{v}"
            paths = write_variant(name, images, folder, args.seed + v)
            cells = []
            for checkpoint, path in zip(loaded, checkpoints, strict=True):
                predicted, seconds = mnistlab_predict(path, folder)
                ours = np.mean([predicted[p.name] == y for p, y in zip(paths, labels, strict=True)])
                failed = sum(predicted[p.name] is None for p in paths)
                cells += [f"{naive_accuracy(checkpoint, paths, labels):.1%}",
                          f"{ours:.1%}" + (f" ({failed} no digit)" if failed else "")]
                if name.startswith("upscaled"):
                    timing[path] = (seconds, command_line_seconds(path, folder))
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print()
    for where, (in_process, fresh) in timing.items():
        print(f"`mnistlab predict` on the {len(chosen):,} upscaled files (100-300 px PNGs) with {where.name}: "
              f"{in_process:.2f} s in-process, {fresh:.2f} s as a fresh command (Python and torch start-up included)")


if __name__ == "__main__":
    main()
