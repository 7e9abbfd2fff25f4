"""mnistlab: handwritten-digit recognition with PyTorch.

The public API is imported lazily, so `import mnistlab` (and `mnistlab --help`) stays fast and
does not load torch until a function that needs it is used.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mnistlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "MNIST_MEAN": "data", "MNIST_STD": "data", "DataError": "data", "load_mnist": "data",
    "normalize": "data", "read_idx": "data",
    "get_dataset": "datasets", "list_datasets": "datasets", "DatasetInfo": "datasets",
    "create_model": "models", "list_models": "models", "register_model": "models",
    "resolve_device": "device", "DeviceError": "device",
    "Checkpoint": "checkpoints", "CheckpointError": "checkpoints", "load_checkpoint": "checkpoints",
    "TrainConfig": "training", "Run": "training", "train": "training", "evaluate": "training",
    "MnistlabError": "errors", "OutputError": "errors", "PretrainedError": "errors",
    "list_pretrained": "pretrained", "TrainingError": "training",
    "SplitPredictions": "plots", "compute_predictions": "plots", "pixel_view": "plots", "prediction_grid": "plots",
    "training_curves": "plots", "confusion_matrix": "plots", "mistakes_gallery": "plots", "save_figure": "plots",
    "show_figure": "plots", "load_metrics": "report", "write_report": "report",
    "preprocess": "preprocessing", "load_image": "preprocessing", "ImageError": "preprocessing",
    "NoDigitError": "preprocessing", "Prediction": "prediction",
    "Classifier": "classifier", "load_model": "classifier", "OnnxModel": "onnx_model", "load_onnx": "onnx_model",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
