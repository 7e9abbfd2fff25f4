"""A run's report: one self-contained `report.html` with the config, the metrics and every figure.

The figures are embedded as PNG data URIs, so the file can be mailed or attached on its own. The
training curves are drawn from the run's `metrics.json` (`mnistlab.records.load_metrics`).
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime
from pathlib import Path

from matplotlib.figure import Figure

from ._outputs import atomic_path
from ._version import __version__
from .checkpoints import Checkpoint, load_checkpoint
from .data import load_test_split
from .dataset_info import checkpoint_dataset
from .errors import one_line
from .evaluation import SplitPredictions, compute_predictions
from .model_loading import locate
from .plots import (
    DPI,
    confusion_matrix,
    mistakes_gallery,
    pixel_view,
    prediction_grid,
    save_png,
    training_curves,
)
from .pretrained import outputs_folder
from .records import REPORT_FILE, load_metrics
from .reliability import reliability_diagram

REPORT_GRID = {"rows": 5, "seed": 0}  # five test digits of each class, the same ones every time


def predictions_for_run(run: str | Path, data_dir: str | Path | None = None, device: str = "cpu",
                        batch_size: int = 1000, dataset: str | None = None) -> SplitPredictions:
    """Rebuild a run's model from its checkpoint and compute its predictions on the test split, their
    probabilities calibrated as `Checkpoint.probabilities` gives them.

    The split is the run's own dataset's (read from `data_dir` when given); an explicit `dataset` other
    than the run's is refused (`mnistlab.DataError`).
    """
    return _test_predictions(load_checkpoint(run, device=device), data_dir, batch_size, dataset)


def reliability_for_run(run: str | Path, data_dir: str | Path | None = None, device: str = "cpu",
                        batch_size: int = 1000, dataset: str | None = None) -> Figure:
    """The reliability diagram of a run's model on its test split, calibrated and (when it is) uncalibrated."""
    checkpoint = load_checkpoint(run, device=device)
    return reliability_diagram(_test_predictions(checkpoint, data_dir, batch_size, dataset), checkpoint.temperature)


def _test_predictions(checkpoint: Checkpoint, data_dir: str | Path | None, batch_size: int,
                      dataset: str | None) -> SplitPredictions:
    info = checkpoint_dataset(checkpoint.config.get("dataset", {}), dataset, checkpoint.path)
    test, _ = load_test_split(info, data_dir)
    predictions = compute_predictions(checkpoint.model, test.to(checkpoint.device), checkpoint.mean, checkpoint.std,
                                      batch_size, checkpoint.classes)
    return predictions.at_temperature(checkpoint.temperature)


def _png_data_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    save_png(fig, buffer)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def report_figures(metrics: dict, predictions: SplitPredictions) -> dict[str, tuple[str, str, Figure]]:
    """The report's figures: {id: (heading, caption, Figure)}, in reading order.

    `predictions` are calibrated at the temperature `metrics` records ("calibration"; none: 1).
    """
    names, noun = predictions.classes, predictions.noun
    label, pred = names[int(predictions.labels[0])], names[int(predictions.preds[0])]
    heading = f"Test {noun} #0: label {label}, predicted {pred}"
    return {
        "curves": ("Training curves", "Loss and accuracy after each epoch; train figures are running averages "
                   "over the epoch, test figures are computed on the whole test set.",
                   training_curves(metrics["epochs"])),
        "pixels": ("What the model sees", f"The first test {noun} as its 28×28 grid of pixel values (0–255).",
                   pixel_view(predictions.images[0], title=heading)),
        "predictions": ("Predictions", f"Five test {noun}s of each class, one column per true class, picked at "
                        "random (the same ones every time); green is right, red is wrong.",
                        prediction_grid(predictions, **REPORT_GRID)),
        "confusion": ("Confusion matrix", "Rows are the true classes, columns the predictions; each cell holds "
                      "a count. Right answers are blue and errors red, each on its own colour scale, so the "
                      "darkest red cells are the model's commonest confusions.", confusion_matrix(predictions)),
        "mistakes": ("Most confident mistakes", "The wrong predictions the model was surest of, with its top-3 "
                     "probabilities.", mistakes_gallery(predictions)),
        "calibration": ("Calibration", _calibration_caption(metrics.get("calibration")),
                        reliability_diagram(predictions, metrics.get("calibration", {}).get("temperature", 1.0))),
    }


def _calibration_caption(record: dict | None) -> str:
    """What the reliability diagram shows, and how the confidence was calibrated."""
    shown = ("Bars: how often the model is right among its test answers given at each confidence; on the "
             "diagonal, a confidence is the probability of being right. Below: how many answers each bin holds.")
    if record is None or record["method"] == "none":
        return f"{shown} This model is not calibrated{': ' + record['data'] if record and record.get('data') else ''}."
    return (f"{shown} Calibrated by temperature scaling (logits divided by {record['temperature']:.3g}), fitted on "
            f"{record.get('data') or 'held-out images'}.")


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metrics_table(epochs: list[dict]) -> str:
    def seconds(row: dict) -> str:
        return f"{row['seconds']:.1f}" if isinstance(row.get("seconds"), int | float) else ""

    rows = [[row["epoch"], f"{row['train_loss']:.4f}", f"{row['train_acc']:.2%}", f"{row['test_loss']:.4f}",
             f"{row['test_acc']:.2%}", seconds(row)] for row in epochs]
    return _table(["epoch", "train loss", "train accuracy", "test loss", "test accuracy", "seconds"], rows)


