"""report.html (content, and a real look in headless Chromium) and reading a run's metrics.json."""

import base64
import io
import json
import os
import re
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnistlab import CheckpointError, MetricsError
from mnistlab.cli import main
from mnistlab.records import load_metrics
from mnistlab.report import write_report

from .conftest import make_dataset

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; .ci/run installs it
FIGURES = ("curves", "pixels", "predictions", "confusion", "mistakes", "calibration")
IMG = re.compile(r'<section id="(\w+)"><h2>[^<]*</h2><figure><img src="data:image/png;base64,([^"]+)" '
                 r'alt="[^"]*" width="(\d+)" height="(\d+)">')


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, str]:
    """`mnistlab train` on synthetic data: (run folder, data folder, what it printed)."""
    root = tmp_path_factory.mktemp("trained")
    data_dir = make_dataset(root / "data")
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main(["train", "--epochs", "2", "--hidden", "16", "--data-dir", str(data_dir), "--device", "cpu",
                     "--no-progress", "--out", str(root / "run")]) == 0
    return root / "run", data_dir, printed.getvalue()


@pytest.fixture(scope="module")
def report(trained) -> Path:
    return trained[0] / "report.html"


def embedded_images(report: Path) -> dict[str, tuple[str, int, int]]:
    """{figure id: (base64 PNG, width, height)} of a report."""
    return {name: (data, int(w), int(h)) for name, data, w, h in IMG.findall(report.read_text(encoding="utf-8"))}


@pytest.mark.slow
def test_train_writes_curves_and_the_report(trained):
    run, _, printed = trained
    assert printed.splitlines()[1:] == [f"wrote {run / 'curves.png'}", f"wrote {run / 'report.html'}"]
    with Image.open(run / "curves.png") as curves:
        assert curves.size == (1100, 460)


@pytest.mark.slow
def test_train_and_plot_curves_draw_the_same_curves(trained, tmp_path, capsys):
    run = trained[0]
    assert main(["plot", "curves", str(run), "--out", str(tmp_path / "again.png")]) == 0
    with Image.open(run / "curves.png") as first, Image.open(tmp_path / "again.png") as again:
        assert np.array_equal(np.asarray(first), np.asarray(again))  # the same title too


def test_report_embeds_every_figure_and_the_tables(report, trained):
    page = report.read_text(encoding="utf-8")
    images = embedded_images(report)
    assert tuple(images) == FIGURES
    for name, (data, width, height) in images.items():
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert image.format == "PNG" and image.size == (width, height), name
            assert np.asarray(image.convert("L")).var() > 0, name
        assert f'<a href="#{name}">' in page
    metrics = load_metrics(trained[0])
    rows = re.search(r'<section id="metrics">.*?<tbody>(.*?)</tbody>', page).group(1)
    assert rows.count("<tr>") == len(metrics["epochs"]) == 2
    assert f"{metrics['epochs'][-1]['test_acc']:.2%}" in rows
    assert "<td>model_args</td><td>{&quot;hidden&quot;: 16}</td>" in page
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)  # self-contained: nothing to fetch


