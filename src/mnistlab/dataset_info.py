"""The datasets mnistlab knows: one frozen record of facts each, in one registry.

Every dataset here is MNIST-shaped: four IDX files (28×28 uint8 images, labels 0-9), 60,000 training
and 10,000 test images. MNIST ships with mnistlab; Fashion-MNIST is read from Debian's
dataset-fashion-mnist package when it is installed (its files checked against the SHA-256 pinned
here for each decompressed file); the others are fetched on first use (`mnistlab.downloads`) and
checked against the MD5 pinned here for each .gz file. This module imports no torch: `mnistlab
data list` and `--help` read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .limits import NUM_CLASSES

MNIST_MEAN = 0.1307  # mean pixel of the MNIST training set, on a 0-1 scale
MNIST_STD = 0.3081  # its standard deviation

# Base names of the four IDX files, the same for every dataset; each may sit on disk gzipped (".gz") or raw.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILE_STEMS = tuple(stem for pair in SPLIT_FILES.values() for stem in pair)
BUNDLED_ROOT = Path(__file__).parent / "bundled"  # <root>/<dataset>/: the datasets that ship with mnistlab (MNIST)
# Where Debian's dataset packages install a dataset: <root>/<dataset>/ (dataset-fashion-mnist: its four .gz files).
SYSTEM_ROOT = Path("/usr/share/datasets")
DIGIT_CLASSES = tuple(str(digit) for digit in range(NUM_CLASSES))  # MNIST's class names, and any unnamed model's


# How `predict` places an image in 28×28, as the dataset's own images are placed: "digit" as MNIST
# (a 20×20 box, centred by mass), "fill" as Fashion-MNIST (the long side spans all 28, centred by the box).
LAYOUTS = ("digit", "fill")


@dataclass(frozen=True)
class DatasetInfo:
    """The facts about one dataset: what it is, where it comes from, and how to tell its files are right."""

    name: str  # what --dataset takes, and what a checkpoint's config.json records
    title: str
    classes: tuple[str, ...]  # one name per label, in label order; figures draw them (so: glyphs any font has)
    mean: float  # mean pixel of the training set, on a 0-1 scale: the default normalisation
    std: float
    urls: tuple[str, ...] = ()  # base URLs, tried in order (official first); none: bundled with mnistlab
    md5: dict[str, str] | None = None  # {"<stem>.gz": MD5 of the published file}; None: bundled
    # {stem: SHA-256 of the decompressed file}: checks a copy whose .gz files are recompressed (bundled, Debian's)
    content_sha256: dict[str, str] | None = None
    debian_package: str = ""  # installs the four .gz files in SYSTEM_ROOT/<name>/; "": no package does
    homepage: str = ""
    licence: str = ""
    hash_source: str = ""  # where the pinned hashes come from
    note: str = ""  # anything else a user should know (e.g. the KMNIST characters in hiragana)
    layout: str = "digit"  # how `predict` places an image (LAYOUTS)

    @property
    def bundled(self) -> bool:
        return not self.urls

    @property
    def files(self) -> tuple[str, ...]:
        """The four file names as published (gzipped)."""
        return tuple(f"{stem}.gz" for stem in FILE_STEMS)


MNIST = DatasetInfo(
    name="mnist",
    title="MNIST",
    classes=DIGIT_CLASSES,
    mean=MNIST_MEAN,
    std=MNIST_STD,
    homepage="https://yann.lecun.com/exdb/mnist/",
    licence="CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
    # The bundled .gz files are recompressed, so their MD5s differ from the published ones; the SHA-256
    # of each file's content (data.MNIST_SHA256) is what identifies them.
    content_sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    hash_source="SHA-256 of each decompressed file, computed from the published files (see bundled/mnist/README.md)",
)

FASHION_MNIST = DatasetInfo(
    name="fashion-mnist",
    title="Fashion-MNIST",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"),
    mean=0.2860,  # the widely published training-set values
    std=0.3530,
    urls=("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
          "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    # Debian recompresses the .gz files, so their MD5s are not the published ones: what Debian's copy is
    # checked by is the SHA-256 of each decompressed file (it also judges whether a --data-dir copy is canonical).
    content_sha256={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    debian_package="dataset-fashion-mnist",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    licence="MIT (Zalando SE)",
    hash_source="the MD5s pinned in torchvision's datasets/mnist.py (FashionMNIST.resources); the SHA-256 of each "
                "decompressed file computed from Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1 "
                "(see docs/datasets.md)",
    layout="fill",
)

KMNIST = DatasetInfo(
    name="kmnist",
    title="Kuzushiji-MNIST",
    # torchvision's romanised names: matplotlib's default font has no Japanese glyphs.
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    mean=0.1918,
    std=0.3483,
    urls=("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",),  # no known mirror
    md5={
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    },
    homepage="https://github.com/rois-codh/kmnist",
    licence="CC BY-SA 4.0 (ROIS-DS CODH; cite Clanuwat et al. 2018, arXiv:1812.01718)",
    hash_source="the MD5s pinned in torchvision's datasets/mnist.py (KMNIST.resources)",
    note="classes in hiragana: お き す つ な は ま や れ を",
    layout="fill",  # its characters fill the frame, as in the images its README shows
)

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (MNIST, FASHION_MNIST, KMNIST)}
# What a checkpoint from before datasets had names recorded: "custom" meant MNIST-format files of the user's.
LEGACY_NAMES = {"custom": "mnist"}


def list_datasets() -> list[str]:
    return list(DATASETS)


def get_dataset(name: str) -> DatasetInfo:
    """The registry's record for `name`; `ValueError` listing the valid names for any other."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; choose from: {', '.join(DATASETS)}") from None


def recorded_dataset(dataset: dict) -> str:
    """The dataset name a config.json "dataset" field records, "mnist" for a checkpoint from before names."""
    name = dataset.get("name", "mnist")
    return LEGACY_NAMES.get(name, name)


def layout_of(name: str) -> str:
    """How `predict` places an image for a model trained on dataset `name` ("digit" for one mnistlab does not know)."""
    info = DATASETS.get(name)
    return info.layout if info else "digit"


def trained_on(dataset: dict) -> str:
    """The registry name of the dataset a checkpoint's config.json "dataset" field describes.

    A checkpoint from before datasets had names records "mnist" or "custom" (or nothing): MNIST.
    Raises `DataError` for a name mnistlab does not know.
    """
    name = recorded_dataset(dataset)
    if name not in DATASETS:
        raise DataError(f"dataset {name!r} of the checkpoint is not one mnistlab knows ({', '.join(DATASETS)})")
    return name


def checkpoint_dataset(recorded: dict, requested: str | None, where: object) -> DatasetInfo:
    """The dataset to evaluate a checkpoint on: the one it was trained on (config.json's "dataset").

    `requested` (an explicit --dataset) must be that one: a model answers in its own classes, so a
    score on another dataset means nothing. Raises `DataError` naming `where` (the checkpoint) and both.
    """
    try:
        trained = trained_on(recorded)
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    if requested is not None and requested != trained:
        raise DataError(f"{where} was trained on {trained}, not {requested}: "
                        f"leave out --dataset (or give --dataset {trained})")
    return DATASETS[trained]
