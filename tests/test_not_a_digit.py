""""Not a digit": the non-digit marks, the reject rule and its record, and how predict, serve and train use them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnistlab import CheckpointError
from mnistlab.checkpoints import load_checkpoint
from mnistlab.cli import main
from mnistlab.outliers import (
    FAMILIES,
    PAIR_SHIFT,
    STILL_A_DIGIT_HALF,
    STILL_A_DIGIT_QUARTER,
    SUBSUMED_IN_A_PAIR,
    TRAINING_FAMILIES,
    fit_to_box,
    make_outliers,
    overlapped_pairs,
    turned_digits,
    vary_style,
)
from mnistlab.prediction import predict
from mnistlab.rejection import (
    DEFAULT_RULE,
    NOT_A_DIGIT,
    REFUSED_SHARE,
    SCORE_TEMPERATURE,
    RejectRule,
    fit_rule,
    rule_of,
    score,
    score_temperature_of,
)

from .conftest import make_dataset

REFUSE_ALL = {"score": "max_probability", "thresholds": {"normal": 1.0, "strict": 1.0}}  # nothing scores above 1


def digits_and_labels(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic MNIST-format digits: class k a bar at rows 6 + k, in the 20-px box."""
    labels = torch.from_numpy(np.random.default_rng(seed).integers(0, 10, n))
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for i, k in enumerate(labels.tolist()):
        images[i, 6 + k: 9 + k, 4:24] = 255
        images[i, 4:24, 12:15] = 200
    return images, labels


# --- the marks -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_makes_framed_uint8_marks(family):
    images, labels = digits_and_labels()
    marks = make_outliers(images, labels, 12, seed=3, families=(family,))
    assert marks.shape == (12, 28, 28) and marks.dtype == torch.uint8
    assert (marks.flatten(1).amax(1) > 100).all()  # every mark has ink
    # MNIST's framing: the ink's longer side 20 px (a pixel more for bilinear edges).
    ink = marks > 60
    extent = [int(hit.nonzero().max() - hit.nonzero().min()) + 1 for mark in ink for hit in (mark.any(1), mark.any(0))]
    assert max(extent) <= 22 and max(extent[0::2] + extent[1::2]) >= 17


def test_marks_are_seeded_and_pure():
    images, labels = digits_and_labels()
    before = images.clone()
    first = make_outliers(images, labels, 40, seed=7)
    assert torch.equal(first, make_outliers(images, labels, 40, seed=7))
    assert not torch.equal(first, make_outliers(images, labels, 40, seed=8))
    assert torch.equal(images, before)


def test_an_unknown_family_is_refused():
    images, labels = digits_and_labels()
    with pytest.raises(ValueError, match="families: unknown letters; choose from overlapped_pairs"):
        make_outliers(images, labels, 4, seed=1, families=("letters",))


def test_turned_digits_leave_out_those_that_stay_digits():
    # Each digit's pixels carry its label, so that the label of every turned mark can be read back.
    labels = torch.arange(10).repeat(20)
    images = (labels[:, None, None] + 1).expand(-1, 28, 28).to(torch.float32)
    turned = turned_digits(images, labels, 500, torch.Generator().manual_seed(0))
    read = turned[:, 0, 0].round().long() - 1
    assert not torch.isin(read, torch.tensor(STILL_A_DIGIT_QUARTER)).any()  # a 0 is never used (turned or not)
    halves_allowed = set(range(10)) - set(STILL_A_DIGIT_HALF)
    assert set(read.tolist()) <= set(range(10)) - set(STILL_A_DIGIT_QUARTER)
    assert halves_allowed <= set(read.tolist())


def test_overlapped_pairs_are_two_digits_of_other_classes_both_in_sight():
    # Each digit is one dot whose brightness carries its label; a pair shows two dots PAIR_SHIFT apart.
    labels = torch.arange(10).repeat(20)
    images = torch.zeros(200, 28, 28)
    images[:, 12, 12] = (labels + 1) / 10
    pairs = overlapped_pairs(images, labels, 500, torch.Generator().manual_seed(0))
    for pair in pairs:
        rows, cols = pair.nonzero(as_tuple=True)
        assert len(cols) == 2  # never a dot over a dot
        assert PAIR_SHIFT[0] <= abs(int(cols[0] - cols[1])) <= PAIR_SHIFT[1]
        read = {round(float(v) * 10) - 1 for v in pair[rows, cols]}
        assert len(read) == 2 and not read & set(SUBSUMED_IN_A_PAIR)


def test_fit_to_box_frames_as_mnist():
    ink = torch.zeros(1, 28, 28)
    ink[0, 0:5, 0:10] = 1  # a small block in a corner
    framed = fit_to_box(ink)[0]
    cols = (framed > 0.5).any(0).nonzero()
    assert 18 <= int(cols.max() - cols.min()) + 1 <= 21  # the long side scaled to 20 px
    centre = (framed.sum(1) * torch.arange(28)).sum() / framed.sum()
    assert abs(float(centre) - 13.5) < 1  # centred by mass


