"""Training the stronger models: CNNs, recipes, on-device augmentation, time to accuracy, the GPU path's CPU side."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import mnistlab.training as training
from mnistlab.augment import AffineRange, affine_grid, augment, elastic_field
from mnistlab.cli import build_parser, main
from mnistlab.cli.train import train_config
from mnistlab.dataset_info import list_datasets
from mnistlab.models import create_model, list_models
from mnistlab.recipes import CLASSIC, DEFAULT_RECIPES, RECIPES, Recipe, default_recipe, get_recipe, recipe_settings
from mnistlab.training import TrainConfig, check_config, train_run

MAX_PARAMS = 400_000  # "at most a few hundred thousand parameters"


def quick(tmp_path, data_dir, **overrides) -> TrainConfig:
    settings = dict(epochs=1, batch_size=32, device="cpu", data_dir=str(data_dir), out=str(tmp_path / "run"),
                    progress=False)
    return TrainConfig(**{**settings, **overrides})


# --- models -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list_models())
def test_every_model_gives_finite_logits_in_train_and_eval_mode_and_stays_small(name):
    torch.manual_seed(0)
    model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) <= MAX_PARAMS
    logits = model(torch.randn(5, 1, 28, 28))
    assert logits.shape == (5, 10) and torch.isfinite(logits).all()
    model.eval()
    one = model(torch.randn(1, 1, 28, 28))  # batch norm in eval mode takes a single image
    assert one.shape == (1, 10) and torch.isfinite(one).all()


@pytest.mark.parametrize("name, low, high", [("cnn", 100_000, 300_000), ("cnn_small", 30_000, 80_000)])
def test_cnn_sizes(name, low, high):
    assert low <= sum(p.numel() for p in create_model(name).parameters()) <= high


@pytest.mark.parametrize("name", ["cnn", "cnn_small"])
def test_channels_last_gives_the_same_logits(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(4, 1, 28, 28)
    expected = model(x)
    assert torch.allclose(model.to(memory_format=torch.channels_last)(x), expected, atol=1e-4)


@pytest.mark.parametrize("name, args, message", [
    ("cnn", {"width": 0}, "width must be from 1 to 256"),
    ("cnn", {"width": 10**6}, "width must be from 1 to 256"),
    ("cnn", {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ("cnn", {"dropout": -0.1}, "dropout"),
    ("cnn_small", {"width": 0}, "width must be from 1 to 256"),
    ("cnn_small", {"dropout": 0.1}, "argument 'dropout' is unknown"),
])
def test_bad_model_arguments_are_clear_errors(name, args, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, **args)


# --- recipes ------------------------------------------------------------------------------------------------------

def test_classic_is_the_seed_recipe_and_the_train_config_defaults():
    assert (CLASSIC.optimizer, CLASSIC.lr, CLASSIC.schedule, CLASSIC.epochs, CLASSIC.batch_size) == \
        ("adam", 1e-3, "constant", 5, 64)
    assert (CLASSIC.weight_decay, CLASSIC.label_smoothing, CLASSIC.augment, CLASSIC.elastic) == (0, 0, 0, 0)
    defaults = TrainConfig()
    assert {f.name: getattr(defaults, f.name) for f in dataclasses.fields(Recipe)} == dataclasses.asdict(CLASSIC)
    assert defaults.recipe == "classic"


@pytest.mark.parametrize("model, recipe", [("mlp", "classic"), ("cnn", "best"), ("cnn_small", "fast")])
def test_each_model_has_a_default_recipe(model, recipe):
    assert default_recipe(model) == recipe
    assert recipe_settings(model) == {"recipe": recipe, **dataclasses.asdict(get_recipe(recipe, model))}


def test_every_recipe_resolves_for_every_model_to_a_valid_config():
    for name in RECIPES:
        for model in list_models():
            for dataset in list_datasets():
                TrainConfig(model=model, **recipe_settings(model, name, dataset=dataset), dataset=dataset).validate()
    assert set(DEFAULT_RECIPES) <= set(list_models())
    assert get_recipe("best", "mlp") != get_recipe("best", "cnn")  # tuned per model
    assert get_recipe("best", "some_plugin_model") == get_recipe("best", "cnn")


def test_the_best_recipe_warps_clothes_half_as_much_and_leaves_the_rest_as_for_digits():
    digits, clothes = get_recipe("best", "cnn"), get_recipe("best", "cnn", "fashion-mnist")
    assert clothes.augment == digits.augment / 2
    assert dataclasses.replace(clothes, augment=digits.augment) == digits
    assert get_recipe("best", "cnn", "kmnist") == digits  # no entry of its own: the digits' settings
    assert get_recipe("best", "mlp", "fashion-mnist") == get_recipe("best", "mlp")  # the model's own entry first
    assert get_recipe("classic", "cnn", "fashion-mnist") == CLASSIC


def test_overrides_win_and_none_means_not_given():
    settings = recipe_settings("cnn", "best", epochs=2, lr=None, augment=0.0)
    assert settings["epochs"] == 2 and settings["augment"] == 0.0
    assert settings["lr"] == get_recipe("best", "cnn").lr and settings["recipe"] == "best"


@pytest.mark.parametrize("call, message", [
    (lambda: get_recipe("turbo", "cnn"), "recipe: unknown recipe 'turbo'; choose from: classic, best, fast"),
    (lambda: recipe_settings("cnn", "best", momentum=0.9), "recipe: no setting named momentum"),
])
def test_unknown_recipes_and_settings_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def parse(*argv: str):
    return train_config(build_parser().parse_args(["train", *argv]))


@pytest.mark.parametrize("argv, expected", [
    ([], {"model": "mlp", "recipe": "classic", "epochs": 5, "batch_size": 64, "lr": 1e-3, "optimizer": "adam"}),
    (["--model", "cnn"], {"recipe": "best", "optimizer": "adamw", "schedule": "onecycle", "augment": 1.0}),
    (["--model", "cnn_small"], {"recipe": "fast", "epochs": 1, "batch_size": 128}),
    (["--model", "cnn", "--recipe", "classic"], {"recipe": "classic", "optimizer": "adam", "augment": 0.0}),
    (["--recipe", "best"], {"model": "mlp", "recipe": "best", "epochs": get_recipe("best", "mlp").epochs}),
    (["--model", "cnn", "--epochs", "2", "--lr", "0.01", "--augment", "0", "--elastic", "1.5"],
     {"recipe": "best", "epochs": 2, "lr": 0.01, "augment": 0.0, "elastic": 1.5, "optimizer": "adamw"}),
    (["--optimizer", "sgd", "--schedule", "cosine", "--weight-decay", "5e-4", "--label-smoothing", "0.1"],
     {"recipe": "classic", "optimizer": "sgd", "schedule": "cosine", "weight_decay": 5e-4, "label_smoothing": 0.1}),
    (["--eval-every", "50", "--stop-at", "0.99", "--compile"], {"eval_every": 50, "stop_at": 0.99, "compile": True}),
    (["--stop-at", "98.5%"], {"stop_at": 0.985}),
    (["--model", "cnn", "--width", "8"], {"model_args": {"width": 8}}),
    (["--model", "cnn", "--dataset", "fashion-mnist"], {"recipe": "best", "augment": 0.5, "epochs": 12}),
    (["--model", "cnn", "--dataset", "fashion-mnist", "--augment", "1"], {"recipe": "best", "augment": 1.0}),
])
def test_cli_flags_override_the_recipe(argv, expected):
    config = parse(*argv)
    config.validate()
    assert {key: getattr(config, key) for key in expected} == expected


@pytest.mark.parametrize("argv, message", [
    (["--recipe", "turbo"], "argument --recipe: invalid choice: 'turbo'"),
    (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice"),
    (["--schedule", "step"], "argument --schedule: invalid choice"),
    (["--weight-decay", "-1"], "argument --weight-decay: must be a number ≥ 0 and < 10, got -1"),
    (["--weight-decay", "inf"], "argument --weight-decay: must be finite"),
    (["--label-smoothing", "1"], "argument --label-smoothing: must be a number ≥ 0 and < 1, got 1"),
    (["--augment", "nan"], "argument --augment: must be finite"),
    (["--augment", "10"], "argument --augment: must be a number ≥ 0 and < 10"),
    (["--elastic", "-0.5"], "argument --elastic: must be a number ≥ 0"),
    (["--eval-every", "0"], "argument --eval-every: must be from 1 to 1,000,000,000, got 0"),
    (["--eval-every", "1.5"], "argument --eval-every: expected a whole number"),
    (["--stop-at", "0"], "argument --stop-at: expected an accuracy in (0, 1]"),
    (["--stop-at", "99"], "argument --stop-at: expected an accuracy in (0, 1]"),
    (["--stop-at", "101%"], "argument --stop-at: expected an accuracy"),
    (["--stop-at", "most"], "argument --stop-at: expected a number"),
    (["--stop-at", "%"], "argument --stop-at: expected a number"),
    (["--width", "0"], "argument --width: must be from 1 to 256, got 0"),
    (["--width", "8"], "argument --width: mlp takes no --width (only cnn and cnn_small)"),
    (["--model", "cnn", "--hidden", "8"], "argument --hidden: cnn takes no --hidden (only mlp)"),
])
def test_bad_recipe_flags_exit_2_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("field, value, message", [
    ("recipe", "turbo", "recipe: expected one of classic, best, fast, None, got 'turbo'"),
    ("optimizer", "rmsprop", "optimizer: expected one of adam, adamw, sgd"),
    ("schedule", None, "schedule: expected one of constant, onecycle, cosine"),
    ("weight_decay", -0.1, "weight_decay: must be a number ≥ 0 and < 10, got -0.1"),
    ("weight_decay", math.inf, "weight_decay"),
    ("weight_decay", True, "weight_decay"),
    ("label_smoothing", 1.0, "label_smoothing: must be a number ≥ 0 and < 1"),
    ("label_smoothing", "0.1", "label_smoothing"),
    ("augment", math.nan, "augment"),
    ("augment", 10, "augment: must be a number ≥ 0 and < 10"),
    ("elastic", -1, "elastic"),
    ("eval_every", 0, "eval_every: must be a whole number from 1 to 1,000,000,000, or None"),
    ("eval_every", True, "eval_every"),
    ("eval_every", 2.0, "eval_every"),
    ("stop_at", 0, r"stop_at: must be an accuracy in \(0, 1\]"),
    ("stop_at", 1.01, "stop_at"),
    ("stop_at", math.nan, "stop_at"),
    ("stop_at", True, "stop_at"),
])
def test_bad_recipe_fields_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        check_config(TrainConfig(**{field: value}))


# --- augmentation -------------------------------------------------------------------------------------------------

def blob(n: int = 6, dtype=torch.float32) -> torch.Tensor:
    """(n, 1, 28, 28): a bright 8×6 block in the middle of each image, background 0."""
    x = torch.zeros(n, 1, 28, 28, dtype=dtype)
    x[:, :, 10:18, 11:17] = 1
    return x


def centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(28, dtype=x.dtype)
    mass = x.sum((1, 2, 3))
    return torch.stack([(x.sum(3)[:, 0] * rows).sum(1) / mass, (x.sum(2)[:, 0] * rows).sum(1) / mass], 1)


def test_augment_is_seeded():
    x = blob()
    a = augment(x, torch.Generator().manual_seed(3), strength=1, elastic=1)
    b = augment(x, torch.Generator().manual_seed(3), strength=1, elastic=1)
    c = augment(x, torch.Generator().manual_seed(4), strength=1, elastic=1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # each image of the batch gets its own warp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("strength, elastic", [(1.0, 0.0), (0.0, 1.5), (2.0, 2.0)])
def test_augment_keeps_shape_dtype_and_device_and_changes_the_images(dtype, strength, elastic):
    x = blob(dtype=dtype)
    y = augment(x, torch.Generator().manual_seed(0), strength=strength, elastic=elastic)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all() and not torch.equal(x, y)
    assert y.min() >= 0 and y.max() <= 1 + 1e-6  # bilinear mixing of 0-1 pixels stays within 0-1


def test_augment_at_zero_strength_is_the_identity():
    x = blob()
    assert augment(x, torch.Generator().manual_seed(0), strength=0, elastic=0) is x
    # Vanishing warps go through the whole computation and come out as the input.
    nearly = augment(x, torch.Generator().manual_seed(0), strength=1e-7, elastic=1e-7)
    assert torch.allclose(nearly, x, atol=1e-4)


def test_augment_moves_the_digit_within_its_ranges():
    x = blob(256)
    ranges = AffineRange(shift=2.0, rotate=0.0, scale=0.0)
    y = augment(x, torch.Generator().manual_seed(0), strength=1, ranges=ranges)
    moved = centre_of_mass(y) - centre_of_mass(x)
    assert moved.abs().max() <= 2.0 + 1e-3  # a pure shift of at most 2 px in each direction
    assert moved.abs().max() > 1.5 and moved.std(0).min() > 0.8  # and the shifts spread over that range
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=1e-4)  # nothing left the frame
    bigger = augment(x, torch.Generator().manual_seed(0), strength=1, ranges=AffineRange(0, 0, 0.1))
    area = bigger.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert area.min() >= 0.9**2 - 0.02 and area.max() <= 1.1**2 + 0.02 and area.std() > 0.05


@pytest.mark.parametrize("height, width", [(28, 28), (5, 9)])
def test_affine_grid_matches_torch(height, width):
    theta = torch.eye(2, 3) + 0.3 * torch.randn(7, 2, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.affine_grid(theta, [7, 1, height, width], align_corners=False)
    assert torch.allclose(affine_grid(theta, height, width), expected, atol=1e-6)


def test_elastic_field_is_smooth_and_scaled():
    field = elastic_field(64, 28, 28, sigma=2.0, generator=torch.Generator().manual_seed(0))
    assert field.shape == (64, 28, 28, 2)
    pixels = field * 14  # grid units → pixels (28 px span 2 units)
    assert 1.0 < pixels.std() < 3.0
    assert (pixels[:, 1:] - pixels[:, :-1]).abs().mean() < 0.3 * pixels.abs().mean()  # neighbours move together


# --- time to accuracy ----------------------------------------------------------------------------------------------

def test_eval_every_gives_a_row_per_evaluation_with_training_and_evaluation_seconds_apart(tmp_path, tiny_data):
    run = train_run(quick(tmp_path, tiny_data, epochs=2, eval_every=5))  # 512 images / 32 = 16 steps an epoch
    assert [row.step for row in run.history] == [5, 10, 15, 20, 25, 30, 32]
    assert [row.epoch for row in run.history] == [0.3125, 0.625, 0.9375, 1.25, 1.5625, 1.875, 2]
    train_seconds = [row.train_seconds for row in run.history]
    assert train_seconds == sorted(train_seconds) and all(row.eval_seconds > 0 for row in run.history)
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert metrics["train_seconds"] == train_seconds[-1] and metrics["time_to_target"] is None
    assert metrics["eval_seconds"] == pytest.approx(sum(row.eval_seconds for row in run.history))
    assert metrics["train_seconds"] + metrics["eval_seconds"] <= metrics["wall_seconds"]
    assert [row["step"] for row in metrics["epochs"]] == [5, 10, 15, 20, 25, 30, 32]


@pytest.mark.slow
def test_evaluation_time_is_not_counted_as_training_time(tmp_path, tiny_data, monkeypatch):
    import time

    def slow_evaluate(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    real = training.evaluate_split
    monkeypatch.setattr(training, "evaluate_split", slow_evaluate)
    run = train_run(quick(tmp_path, tiny_data, epochs=3))
    assert all(row.eval_seconds >= 0.3 for row in run.history)
    assert run.final.train_seconds <= run.wall_seconds - 0.9


def test_stop_at_stops_once_the_target_is_reached(tmp_path, tiny_data):
    run = train_run(quick(tmp_path, tiny_data, epochs=5, eval_every=2, stop_at=0.5))
    assert run.final.test_acc >= 0.5 and all(row.test_acc < 0.5 for row in run.history[:-1])
    assert run.final.step < 5 * 16  # stopped early
    assert run.time_to_target == run.final.train_seconds
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert metrics["time_to_target"] == run.final.train_seconds and metrics["config"]["stop_at"] == 0.5
    saved = json.loads((run.dir / "config.json").read_text())
    assert saved["metrics"]["test_acc"] == run.final.test_acc


def test_a_target_never_reached_trains_every_epoch(tmp_path, tiny_data):
    run = train_run(quick(tmp_path, tiny_data, epochs=2, lr=1e-9, stop_at=0.99))
    assert [row.epoch for row in run.history] == [1, 2] and run.time_to_target is None


@pytest.mark.parametrize("stop_at, expected", [("0.5", "target 50.00%: reached at step "),
                                               ("100%", "target 100.00%: not reached in 32 steps")])
@pytest.mark.slow
def test_train_says_whether_the_target_was_reached(stop_at, expected, tmp_path, tiny_data, capsys):
    assert main(["train", "--data-dir", str(tiny_data), "--device", "cpu", "--epochs", "2", "--batch-size", "32",
                 "--lr", "1e-9" if stop_at == "100%" else "0.001", "--eval-every", "4", "--stop-at", stop_at,
                 "--no-progress", "--no-report", "--out", str(tmp_path / "run")]) == 0
    assert expected in capsys.readouterr().out


def test_the_classic_recipe_trains_as_the_seed_did(tmp_path, tiny_data, monkeypatch):
    """The classic path draws no augmentation and steps no schedule: only the shuffle uses the generator."""
    monkeypatch.setattr(training, "augment", lambda *a, **k: pytest.fail("augment called"))
    schedules, real = [], training.make_scheduler
    monkeypatch.setattr(training, "make_scheduler", lambda *a, **k: schedules.append(real(*a, **k)))
    run = train_run(quick(tmp_path, tiny_data, eval_every=None))
    assert run.config.recipe == "classic" and [row.epoch for row in run.history] == [1]
    assert schedules == [None]
    optimizer = training.make_optimizer(run.model, run.config)
    assert type(optimizer) is torch.optim.Adam and len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["weight_decay"] == 0


@pytest.mark.parametrize("optimizer, kind", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                             ("sgd", torch.optim.SGD)])
def test_weight_decay_spares_biases_and_norms(optimizer, kind):
    model = create_model("cnn_small", width=4)
    opt = training.make_optimizer(model, TrainConfig(optimizer=optimizer, weight_decay=0.05))
    assert type(opt) is kind
    decayed, spared = opt.param_groups
    assert decayed["weight_decay"] == 0.05 and spared["weight_decay"] == 0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in spared["params"])


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_schedules_end_far_below_their_peak(schedule):
    model = torch.nn.Linear(2, 2)
    config = TrainConfig(optimizer="adamw", schedule=schedule, lr=0.01)
    opt = training.make_optimizer(model, config)
    scheduler = training.make_scheduler(opt, config, total_steps=100)
    rates = []
    for _ in range(100):
        opt.step()
        scheduler.step()
        rates.append(opt.param_groups[0]["lr"])
    assert max(rates) <= 0.01 + 1e-12 and rates[-1] < 0.01 / 100
    assert training.make_scheduler(opt, TrainConfig(), 100) is None


# --- CNN checkpoints in use; the GPU path's CPU side ---------------------------------------------------------------

@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """A small `cnn` trained with the best recipe for 2 epochs on the synthetic digits, through the command line."""
    from .conftest import make_dataset

    root = tmp_path_factory.mktemp("cnn_run")
    data = make_dataset(root / "data", n_train=256, n_test=64)
    out = root / "run"
    assert main(["train", "--model", "cnn", "--width", "4", "--epochs", "2", "--data-dir", str(data), "--device",
                 "cpu", "--no-progress", "--out", str(out)]) == 0
    return out, data


@pytest.mark.slow
def test_a_cnn_run_records_its_recipe_and_resolved_settings(cnn_run):
    out, _ = cnn_run
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == {"name": "cnn", "args": {"width": 4, "dropout": 0.1}}
    best = dataclasses.asdict(get_recipe("best", "cnn"))
    recorded = config["train_config"]
    assert recorded["recipe"] == "best" and {k: recorded[k] for k in best} == {**best, "epochs": 2}
    assert (out / "report.html").is_file() and (out / "curves.png").is_file()


@pytest.mark.slow
def test_a_cnn_checkpoint_evaluates_predicts_and_draws(cnn_run, tmp_path, capsys):
    out, data = cnn_run
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data-dir", str(data), "--device", "cpu"]) == 0
    report = capsys.readouterr().out
    assert "cnn (" in report and "reproduced exactly" in report
    digit = torch.zeros(28, 28, dtype=torch.uint8)
    digit[6:22, 12:16] = 255
    Image.fromarray(digit.numpy()).save(tmp_path / "one.png")
    assert main(["predict", str(out), str(tmp_path / "one.png"), "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert 0 <= answer["label"] <= 9 and len(answer["probabilities"]) == 10
    for argv in (["plot", "confusion"], ["plot", "mistakes"], ["report"]):
        target = tmp_path / f"{argv[-1]}.{'html' if argv == ['report'] else 'png'}"
        assert main([*argv, str(out), "--data-dir", str(data), "--out", str(target)]) == 0
        assert target.stat().st_size > 1000


def test_cpu_training_uses_no_autocast_and_compile_wraps_only_the_training_steps(tmp_path, tiny_data, monkeypatch):
    autocasts, compiled = [], []
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: autocasts.append(a) or pytest.fail("autocast on CPU"))

    def fake_compile(model):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    run = train_run(quick(tmp_path, tiny_data, model="cnn_small", model_args={"width": 4}, compile=True))
    assert not autocasts and compiled == [run.model]
    assert all(p.is_contiguous() for p in run.model.parameters())  # channels-last was undone before saving
    assert sum(1 for name in run.model.state_dict() if name.startswith("_orig_mod")) == 0


def test_show_augmented_draws_one_digit_and_its_warped_copies(tmp_path, capsys):
    out = tmp_path / "aug.png"
    assert main(["show", "0", "--augmented", "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.width > 500 and image.height > 400
    from mnistlab.plots import PlotError, augmented_grid

    digit = torch.zeros(28, 28)
    digit[8:20, 12:16] = 1.0
    fig = augmented_grid(digit, rows=2, cols=3, strength=1, elastic=1, seed=5)
    mosaic = fig.axes[0].get_images()[0].get_array()  # the six digits in one image, 2 × 3 cells
    cells = [mosaic[r * 40 + 5:r * 40 + 33, c * 34 + 3:c * 34 + 31] for r in range(2) for c in range(3)]
    assert np.allclose(cells[0], digit.numpy())  # the original, unchanged
    assert all(cell.sum() > 0 and not np.allclose(cell, cells[0]) for cell in cells[1:])  # each copy warped
    for bad in ({"rows": 0}, {"cols": -1}, {"rows": 30, "cols": 30}, {"strength": -1}, {"elastic": math.nan}):
        with pytest.raises(PlotError, match="augmented_grid: "):
            augmented_grid(torch.zeros(28, 28), **bad)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["show", "0", "--augmented", "--normalized", "--out", str(out)])
    assert info.value.code == 2 and "leave out --normalized" in capsys.readouterr().err


# --- real MNIST -----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cnn_small_reaches_95_percent_on_real_mnist_in_a_few_hundred_steps(tmp_path):
    run = train_run(TrainConfig(model="cnn_small", **recipe_settings("cnn_small"), train_limit=19_200, device="cpu",
                            out=str(tmp_path / "r"), progress=False))  # 150 steps of 128
    assert run.final.step == 150
    assert run.final.test_acc >= 0.95
