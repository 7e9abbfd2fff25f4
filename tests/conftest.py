"""Shared fixtures: tiny synthetic IDX datasets, so most tests never touch the real 60,000 images."""

from __future__ import annotations

import gzip
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Python's own Ctrl-C handler, whatever this process inherited: a shell that starts a job in the
    background hands it SIGINT ignored, and an ignored signal stays ignored in every child, so the
    tests of Ctrl-C (in-process, and of the commands they start, where exec resets a handled signal
    to the default) would test nothing there."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def make_dataset(folder: Path, n_train: int = 512, n_test: int = 128, seed: int = 0, gz: bool = True) -> Path:
    """Write the four MNIST files with learnable synthetic digits: class k lights up row band k."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-epoch run on synthetic data, trained once for every test that only reads it: (run, data folder)."""
    from mnistlab.training import TrainConfig, train_run

    root = tmp_path_factory.mktemp("tiny_run")
    data_dir = make_dataset(root / "data")
    run = train_run(TrainConfig(epochs=2, device="cpu", data_dir=str(data_dir), out=str(root / "run"), progress=False,
                            model_args={"hidden": 16}))
    return run.dir, data_dir


@pytest.fixture(scope="session")
def mnist_mlp(tmp_path_factory) -> Path:
    """The default MLP trained on the real MNIST for 2 epochs (~97% test accuracy), once per session."""
    from mnistlab.training import TrainConfig, train_run

    out = tmp_path_factory.mktemp("mnist_mlp") / "run"
    return train_run(TrainConfig(epochs=2, device="cpu", data_dir=None, out=str(out), progress=False)).dir


@pytest.fixture
def no_hang():
    """Fail (instead of freezing the suite) if the test blocks for 20 s: SIGALRM interrupts a blocking open()."""
    def expire(signum, frame):
        raise TimeoutError("blocked for 20 s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@contextmanager
def serving(command: list[str], **popen) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run a `mnistlab serve ... --port 0` command line; yield (its URL, the process), then Ctrl-C it.

    Ctrl-C is how a server is stopped: it must end with the shell's 130 and no traceback.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        first = process.stdout.readline()  # "serving RUN at http://127.0.0.1:PORT/  (...)", once it listens
        assert " at http://" in first, f"{first!r} {process.stderr.read() if process.poll() is not None else ''}"
        yield first.split(" at ", 1)[1].split()[0], process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.errors = process.communicate(timeout=30)[1]
        finally:
            process.kill()
    assert process.returncode == 130 and "Traceback" not in process.errors, (process.returncode, process.errors)


def mnistlab_command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "mnistlab", *argv]


CHROMIUM = Path("/usr/bin/chromium")  # Debian's (.ci/run installs it): Playwright's own download fails here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser():
    """Chromium driven by Playwright, one for a test module (the browser tests skip without it)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