def test_vary_style_gives_a_share_of_the_images_another_look_and_keeps_their_ink_at_full_level():
    bars = torch.zeros(400, 28, 28, dtype=torch.uint8)
    bars[:, 10:12, 5:20] = 255
    varied = vary_style(bars, torch.Generator().manual_seed(0), share=0.5)
    unchanged = (varied == bars).all(2).all(1)
    assert 0.4 < unchanged.float().mean() < 0.6
    thick = (varied == 255).sum((1, 2)) == 4 * 17  # a pixel wider on every side, still crisp
    soft = ~unchanged & ~thick  # blurred or coarse: spread wider than drawn, softer at the edges
    assert 0.1 < thick.float().mean() < 0.25 and 0.2 < soft.float().mean() < 0.45
    assert ((varied[soft] > 0).sum((1, 2)) > 30).all() and ((varied[soft] % 255) > 0).any(2).any(1).all()
    assert (varied.amax((1, 2)) == 255).all()  # the brightest ink at full level, as `predict` leaves a picture
    again = vary_style(bars, torch.Generator().manual_seed(0), share=0.5)
    assert torch.equal(varied, again)  # a pure function of its inputs and generator


def test_training_families_leave_the_symbols_out():
    assert "symbols" in FAMILIES and "symbols" not in TRAINING_FAMILIES


# --- the rule and its record -------------------------------------------------------------------------------------


def test_the_rule_refuses_what_scores_under_its_threshold():
    rule = RejectRule({"normal": 0.6, "strict": 0.9})
    probabilities = np.array([[0.95] + [0.05 / 9] * 9, [0.7] + [0.3 / 9] * 9, [0.1] * 10])
    assert rule.refuses(probabilities, "off").tolist() == [False, False, False]
    assert rule.refuses(probabilities, "normal").tolist() == [False, False, True]
    assert rule.refuses(probabilities, "strict").tolist() == [False, True, True]
    assert RejectRule({"normal": 0.8, "strict": 0.3}).threshold("strict").value == 0.8  # never laxer than normal
    with pytest.raises(ValueError, match="reject: expected one of off, normal, strict, got 'loose'"):
        rule.threshold("loose")


def test_the_rule_is_fit_to_refuse_its_share_of_held_out_digits():
    rng = np.random.default_rng(0)
    best = rng.uniform(0.5, 1.0, 10_000)
    probabilities = np.column_stack([best, *np.repeat((1 - best)[None] / 9, 9, 0)])
    for score_temperature in (None, SCORE_TEMPERATURE):
        rule = fit_rule(probabilities, score_temperature=score_temperature)
        for level, share in REFUSED_SHARE.items():
            assert rule.refuses(probabilities, level).mean() == pytest.approx(share, abs=0.001)
        assert rule.record() == {"score": "max_probability", "thresholds": dict(rule.thresholds),
                                 "held_out_digits": 10_000, **({"temperature": 2.0} if score_temperature else {})}
        assert rule_of({"reject": rule.record()}) == rule
    assert rule_of({}) == DEFAULT_RULE
    with pytest.raises(ValueError, match="empty or not finite"):
        fit_rule(np.full((3, 10), np.nan))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_the_score_is_the_best_probability_of_the_logits_at_the_scores_temperature():
    """A model calibrated at temperature T answers softmax(logits / T); its rule scores softmax(logits /
    SCORE_TEMPERATURE), from those answers alone."""
    logits = np.random.default_rng(1).normal(0, 6, (50, 10))
    calibrated = softmax(logits / 0.4).astype(np.float32)
    rule = fit_rule(calibrated, model_temperature=0.4, score_temperature=SCORE_TEMPERATURE)
    expected = softmax(logits / SCORE_TEMPERATURE).max(1)
    assert rule.scores(calibrated) == pytest.approx(expected, rel=1e-5)
    assert rule_of({"reject": rule.record(), "calibration": {"temperature": 0.4}}) == rule
    assert score(np.array([[0.2, 0.8], [0.6, 0.4]])).tolist() == [0.8, 0.6]  # at the answers' own temperature
    assert score(np.array([[np.nan, 0.5]]), 0.5).tolist() == [1.0]  # not finite: an error of its own, not refused


def test_a_record_without_the_scores_temperature_scores_the_calibrated_answers():
    """A model trained without outlier exposure (and a run from before the score had its own temperature) is
    scored by its calibrated answers."""
    record = {"score": "max_probability", "thresholds": {"normal": 0.6, "strict": 0.9}}
    rule = rule_of({"reject": record, "calibration": {"temperature": 0.4}})
    assert rule.temperature is None and rule.scores(np.array([[0.7, 0.3]])).tolist() == pytest.approx([0.7])


@pytest.fixture
def run_with(tiny_run, tmp_path):
    """A copy of the tiny run whose config.json gets the "reject" record given."""
    def make(record) -> Path:
        run = tmp_path / "run"
        shutil.copytree(tiny_run[0], run)
        config = json.loads((run / "config.json").read_text())
        config["reject"] = record
        (run / "config.json").write_text(json.dumps(config))
        return run
    return make