@pytest.mark.parametrize(("epochs", "extra", "said"), [
    ("1", [], "after 1 epoch ·"),
    ("2", ["--eval-every", "2"], "after 2 epochs ·"),  # a row every 2 steps: several rows, still 2 epochs
], ids=["one-epoch", "eval-every"])
@pytest.mark.slow
def test_the_report_summary_counts_epochs_not_rows(trained, tmp_path, epochs, extra, said):
    run = tmp_path / "run"
    assert main(["train", "--epochs", epochs, *extra, "--hidden", "16", "--data-dir", str(trained[1]),
                 "--device", "cpu", "--no-progress", "--out", str(run)]) == 0
    assert len(load_metrics(run)["epochs"]) > int(epochs) or not extra
    assert said in (run / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_report_grid_has_a_column_per_digit_and_confusion_its_own_colours(trained):
    from mnistlab.plots import CellText
    from mnistlab.report import predictions_for_run, report_figures

    run, data_dir, _ = trained
    figures = report_figures(load_metrics(run), predictions_for_run(run, data_dir))
    grid = figures["predictions"][2]
    headers = [text for cells in grid.findobj(CellText) for text in cells.texts if text.isdigit()]
    assert headers == [str(d) for d in range(10)]
    assert "test digits of each class" in grid._suptitle.get_text()
    confusion = figures["confusion"][2]
    assert [bar.get_ylabel() for bar in confusion.axes[1:]] == ["errors (off the diagonal)",
                                                                "right answers (the diagonal)"]
    assert figures["curves"][2]._suptitle.get_text() == "Training curves"


def sync_playwright_or_skip():
    """Playwright driving Debian's Chromium. CI must run the browser test; elsewhere it may skip."""
    in_ci = os.environ.get("CI") == "true"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            raise
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        if in_ci:
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs it with apt-get")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return sync_playwright


@pytest.mark.slow
def test_report_opens_in_headless_chromium_without_console_errors(report, tmp_path):
    sync_playwright = sync_playwright_or_skip()
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
            page.goto(report.as_uri(), wait_until="load")
            loaded = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth, i.width > 0])")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert len(loaded) == len(FIGURES) and all(done and width > 0 and shown for done, width, shown in loaded)
    with Image.open(tmp_path / "report.png") as shot:
        assert shot.width == 1280 and shot.height > 3000  # the whole page, every figure in it
        assert np.asarray(shot.convert("L")).var() > 0


@pytest.mark.slow
def test_train_no_report_still_writes_the_curves(tiny_data, tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--hidden", "8", "--data-dir", str(tiny_data), "--device", "cpu",
                 "--no-progress", "--out", str(tmp_path / "run"), "--no-report"]) == 0
    assert "report.html" not in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "curves.png", "metrics.json",
                                                                     "model.safetensors"]


