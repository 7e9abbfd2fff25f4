"""Time the classic MNIST script's pipeline against `mnistlab train`, side by side, in one process.

(a) seed-style: a per-sample Dataset that turns each uint8 array into a PIL image, then ToTensor
    and Normalize (torchvision's code, inlined: torchvision does not install beside this torch),
    a DataLoader of batch 64 shuffled, eager Adam (torch's default implementation), the test set
    evaluated after every epoch through a DataLoader of batch 1000.
(b) mnistlab: `mnistlab.train(TrainConfig(...))` with the defaults, exactly what `mnistlab train` runs.

Same model (the registry's `mlp`), same data files, same epochs, same seed per pair. Each timing
covers reading the IDX files through to a trained, evaluated model (mnistlab's also covers
hashing the data and writing the checkpoint). Peak memory is the process's resident set size,
sampled every 5 ms, above what it was when the pipeline started.

    python benchmarks/train_speed.py --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import mnistlab
from mnistlab.data import MNIST_MEAN, MNIST_STD, resolve_data_dir
from mnistlab.models import create_model
from mnistlab.training import TrainConfig, train_run


class PeakRSS:
    """Context manager: the peak resident set size above the starting one, in MiB."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak_mib = interval, 0.0

    @staticmethod
    def rss_bytes() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self.rss_bytes())

    def __enter__(self) -> PeakRSS:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed memory back, so each phase starts level
        self._start = self._peak = self.rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = (max(self._peak, self.rss_bytes()) - self._start) / 2**20


# --- (a) the classic script's pipeline -----------------------------------------------------------

def to_tensor(pic: Image.Image) -> torch.Tensor:
    """torchvision.transforms.functional.to_tensor for a mode 'L' image."""
    img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
    img = img.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
    return img.to(dtype=torch.get_default_dtype()).div(255)


def normalize(tensor: torch.Tensor, mean: tuple[float], std: tuple[float]) -> torch.Tensor:
    """torchvision.transforms.functional.normalize (not in place)."""
    tensor = tensor.clone()
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
    return tensor.sub_(mean_t).div_(std_t)


class SeedStyleMNIST(torch.utils.data.Dataset):
    """What torchvision.datasets.MNIST does per sample: uint8 array -> PIL image -> transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        img = Image.fromarray(self.images[index], mode="L")
        return normalize(to_tensor(img), (MNIST_MEAN,), (MNIST_STD,)), int(self.labels[index])


def seed_style(seed: int, epochs: int, data_dir: Path) -> float:
    """Train and evaluate the classic way; return the final test accuracy."""
    read = mnistlab.read_idx
    train_set = SeedStyleMNIST(read(data_dir / "train-images-idx3-ubyte.gz"),
                               read(data_dir / "train-labels-idx1-ubyte.gz"))
    test_set = SeedStyleMNIST(read(data_dir / "t10k-images-idx3-ubyte.gz"),
                              read(data_dir / "t10k-labels-idx1-ubyte.gz"))
    torch.manual_seed(seed)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000)
    model = create_model("mlp")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        running_loss, correct, seen = 0.0, 0, 0
        for data, target in train_loader:
            optimizer.zero_grad()
            output = model(data)
            loss = F.cross_entropy(output, target)
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * len(target)
            correct += (output.argmax(1) == target).sum().item()
            seen += len(target)
        model.eval()
        test_correct = 0
        with torch.no_grad():
            for data, target in test_loader:
                test_correct += (model(data).argmax(1) == target).sum().item()
    return test_correct / len(test_set)


# --- (b) mnistlab ---------------------------------------------------------------------------------

def mnistlab_style(seed: int, epochs: int, data_dir: Path) -> float:
    with tempfile.TemporaryDirectory() as out:
        run = train_run(TrainConfig(seed=seed, epochs=epochs, data_dir=str(data_dir), out=out, progress=False))
    return run.final.test_acc


def measure(fn, seed: int, epochs: int, data_dir: Path) -> tuple[float, float, float]:
    with PeakRSS() as mem:
        start = time.perf_counter()
        acc = fn(seed, epochs, data_dir)
        seconds = time.perf_counter() - start
    return seconds, acc, mem.peak_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="one pair of runs per seed")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    data_dir = resolve_data_dir()

    # torch.optim's first use imports torch._dynamo (~1 s); pay it before either clock starts.
    torch.optim.Adam(torch.nn.Linear(1, 1).parameters())
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, mnistlab {mnistlab.__version__}; {args.epochs} epochs")
    rows = []
    for seed in args.seeds:
        a = measure(seed_style, seed, args.epochs, data_dir)
        b = measure(mnistlab_style, seed, args.epochs, data_dir)
        rows.append((seed, a, b))
        print(f"seed {seed}: seed-style {a[0]:6.2f} s  acc {a[1]:.2%}  peak +{a[2]:5.0f} MiB | "
              f"mnistlab {b[0]:5.2f} s  acc {b[1]:.2%}  peak +{b[2]:5.0f} MiB | ratio {b[0] / a[0]:.3f}")

    def mean(i: int, j: int) -> float:
        return statistics.mean(r[i][j] for r in rows)

    print("\n| pipeline | time (s) | test accuracy | peak memory (MiB) |\n|---|---|---|---|")
    print(f"| seed-style (PIL per sample, DataLoader, eager Adam) | {mean(1, 0):.2f} | {mean(1, 1):.2%} "
          f"| {mean(1, 2):.0f} |")
    print(f"| mnistlab train | {mean(2, 0):.2f} | {mean(2, 1):.2%} | {mean(2, 2):.0f} |")
    print(f"\nmnistlab / seed-style time ratio: {mean(2, 0) / mean(1, 0):.3f} "
          f"(per seed: {', '.join(f'{r[2][0] / r[1][0]:.3f}' for r in rows)})")
    print(f"mnistlab test accuracy over seeds {args.seeds}: "
          f"{', '.join(f'{r[2][1]:.2%}' for r in rows)}; mean {mean(2, 1):.2%}")


if __name__ == "__main__":
    main()