@pytest.mark.parametrize("record, message", [
    ({"score": "max_probability", "thresholds": {"normal": 1.5, "strict": 0.9}}, "reject.thresholds.normal"),
    ({"score": "max_probability", "thresholds": {"normal": -0.1, "strict": 0.9}}, "reject.thresholds.normal"),
    ({"score": "max_probability", "thresholds": {"normal": "0.5", "strict": 0.9}}, "reject.thresholds.normal"),
    ({"score": "max_probability", "thresholds": {"normal": 0.5}}, "reject.thresholds.strict"),
    ({"score": "energy", "thresholds": {"normal": 0.5, "strict": 0.9}}, "reject.score"),
    ({"score": "max_probability", "thresholds": {"normal": 0.5, "strict": 0.9}, "held_out_digits": -3},
     "reject.held_out_digits"),
    *[({"score": "max_probability", "temperature": bad, "thresholds": {"normal": 0.5, "strict": 0.9}},
       "reject.temperature") for bad in (0, -2.0, 1e6, "2", True, None)],
    ("strict", "reject"),
])
def test_a_hostile_record_is_refused_in_one_line(run_with, record, message, capsys, digit_png):
    run = run_with(record)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(run)
    assert "\n" not in str(info.value)
    assert main(["predict", str(run), str(digit_png), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture
def digit_png(tmp_path) -> Path:
    path = tmp_path / "seven.png"
    image = np.zeros((28, 28), np.uint8)
    image[6:9, 6:22], image[8:22, 17:20] = 255, 255
    Image.fromarray(image).save(path)
    return path


# --- predict, evaluate, serve ------------------------------------------------------------------------------------


def test_predict_answers_a_refused_mark_as_not_a_digit(run_with, digit_png, capsys):
    run = run_with(REFUSE_ALL)
    [refused] = predict(load_checkpoint(run), [str(digit_png)])
    assert refused.label is None and refused.reason == NOT_A_DIGIT and refused.not_a_digit and not refused.ok
    assert refused.confidence == max(refused.probabilities)
    assert main(["predict", str(run), str(digit_png), "--json", "--device", "cpu"]) == 1
    out, err = capsys.readouterr()
    [row] = json.loads(out)
    assert row["label"] is None and row["class"] is None
    assert row["reason"] == row["error"] == "not a digit"
    assert row["confidence"] == pytest.approx(max(row["probabilities"]), abs=1e-6)
    assert "1 of 1 files hold no digit: not a digit (--reject normal)" in err
    assert main(["predict", str(run), str(digit_png), "--device", "cpu"]) == 1
    assert "not a digit" in capsys.readouterr().out


def test_a_run_without_the_record_refuses_nothing(tiny_run, digit_png):
    model = load_checkpoint(tiny_run[0])
    assert "reject" not in model.config
    assert predict(model, [str(digit_png)])[0].ok


def test_reject_off_restores_the_answer(run_with, digit_png, capsys):
    run = run_with(REFUSE_ALL)
    assert main(["predict", str(run), str(digit_png), "--json", "--reject", "off", "--device", "cpu"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert isinstance(row["label"], int) and "error" not in row and "reason" not in row
    with pytest.raises(ValueError, match="reject: expected one of off, normal, strict"):
        predict(load_checkpoint(run), [str(digit_png)], reject="sometimes")


def test_api_predict_answers_not_a_digit(run_with, digit_png):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mnistlab.serve import create_app

    run = run_with(REFUSE_ALL)
    for reject, refused in (("normal", True), ("off", False)):
        client = TestClient(create_app(run, reject=reject), base_url="http://localhost")
        response = client.post("/api/predict", content=digit_png.read_bytes(), headers={"content-type": "image/png"})
        assert response.status_code == 200
        answer = response.json()
        assert (answer["label"] is None) == refused and (answer["class"] is None) == refused
        assert answer["reason"] == (NOT_A_DIGIT if refused else None) and "error" not in answer
        assert 0 < answer["confidence"] <= 1 and len(answer["probabilities"]) == 10
    schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictResponse"]
    assert "reason" in schema["properties"]


def test_train_with_outlier_exposure_writes_the_record(tmp_path):
    from mnistlab.training import TrainConfig, train_run

    data = make_dataset(tmp_path / "data", n_train=1_100, n_test=64)  # the last 110 (a tenth) held out
    run = train_run(TrainConfig(epochs=1, device="cpu", data_dir=str(data), out=str(tmp_path / "run"),
                                progress=False, model_args={"hidden": 16}, train_limit=200, outlier_exposure=0.5))
    record = json.loads((run.dir / "config.json").read_text())["reject"]
    assert record["held_out_digits"] == 110 and record["score"] == "max_probability"  # the calibration's images
    assert record["temperature"] == SCORE_TEMPERATURE  # a model trained on outliers is scored at it
    assert 0 < record["thresholds"]["normal"] <= record["thresholds"]["strict"] <= 1
    assert load_checkpoint(run.dir).config["reject"] == record
    assert score_temperature_of(load_checkpoint(run.dir).config) == SCORE_TEMPERATURE  # as the script refits it
    assert score_temperature_of({}) is None  # an export's metadata without a training record
    assert run.config.outlier_exposure == 0.5
