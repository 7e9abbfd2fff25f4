"""mnistlab: handwritten-digit recognition with PyTorch.

The public API is the `if TYPE_CHECKING:` block below, where type checkers and IDEs read it. At run
time each name is imported from its module on first use (`__getattr__` reads the same block), so
`import mnistlab` and `mnistlab --help` stay fast and load no torch until a function that needs it
is called. `docs/python-api.md` says what each name is for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:  # the public names, in the order of their modules (`__all__` groups them)
    from .checkpoints import Checkpoint, load_checkpoint
    from .classifier import Classifier
    from .config import TrainConfig
    from .data import MNIST_MEAN, MNIST_STD, load_mnist, normalize, read_idx
    from .dataset_info import DatasetInfo, get_dataset, list_datasets
    from .decoding import load_image
    from .device import resolve_device
    from .errors import (
        ApiError,
        CheckpointError,
        DataError,
        DeviceError,
        ExportError,
        FieldError,
        FinetuneError,
        ForeignRecordError,
        ImageError,
        LabelledError,
        MetricsError,
        MissingFileError,
        MnistlabError,
        ModelError,
        NoDigitError,
        NotRegularFileError,
        OnnxModelError,
        OutputError,
        PictureError,
        PlotError,
        PortInUseError,
        PretrainedError,
        RunExistsError,
        SchemaError,
        ServeError,
        TrainingError,
    )
    from .evaluation import SplitPredictions, compute_predictions, evaluate
    from .model_loading import load_model
    from .models import create_model, list_models, register_model
    from .onnx_model import OnnxModel, load_onnx
    from .plots import (
        confusion_matrix,
        mistakes_gallery,
        pixel_view,
        prediction_grid,
        save_figure,
        show_figure,
        training_curves,
    )
    from .prediction import Prediction, predict
    from .preprocessing import preprocess
    from .pretrained import list_pretrained
    from .reading import Reading, read
    from .records import load_metrics
    from .report import write_report
    from .runs import train
    from .training import Run

__all__ = [
    "__version__",
    # data and models
    "MNIST_MEAN", "MNIST_STD", "load_mnist", "normalize", "read_idx",
    "DatasetInfo", "get_dataset", "list_datasets", "resolve_device",
    "create_model", "list_models", "register_model",
    # training
    "TrainConfig", "Run", "train", "evaluate",
    # loading a model and predicting with it
    "Classifier", "load_model", "Checkpoint", "load_checkpoint", "OnnxModel", "load_onnx", "list_pretrained",
    "predict", "Prediction", "preprocess", "load_image",
    "read", "Reading",
    # pictures and the report
    "SplitPredictions", "compute_predictions", "pixel_view", "prediction_grid", "training_curves",
    "confusion_matrix", "mistakes_gallery", "save_figure", "show_figure", "load_metrics", "write_report",
    # errors
    "MnistlabError", "OutputError", "DataError", "ImageError", "NoDigitError", "LabelledError", "DeviceError",
    "ModelError", "SchemaError", "MissingFileError", "FieldError", "ForeignRecordError", "NotRegularFileError",
    "CheckpointError", "OnnxModelError", "MetricsError", "TrainingError", "PlotError", "PictureError",
    "ExportError", "FinetuneError", "ServeError", "PortInUseError", "ApiError", "PretrainedError", "RunExistsError",
]


def _public_names() -> dict[str, str]:
    """{name: its module} as the `if TYPE_CHECKING:` block above imports them: the names are declared once."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    return {alias.asname or alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom)
            for alias in node.names}


def __getattr__(name: str) -> object:
    module = _public_names().get(name) if name in __all__ else None
    if module is None:
        raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next look-up finds it without calling __getattr__ (PEP 562)
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
