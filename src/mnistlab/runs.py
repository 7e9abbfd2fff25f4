"""Workflows over whole runs: what `mnistlab train` and `mnistlab evaluate` do, callable from Python.

`train(config)` trains (`mnistlab.training.train_run`) and leaves the same run folder as the command:
the checkpoint, metrics.json, curves.png and report.html, published together. `evaluate_test_set`
evaluates a loaded model (a checkpoint or an exported .onnx file) on its dataset's test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .calibration import Tempered
from .classifier import Classifier
from .config import TrainConfig, check_value
from .data import load_test_split
from .dataset_info import DatasetInfo, checkpoint_dataset
from .errors import PictureError
from .evaluation import evaluate_split
from .onnx_model import OnnxModel
from .records import CURVES_FILE, REPORT_FILE, load_metrics
from .rejection import DEFAULT_STRICTNESS, Threshold, threshold_for
from .training import Run, train_run

__all__ = ["PictureError", "RunPictures", "train", "Evaluation", "evaluate_test_set"]


def train(config: TrainConfig, *, pictures: bool = True, report: bool = True,
          before_publish: Callable[[Run, Path], None] | None = None, command: str | None = None) -> Run:
    """Train as `config` says and save the run folder, as `mnistlab train` does.

    Args:
        config: the run's settings (`mnistlab.TrainConfig`).
        pictures: draw curves.png (and, with `report`, report.html) into the run folder.
        report: with `pictures`, write report.html too (`mnistlab train --no-report` leaves it out).
        before_publish: `fn(run, folder)` may write more files into the staging folder, after the
            pictures; they are published with the run, or not at all.
        command: the command line that asked for the run (the CLI passes its own), recorded in config.json.

    Returns the `Run`; `run.pictures` lists the pictures written.

    Raises:
        ValueError: a config field that cannot work. `OutputError`, `TrainingError`: see
        `mnistlab.training.train_run`. `PictureError`: a picture could not be written; the run is saved
        without it (`error.run`).
    """
    drawer = RunPictures(report=report) if pictures else None

    def extras(run: Run, folder: Path) -> None:
        if drawer is not None:
            drawer(run, folder)
        if before_publish is not None:
            before_publish(run, folder)

    run = train_run(config, before_publish=extras, command=command,
                     prepare=drawer.prepare if drawer is not None else None)
    if drawer is not None:
        run.pictures = list(drawer.written)
        if drawer.failure:
            name, reason = drawer.failure
            kept = ", ".join(sorted(p.name for p in run.dir.iterdir()))
            raise PictureError(f"{run.dir / name}: not written ({reason}); {run.dir} holds the trained run: {kept}",
                               run)
    return run


class RunPictures:
    """`training.train_run`'s before_publish hook: curves.png and report.html, into the staging folder.

    They are drawn from the run still in memory, the report's figures from the answers of its last
    evaluation (`Run.test_predictions`: no second pass over the test set), and published with the
    run. A picture that fails (a full disk, a drawing error) must not cost the trained model: the
    failure is kept in `failure`, the run is published without that picture, and `train` reports it
    after.
    """

    def __init__(self, report: bool = True):
        self.report = report
        self.written: list[str] = []  # file names, in the order written
        self.failure: tuple[str, str] | None = None  # (file name, reason)

    @staticmethod
    def prepare() -> None:
        """Import matplotlib and the figures: `train` calls this while the data loads, in parallel with it."""
        from . import plots, report  # noqa: F401

    def __call__(self, run: Run, folder: Path) -> None:
        # Imported here, not with this module: matplotlib is needed only once a run is trained with pictures.
        from . import plots
        from .report import render_report, report_figures

        name = CURVES_FILE
        try:
            # The staging folder is private until published, so the files need no temporary names.
            plots.save_png(plots.training_curves(run.history), folder / CURVES_FILE)
            self.written.append(name)
            if self.report:
                name = REPORT_FILE
                metrics = load_metrics(folder)
                page = render_report(run.dir, metrics, report_figures(metrics, run.test_predictions))
                (folder / REPORT_FILE).write_text(page, encoding="utf-8")
                self.written.append(name)
        except Exception as e:  # whatever went wrong with a picture, the trained run is worth keeping
            (folder / name).unlink(missing_ok=True)
            self.failure = (name, e.strerror if isinstance(e, OSError) and e.strerror else str(e))


@dataclass(frozen=True)
class Evaluation:
    """A model's loss and accuracy on its dataset's test split, and where they came from."""

    loss: float
    accuracy: float
    size: int  # test images
    dataset: DatasetInfo
    digests: dict[str, str]  # SHA-256 of each test file read
    where: str  # what ran the model: a torch device, or onnxruntime
    # The test digits the default "not a digit" rule would refuse, and the accuracy of the others
    # (None for a model that refuses nothing: no "reject" record, or classes that are not digits).
    refused: int | None = None
    answered_accuracy: float | None = None

    @property
    def correct(self) -> int:
        return round(self.accuracy * self.size)


def evaluate_test_set(model: Classifier, *, dataset: str | None = None, data_dir: str | Path | None = None,
                      batch_size: int = TrainConfig.test_batch_size, progress: bool | None = None) -> Evaluation:
    """Evaluate `model` (a checkpoint or an exported ONNX file) on the test split of the dataset it was trained on.

    The loss is the cross-entropy of the model's calibrated probabilities (`Classifier.probabilities`).

    `dataset`, when given, must be the model's own; `data_dir` reads the four IDX files from a folder.
    `progress`: a bar on stderr while the model runs (None: when stderr is a terminal).
    `ValueError`: a `batch_size` outside `TrainConfig.test_batch_size`'s bounds.
    """
    check_value(TrainConfig, "test_batch_size", batch_size)
    info = checkpoint_dataset(model.config.get("dataset", {}), dataset, model.path)
    test, digests = load_test_split(info, data_dir)
    if isinstance(model, OnnxModel):  # its own input convention, on onnxruntime
        # Imported here: prediction brings image preprocessing (scipy), which neither a checkpoint's evaluation
        # nor `mnistlab train` needs.
        from .prediction import array_probabilities, score_probabilities

        probabilities = array_probabilities(model, test.images.numpy(), batch_size, progress=progress)
        loss, acc = score_probabilities(probabilities, test.labels.numpy())
        where = "onnxruntime (CPU)"
    else:
        # The calibrated probabilities, as an export's (whose graph applies the temperature) are: its loss, and
        # what the "not a digit" rule compares with its thresholds.
        result = evaluate_split(Tempered(model.model, model.temperature), test.to(model.device), model.mean,
                                model.std, batch_size, keep_probabilities=True, progress=progress)
        probabilities, loss, acc = result.probabilities.numpy(), result.loss, result.accuracy
        where = str(model.device)
    return Evaluation(loss, acc, len(test), info, digests, where,
                      *_refusals(probabilities, test.labels.numpy(), threshold_for(model, DEFAULT_STRICTNESS)))


def _refusals(probabilities: np.ndarray, labels: np.ndarray, threshold: Threshold) -> tuple[int | None, float | None]:
    """How many test digits the default "not a digit" rule refuses, and the accuracy of the others; (None, None)
    for a model that refuses nothing."""
    if not threshold:
        return None, None
    answered = ~threshold.refuses(probabilities)
    right = np.nan_to_num(probabilities, nan=-1.0).argmax(1) == labels
    return int((~answered).sum()), float(right[answered].mean()) if answered.any() else None
