"""Calibrated confidence: the temperature fit, the ECE, the record, and a run, a checkpoint and an export using them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistlab.calibration import (
    ECE_BINS,
    Calibration,
    expected_calibration_error,
    fit_temperature,
    held_out_count,
    inherited,
    reliability_table,
    rescale_probabilities,
    scaled_softmax,
)
from mnistlab.checkpoints import Checkpoint, load_checkpoint
from mnistlab.cli import main
from mnistlab.errors import CheckpointError, FieldError
from mnistlab.limits import TEMPERATURE_RANGE
from mnistlab.training import TrainConfig, train_run

from .conftest import make_dataset


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_a_known_temperature(true_temperature):
    generator = torch.Generator().manual_seed(0)
    calibrated = 3 * torch.randn(8000, 10, generator=generator, dtype=torch.float64)  # (N, 10)
    labels = torch.multinomial(calibrated.softmax(1), 1, generator=generator).flatten()  # drawn from the truth
    fitted = fit_temperature(calibrated * true_temperature, labels)  # a model whose logits are T times too large
    assert fitted == pytest.approx(true_temperature, rel=0.08)


def test_fit_temperature_stays_in_its_range_and_skips_non_finite_rows():
    logits = torch.tensor([[10.0, 0.0], [0.0, 10.0], [float("nan"), 0.0]])
    assert fit_temperature(logits, torch.tensor([0, 1, 0])) == pytest.approx(TEMPERATURE_RANGE[0], rel=1e-6)  # right
    assert fit_temperature(logits, torch.tensor([1, 0, 0])) == pytest.approx(TEMPERATURE_RANGE[1], rel=1e-6)  # wrong


def test_ece_of_a_hand_computed_case():
    probabilities = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.62, 0.18], [0.35, 0.33, 0.32]])
    labels = np.array([0, 1, 1, 0])
    # bins of 1/15: the two 0.9s (half right), 0.62 (right) and 0.35 (right) each in their own bin
    expected = 2 / 4 * abs(0.5 - 0.9) + 1 / 4 * abs(1 - 0.62) + 1 / 4 * abs(1 - 0.35)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(expected)
    table = reliability_table(probabilities, labels)
    assert len(table) == ECE_BINS and sum(b.count for b in table) == 4
    [full] = [b for b in table if b.count == 2]
    assert (full.low, full.high, full.confidence, full.accuracy) == pytest.approx((13 / 15, 14 / 15, 0.9, 0.5))
    assert math.isnan(table[0].accuracy) and table[0].count == 0


def test_temperature_keeps_the_answer_and_rescaling_probabilities_equals_scaling_logits():
    logits = torch.randn(500, 10, generator=torch.Generator().manual_seed(1)) * 4
    for temperature in (0.3, 1.0, 3.0):
        scaled = scaled_softmax(logits, temperature)
        assert torch.equal(scaled.argmax(1), logits.argmax(1))
        assert torch.allclose(rescale_probabilities(logits.softmax(1), temperature), scaled, atol=1e-6)


@pytest.mark.parametrize(("train_images", "asked", "held"), [
    (60_000, 5000, 5000), (8000, 5000, 800), (60_000, 0, 0), (1100, 5000, 110), (512, 5000, 0), (999, 5000, 0)])
def test_held_out_count_rule(train_images, asked, held):
    assert held_out_count(train_images, asked) == held


@pytest.mark.parametrize(("record", "problem"), [
    ({"method": "temperature", "temperature": 0},
     "field 'calibration.temperature' must be a finite number from 0.05 to 20, got 0"),
    ({"method": "temperature", "temperature": -1.5}, "field 'calibration.temperature' must be"),
    ({"method": "temperature", "temperature": 1e300}, "field 'calibration.temperature' must be"),
    ({"method": "temperature", "temperature": float("nan")}, "field 'calibration.temperature' must be"),
    ({"method": "temperature", "temperature": "1.2"}, "field 'calibration.temperature' must be"),
    ({"method": "temperature", "temperature": True}, "field 'calibration.temperature' must be"),
    ({"method": "magic", "temperature": 1.0}, "field 'calibration.method' must be"),
    ({"method": "temperature"}, "field 'calibration.temperature' is missing"),
    ({"method": "temperature", "temperature": 1.0, "images": -3}, "field 'calibration.images' must be"),
    ({"method": "temperature", "temperature": 1.0, "ece_after": 2}, "field 'calibration.ece_after' must be"),
    ({"method": "temperature", "temperature": 1.0, "data": "two\nlines" * 1000}, "field 'calibration.data' must be"),
    ([1.0], "field 'calibration' must be an object"),
])
def test_hostile_calibration_records_are_refused_in_one_line(record, problem):
    with pytest.raises(FieldError) as error:
        Calibration.check(record)
    assert str(error.value).startswith(problem) and "\n" not in str(error.value)


def test_a_good_record_reads_back_typed():
    record = Calibration("temperature", 1.3, data="held out", images=200, ece_before=0.1, ece_after=0.01)
    assert Calibration.check(json.loads(json.dumps(record.to_record()))) == record
    assert "nll_before" not in record.to_record()


def test_a_fine_tune_inherits_its_bases_temperature_and_says_so():
    base = Calibration("temperature", 0.42, data="the last 5,000 training images", images=5000, ece_after=0.002)
    record = inherited(base, "pretrained:cnn")
    assert (record.method, record.temperature, record.images, record.ece_after) == ("temperature", 0.42, 5000, None)
    assert record.data == "inherited from its base pretrained:cnn: the last 5,000 training images"
    unknown = inherited(None, "runs/x")
    assert unknown.temperature == 1.0 and "runs/x was not calibrated" in unknown.data


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory) -> tuple[Path, Path]:
    """A run on 1,100 synthetic images: the last 110 (a tenth) held out and calibrated on."""
    root = tmp_path_factory.mktemp("calibrated")
    data_dir = make_dataset(root / "data", n_train=1100)
    run = train_run(TrainConfig(epochs=1, device="cpu", data_dir=str(data_dir), out=str(root / "run"),
                                progress=False, model_args={"hidden": 16}, lr=3e-3))
    return run.dir, data_dir


def test_training_holds_out_the_last_images_and_records_the_calibration(calibrated_run):
    run, _ = calibrated_run
    config = json.loads((run / "config.json").read_text())
    record = config["calibration"]
    assert record["method"] == "temperature" and record["images"] == 110 and record["bins"] == ECE_BINS
    assert TEMPERATURE_RANGE[0] <= record["temperature"] <= TEMPERATURE_RANGE[1]
    assert record["data"].startswith("the last 110 of the 1,100 ") and record["nll_after"] <= record["nll_before"]
    assert config["dataset"]["train_size"] == 990
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["calibration"] == record and metrics["dataset"]["train_size"] == 990
    assert load_checkpoint(run).temperature == record["temperature"]


def test_probabilities_apply_the_temperature_and_keep_the_accuracy(calibrated_run):
    run, _ = calibrated_run
    checkpoint = load_checkpoint(run)
    pixels = np.random.default_rng(0).random((64, 28, 28), dtype=np.float32)
    with torch.inference_mode():
        from mnistlab.data import normalize

        logits = checkpoint.model(normalize(torch.from_numpy(pixels), checkpoint.mean, checkpoint.std))
    calibrated = checkpoint.probabilities(pixels)
    expected = (logits / checkpoint.temperature).softmax(1).numpy()
    assert checkpoint.temperature != 1.0
    np.testing.assert_allclose(calibrated, expected, atol=1e-6)
    assert (calibrated.argmax(1) == logits.argmax(1).numpy()).all()
    uncalibrated = Checkpoint(checkpoint.model, {**checkpoint.config, "calibration": None}, checkpoint.path)
    uncalibrated.config.pop("calibration")
    np.testing.assert_allclose(uncalibrated.probabilities(pixels), logits.softmax(1).numpy(), atol=1e-6)


@pytest.mark.parametrize(("size", "reason"), [(0, "not calibrated (calibration_size 0)"),
                                              (5000, "not calibrated: a tenth of the 512 ")])
def test_a_run_without_enough_images_or_asked_for_none_is_recorded_at_temperature_1(tiny_data, tmp_path, size,
                                                                                      reason):
    run = train_run(TrainConfig(epochs=1, device="cpu", data_dir=str(tiny_data), out=str(tmp_path / "run"),
                                progress=False, model_args={"hidden": 8}, calibration_size=size))
    config = json.loads((run.dir / "config.json").read_text())
    assert config["calibration"]["method"] == "none" and config["calibration"]["temperature"] == 1.0
    assert config["calibration"]["data"].startswith(reason) and config["dataset"]["train_size"] == 512
    assert load_checkpoint(run.dir).temperature == 1.0


def test_a_hostile_calibration_in_config_json_is_refused_when_loading(calibrated_run, tmp_path):
    import shutil

    run = Path(shutil.copytree(calibrated_run[0], tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    config["calibration"]["temperature"] = 0.0
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(run)
    assert "field 'calibration.temperature'" in str(error.value) or "calibration.temperature" in str(error.value)
    assert "\n" not in str(error.value)


def test_the_calibration_size_flag_takes_the_declared_bounds(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--calibration-size", "-1"])
    assert exited.value.code == 2
    assert "argument --calibration-size: must be from 0 to 10,000,000, got -1" in capsys.readouterr().err


def test_plot_calibration_writes_a_png_and_the_report_draws_it(calibrated_run, tmp_path, capsys):
    run, data_dir = calibrated_run
    out = tmp_path / "calibration.png"
    assert main(["plot", "calibration", str(run), "--data-dir", str(data_dir), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = tmp_path / "report.html"
    assert main(["report", str(run), "--data-dir", str(data_dir), "--out", str(report)]) == 0
    page = report.read_text()
    assert '<section id="calibration">' in page and "Calibrated by temperature scaling" in page


@pytest.mark.slow
def test_an_onnx_export_carries_the_temperature_and_answers_as_the_checkpoint(calibrated_run, tmp_path):
    from mnistlab.export import ExportConfig, export
    from mnistlab.onnx_model import load_onnx

    run, _ = calibrated_run
    checkpoint = load_checkpoint(run)
    model = load_onnx(export(run, ExportConfig(input="float", out=str(tmp_path / "model.onnx"))))
    assert model.config["calibration"] == checkpoint.config["calibration"]
    assert model.temperature == checkpoint.temperature
    pixels = np.random.default_rng(1).random((32, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(model.probabilities(pixels), checkpoint.probabilities(pixels), atol=1e-5)