@pytest.mark.slow
def test_report_command_rebuilds_the_same_figures_from_the_checkpoint(trained, tmp_path, capsys):
    run, data_dir, _ = trained
    out = tmp_path / "again.html"
    assert main(["report", str(run), "--data-dir", str(data_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert embedded_images(out) == embedded_images(run / "report.html")  # pixel for pixel


def test_report_of_a_missing_run_or_checkpoint(tiny_run, tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err.strip() == f"mnistlab: error: {tmp_path / 'nothing'}: no such run folder"
    run = shutil.copytree(tiny_run[0], tmp_path / "run")
    (run / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        write_report(run, data_dir=tiny_run[1])
    assert not (run / "report.html").exists()


def broken_run(tmp_path, tiny_run, change) -> Path:
    run = shutil.copytree(tiny_run[0], tmp_path / "run", dirs_exist_ok=True)
    change(run / "metrics.json")
    return run


def edit(change):
    def apply(path):
        metrics = json.loads(path.read_text())
        change(metrics)
        path.write_text(json.dumps(metrics))
    return apply


@pytest.mark.parametrize("change, message", [
    (lambda p: p.unlink(), "{run}: missing metrics.json (not a run folder?)"),
    (lambda p: p.write_text("{not json"), "{run}/metrics.json: not valid JSON (Expecting property name"),
    (lambda p: p.write_bytes(b"\xff\xfe"), "{run}/metrics.json: not valid JSON"),
    (lambda p: p.write_text("[]"), "{run}/metrics.json: must be an object, got []"),
    (edit(lambda m: m.update(epochs=[])), "{run}/metrics.json: field 'epochs' must be a non-empty list"),
    (edit(lambda m: m["epochs"][1].pop("test_acc")),
     "{run}/metrics.json: field 'epochs[1].test_acc' is missing (it must be a finite number from 0 to 1)"),
    (edit(lambda m: m["epochs"][0].update(train_loss="0.3")),
     "{run}/metrics.json: field 'epochs[0].train_loss' must be a finite number ≥ 0, or null, got '0.3'"),
    (edit(lambda m: m["epochs"].append(7)), "{run}/metrics.json: field 'epochs[2]' must be an object, got 7"),
])
@pytest.mark.slow
def test_missing_or_malformed_metrics_is_a_clear_error(change, message, tmp_path, tiny_run, capsys):
    run = broken_run(tmp_path, tiny_run, change)
    expected = message.format(run=run)
    with pytest.raises(MetricsError) as info:
        load_metrics(run)
    assert str(info.value).startswith(expected)
    for argv in (["plot", "curves", str(run)], ["report", str(run), "--data-dir", str(tiny_run[1])]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"mnistlab: error: {expected}") and err.count("\n") == 1


# --- whatever a run writes, the readers read back ------------------------------------------------------------------

@pytest.mark.slow
def test_the_largest_metrics_a_run_may_write_is_read_back(tiny_run, tmp_path, capsys):
    """MAX_EPOCHS epochs evaluated every step, as many steps as MAX_EVALUATIONS allows: the real writer's file,
    with full-precision numbers (synthetic rows, not a real training), passes load_metrics, plot curves and report."""
    import dataclasses

    import mnistlab
    from mnistlab import records, training
    from mnistlab._outputs import StagedFolder
    from mnistlab.limits import MAX_EPOCHS, MAX_EVALUATIONS
    from mnistlab.records import MAX_JSON_BYTES

    source, data_dir = tiny_run
    checkpoint = mnistlab.load_checkpoint(source)
    data = mnistlab.load_mnist(data_dir)
    steps_per_epoch = MAX_EVALUATIONS // MAX_EPOCHS
    config = training.TrainConfig(model_args={"hidden": 16}, epochs=MAX_EPOCHS, eval_every=1, data_dir=str(data_dir),
                                  train_limit=steps_per_epoch * 64, out=str(tmp_path / "long"), progress=False)
    config = dataclasses.replace(config, model_args=training.full_model_args(config), mean=checkpoint.mean,
                                 std=checkpoint.std)
    training.check_evaluations(steps_per_epoch * MAX_EPOCHS, config.eval_every)  # the writer allows this run
    with pytest.raises(training.TrainingError, match=f"over the limit of {MAX_EVALUATIONS:,}"):
        training.check_evaluations(steps_per_epoch * MAX_EPOCHS + 1, config.eval_every)  # and not one step more
    values = np.random.default_rng(0).random((MAX_EVALUATIONS, 6)).tolist()  # 17 significant digits each
    history = [training.EpochMetrics(epoch=round(step / steps_per_epoch, 4), train_loss=2.3 * v[0], train_acc=v[1],
                                     test_loss=2.3 * v[2], test_acc=v[3], seconds=v[4] / 1e4, step=step,
                                     train_seconds=v[5] / 1e4 * step, eval_seconds=v[4] / 3e4)
               for step, v in enumerate(values, start=1)]
    run = training.Run(Path(config.out), config, checkpoint.model, history, "cpu", 1234.5678901234567)
    with StagedFolder(run.dir) as staging:
        training._write_run(staging, run, data.record(train_size=steps_per_epoch * 64), None)
        staging.publish()
    size = (run.dir / "metrics.json").stat().st_size
    assert MAX_JSON_BYTES < size <= records.MAX_METRICS_BYTES  # over the cap of other records; under its own

    metrics = load_metrics(run.dir)
    assert len(metrics["epochs"]) == MAX_EVALUATIONS and metrics["epochs"][-1]["epoch"] == MAX_EPOCHS
    assert metrics["epochs"][-1]["test_acc"] == history[-1].test_acc
    assert main(["plot", "curves", str(run.dir), "--out", str(tmp_path / "curves.png")]) == 0
    assert main(["report", str(run.dir), "--data-dir", str(data_dir), "--out", str(tmp_path / "report.html")]) == 0
    assert capsys.readouterr().err == ""
    assert f"after {MAX_EPOCHS} epochs" in (tmp_path / "report.html").read_text()


def test_a_metrics_file_past_the_largest_a_run_writes_is_refused_from_its_size(tiny_run, tmp_path):
    from mnistlab.records import MAX_METRICS_BYTES

    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    with open(run / "metrics.json", "r+b") as file:
        file.truncate(MAX_METRICS_BYTES + 1)  # sparse: nothing is written, and nothing should be read
    with pytest.raises(MetricsError, match=f"too large \\({MAX_METRICS_BYTES + 1:,} bytes; at most "
                                           f"{MAX_METRICS_BYTES:,}\\)"):
        load_metrics(run)