def _config_table(metrics: dict) -> str:
    rows = [[key, json.dumps(value)] for key, value in metrics.get("config", {}).items()]
    dataset = metrics.get("dataset", {})
    rows += [[f"dataset {key}", ", ".join(value) if isinstance(value, list) else value]
             for key, value in dataset.items() if key != "sha256"]
    rows += [[f"sha256 {name}", digest] for name, digest in dataset.get("sha256", {}).items()]
    rows += [[label, metrics[key]] for key, label in (("device", "ran on device"), ("torch_version", "torch version"),
                                                       ("mnistlab_version", "mnistlab version")) if key in metrics]
    return _table(["setting", "value"], rows)


STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; color: #1f2328; max-width: 1160px; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #d0d7de; }
.summary { color: #59636e; margin-top: 0; } nav a { margin-right: 1rem; }
table { border-collapse: collapse; font-size: 0.92rem; } td, th { padding: 0.25rem 0.8rem; text-align: left; }
thead th { border-bottom: 2px solid #d0d7de; } tbody tr:nth-child(even) { background: #f6f8fa; }
td { font-family: ui-monospace, monospace; word-break: break-all; }
figure { margin: 0; } img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
figcaption { color: #59636e; margin-top: 0.4rem; } footer { margin-top: 3rem; color: #59636e; font-size: 0.85rem; }
"""


def render_report(run_dir: Path, metrics: dict, figures: dict[str, tuple[str, str, Figure]]) -> str:
    """The report as one HTML string, figures embedded."""
    config, final = metrics.get("config", {}), metrics["epochs"][-1]
    model = f"{config.get('model', '?')} {json.dumps(config.get('model_args', {}))}"
    if "name" in metrics.get("dataset", {}):
        model += f" on {metrics['dataset']['name']}"
    epochs = final["epoch"]  # the last row's: fractional when evaluated every N steps, one row each
    summary = (f"{model} · test accuracy {final['test_acc']:.2%} after {epochs:g} epoch{'' if epochs == 1 else 's'}"
               + (f" · {metrics['wall_seconds']:.1f} s on {metrics.get('device', '?')}" if "wall_seconds" in metrics
                  else ""))
    nav = "".join(f'<a href="#{key}">{html.escape(heading)}</a>' for key, (heading, _, _) in figures.items())
    sections = "".join(
        f'<section id="{key}"><h2>{html.escape(heading)}</h2><figure>'
        f'<img src="{_png_data_uri(fig)}" alt="{html.escape(heading)}" '
        f'width="{round(fig.get_figwidth() * DPI)}" height="{round(fig.get_figheight() * DPI)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure></section>"
        for key, (heading, caption, fig) in figures.items())
    title = f"mnistlab run {one_line(run_dir.name)}"  # a folder's undecodable byte as \\xff: UTF-8 has no place for it
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><link rel="icon" href="data:,"><style>{STYLE}</style></head>
<body><header><h1>{html.escape(title)}</h1><p class="summary">{html.escape(summary)}</p>
<nav><a href="#metrics">Metrics</a><a href="#config">Configuration</a>{nav}</nav></header>
<section id="metrics"><h2>Metrics</h2>{_metrics_table(metrics["epochs"])}</section>
<section id="config"><h2>Configuration</h2>{_config_table(metrics)}</section>
{sections}
<footer>Written by mnistlab {html.escape(__version__)} on {datetime.now():%Y-%m-%d %H:%M} from
{html.escape(one_line(str(run_dir)))}. The figures are embedded: this file is the whole report.</footer>
</body></html>
"""


def write_report(run_dir: str | Path, predictions: SplitPredictions | None = None, *,
                 data_dir: str | Path | None = None, device: str = "cpu", batch_size: int = 1000,
                 out: str | Path | None = None, dataset: str | None = None) -> Path:
    """Write the run's report.html (or `out`) and return its path.

    Args:
        run_dir: the run folder (metrics.json and the checkpoint).
        predictions: the model's test-set predictions when the caller has them (as `mnistlab train`
            does); otherwise they are computed from the checkpoint on `device`, with the test split
            read from `data_dir` (default: the run's dataset, bundled or cached); `dataset`, when given,
            must be the run's.
    """
    metrics = load_metrics(locate(run_dir))  # `pretrained:NAME`: the package's folder, its files checked
    if predictions is None:
        predictions = predictions_for_run(run_dir, data_dir, device, batch_size, dataset)
    page = render_report(Path(run_dir), metrics, report_figures(metrics, predictions))
    path = Path(out) if out else outputs_folder(run_dir) / REPORT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
