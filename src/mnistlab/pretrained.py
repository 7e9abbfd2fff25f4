"""Pretrained weights shipped inside the package, named `pretrained:NAME` wherever a run folder is taken.

Each model is an ordinary run folder under `mnistlab/pretrained/NAME/` (model.safetensors,
config.json, metrics.json), made by `mnistlab train` itself: its config.json records the exact
command line, the seed, the versions and the SHA-256 of the data it saw. Every file's SHA-256 is
pinned below, and `resolve` checks them before a loader reads a byte of the folder, so an altered
install refuses in one line instead of serving other weights. `make pretrained`
(scripts/make_pretrained.py) re-creates the folders and rewrites the pins.

This module imports no torch: `mnistlab models` and `serve`'s messages read it cheaply.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from . import _io
from ._io import file_sha256
from .errors import PretrainedError
from .records import CONFIG_FILE, RUNS_DIR, read_json

PREFIX = "pretrained:"
SHOWN_NAME_MAX = 40  # characters of an unknown name repeated in the error (a name may be any length)
MAX_PINNED_FILE_BYTES = 8 << 20  # the largest pinned file is ~0.9 MB; a bigger one is not ours, whatever its hash

# The SHA-256 of every file of each model's folder. Written by `make pretrained`; do not edit by hand.
# BEGIN PINS
PINS: dict[str, dict[str, str]] = {
    "cnn": {
        "model.safetensors": "ea33b4dd8a1559a19380dc3df80e97ebe2200153a6e735ee7756f45fe628a9a8",
        "config.json": "55628bd982577ae117d1a83eb3953b59db0054012812b36251e25fdcb87c9919",
        "metrics.json": "249e63ab2978b0ec797604ccae5d93399660dca9d1a0eb292655bd8e72b77b5c",
        "curves.png": "2f3887eabe271de2597f570889d32ad6dba75c2a35868e31c780ca467d2eec4f",
    },
    "cnn_small": {
        "model.safetensors": "c7f8ef73ede9522f3c86e80e10e83d49249c53edaa075fae19a6adaa212563af",
        "config.json": "09ca9ce95f8d1d041d5c2353e9bb6364cb404f18a1d1a8a8daaf9c60c4798b93",
        "metrics.json": "2e1da208ee1e7903dd6ca4d62ee756dbc1b116c0f51429872400d4ace0da65d9",
        "curves.png": "b8edd76c39007713a38d0a5053dade7e0985bbf7aa2fa88b6bb38750ec7cbd00",
    },
    "mlp": {
        "model.safetensors": "b168889752590af15686ac4c67d47befc9c55e5dfae61d0bffbf8d49fd209196",
        "config.json": "c8f2c183d3e4e0e499e17f85a7382c0fc96d782628c01a638083b0725649788f",
        "metrics.json": "e395c12877a589596e3bf539cf57b5a960f9d42f81c980bd8589d3d759340fa5",
        "curves.png": "1b3c9934c4ca82a94cd0c4231f81e91c2a1ce773c8f0874d89ad38d3c172f74d",
    },
}
# END PINS


@dataclass(frozen=True)
class PretrainedInfo:
    """What `mnistlab models` shows of one pretrained model, read off its (verified) config.json."""

    name: str  # "cnn": the model is `pretrained:cnn`
    model: str  # the registered architecture
    test_acc: float  # recorded accuracy on the dataset's test set (0-1)
    dataset: str
    recipe: str | None
    seed: int
    command: str | None  # the `mnistlab train ...` line that made it


def list_pretrained() -> list[str]:
    """The names of the pretrained models, e.g. ["cnn", "cnn_small", "mlp"] (each used as `pretrained:NAME`)."""
    return list(PINS)


def is_pretrained_name(name_or_path: object) -> bool:
    """Whether the argument is written as a pretrained name (`pretrained:...`), known or not.

    A `Path` made from such text counts too, as library code often wraps what it was given; a folder
    that is really named so is reached by another spelling of its path (`/abs/pretrained:x`).
    """
    text = os.fspath(name_or_path) if isinstance(name_or_path, str | os.PathLike) else None
    return isinstance(text, str) and text.startswith(PREFIX)


def resolve(name_or_path: str | os.PathLike, *, root: Path | None = None) -> Path:
    """`pretrained:NAME` → the package's folder of that model, after checking every file against its pin.

    Any other argument passes through unchanged (as a `Path`), except that a path into the package's
    own pretrained folder is checked the same way. `root`: where the folders are (tests use a copy).

    Raises:
        PretrainedError: an unknown name (the message lists the valid ones), or a missing or altered file.
    """
    root = _io.PRETRAINED_DIR if root is None else Path(root)
    if not is_pretrained_name(name_or_path):
        path = Path(name_or_path)
        name = _inside(path, root)
        if name is not None:
            _verify(name, root / name)
        return path
    name = os.fspath(name_or_path)[len(PREFIX):]
    if name not in PINS:
        shown = name if len(name) <= SHOWN_NAME_MAX else f"{name[:SHOWN_NAME_MAX]}..."
        close = difflib.get_close_matches(name, list(PINS), n=1) if len(name) <= SHOWN_NAME_MAX else []
        guess = f"did you mean {PREFIX}{close[0]}? " if close else ""
        raise PretrainedError(f"no pretrained model named {shown!r} ({PREFIX}NAME); {guess}choose from: "
                              f"{', '.join(PREFIX + known for known in PINS)}")
    folder = root / name
    _verify(name, folder)
    return folder


def describe(name: str, *, root: Path | None = None) -> PretrainedInfo:
    """The recorded facts of `pretrained:NAME` (verified first)."""
    folder = resolve(PREFIX + name, root=root)
    config = read_json(folder / CONFIG_FILE)  # pinned: its content is the one `make pretrained` wrote
    train_config = config.get("train_config", {})
    return PretrainedInfo(name=name, model=config["model"]["name"], test_acc=config["metrics"]["test_acc"],
                          dataset=config["dataset"]["name"], recipe=train_config.get("recipe"),
                          seed=train_config["seed"], command=config.get("command"))


def outputs_folder(run: str | os.PathLike) -> Path:
    """Where a command puts the files it writes by default for `run` (a run folder or one of its files): the
    run's folder; for pretrained weights, which belong to the install and are never written into,
    `runs/pretrained-NAME/` in the current folder, beside the runs one trains."""
    if is_pretrained_name(run):
        return RUNS_DIR / f"pretrained-{resolve(run).name}"  # an unknown name fails here, before it names a path
    path = Path(run)
    try:
        folder = path.parent if path.is_file() else path
    except OSError:  # a name too long, say: reading the run reports it in one line
        return path
    name = _inside(folder)
    return folder if name is None else RUNS_DIR / f"pretrained-{name}"


def _inside(path: Path, root: Path | None = None) -> str | None:
    """The pretrained model whose folder `path` is or lies in (under `root`), else None."""
    root = _io.PRETRAINED_DIR if root is None else root
    for spelled in (os.path.abspath, os.path.realpath):  # as written, and with links followed: either counts
        try:
            relative = Path(spelled(path)).relative_to(os.path.realpath(root))
        except (ValueError, OSError):
            continue
        if relative.parts and relative.parts[0] in PINS:
            return relative.parts[0]
    return None


def _verify(name: str, folder: Path) -> None:
    """Every pinned file of `pretrained:NAME` is in `folder`, a regular file, and has its pinned SHA-256."""
    reinstall = "the installed package was altered or is incomplete; reinstall mnistlab"
    for file_name, pinned in PINS[name].items():
        path = folder / file_name
        try:
            if not path.is_file() or path.is_symlink():
                raise PretrainedError(f"{PREFIX}{name}: {path} is missing or not a regular file ({reinstall})")
            if path.stat().st_size > MAX_PINNED_FILE_BYTES:
                raise PretrainedError(f"{PREFIX}{name}: {path} is larger than any pretrained file ({reinstall})")
            digest = file_sha256(path)
        except OSError as e:
            raise PretrainedError(f"{PREFIX}{name}: {path} cannot be read ({e.strerror or e})") from None
        if digest != pinned:
            raise PretrainedError(f"{PREFIX}{name}: {path} does not match its pinned SHA-256 ({reinstall})")

