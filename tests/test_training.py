import dataclasses
import json

import pytest
import torch

import mnistlab.training as training
from mnistlab.training import TrainConfig, check_config, train_run


def quick(tmp_path, data_dir, **overrides) -> TrainConfig:
    settings = dict(epochs=2, batch_size=32, device="cpu", data_dir=str(data_dir), out=str(tmp_path / "run"),
                    progress=False)
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.slow
def test_seeded_cpu_runs_are_bit_for_bit_repeatable(tmp_path, tiny_data):
    a = train_run(quick(tmp_path, tiny_data, seed=7, out=str(tmp_path / "a")))
    b = train_run(quick(tmp_path, tiny_data, seed=7, out=str(tmp_path / "b")))
    c = train_run(quick(tmp_path, tiny_data, seed=8, out=str(tmp_path / "c")))
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert a.history[-1].train_loss == b.history[-1].train_loss
    assert (tmp_path / "a/model.safetensors").read_bytes() == (tmp_path / "b/model.safetensors").read_bytes()
    assert not torch.equal(a.model.fc1.weight, c.model.fc1.weight)


@pytest.mark.slow
def test_training_learns_and_writes_the_run_folder(tmp_path, tiny_data):
    run = train_run(quick(tmp_path, tiny_data, epochs=3))
    assert sorted(p.name for p in run.dir.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3]
    assert metrics["config"]["model_args"] == {"hidden": 128}
    assert metrics["torch_version"] == torch.__version__ and metrics["device"] == "cpu"
    assert metrics["wall_seconds"] > 0 and metrics["dataset"]["name"] == "mnist"
    assert metrics["dataset"]["canonical"] is False
    assert metrics["dataset"]["train_size"] == 512 and len(metrics["dataset"]["sha256"]) == 4
    assert run.final.test_acc > 0.9  # the synthetic classes are easy; chance is 0.1
    assert run.history[0].train_loss > run.final.train_loss


@pytest.mark.slow
def test_progress_prints_one_line_per_epoch(tmp_path, tiny_data, capsys):
    train_run(quick(tmp_path, tiny_data, progress=True))
    out = capsys.readouterr().out
    assert out.count("train loss") == 2 and "epoch 2/2" in out and "test loss" in out


@pytest.mark.slow
def test_train_limit_uses_the_first_images(tmp_path, tiny_data):
    run = train_run(quick(tmp_path, tiny_data, train_limit=100, epochs=1))
    assert json.loads((run.dir / "metrics.json").read_text())["dataset"]["train_size"] == 100


@pytest.mark.slow
def test_default_run_folder_is_under_runs(tmp_path, tiny_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = train_run(quick(tmp_path, tiny_data, epochs=1, out=None))
    assert run.dir.parent.name == "runs" and run.dir.name.endswith("-mlp")
    assert (tmp_path / run.dir / "model.safetensors").is_file()


@pytest.mark.slow
def test_interrupted_training_writes_nothing(tmp_path, tiny_data, monkeypatch):
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = training.train_one_epoch
    monkeypatch.setattr(training, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(quick(tmp_path, tiny_data))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs: must be a whole number from 1 to 1,000"),
    ("batch_size", -3, "batch_size"),
    ("lr", 0.0, "lr: must be a number from 1e-12 to 10"),
    ("lr", float("nan"), "lr"),
    ("std", 0.0, "std"),
    ("model", "resnet", "model: unknown model 'resnet'"),
    ("model_args", {"width": 3}, "model_args: mlp takes no width"),
    ("train_limit", 0, "train_limit"),
])
def test_bad_config_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        check_config(TrainConfig(**{field: value}))


@pytest.mark.slow
def test_written_files_get_ordinary_permissions(tmp_path, tiny_data):
    import os

    mask = os.umask(0o022)
    try:
        run = train_run(quick(tmp_path, tiny_data, epochs=1))
    finally:
        os.umask(mask)
    assert {oct(p.stat().st_mode & 0o777) for p in run.dir.iterdir()} == {"0o644"}


@pytest.mark.slow
def test_the_library_leaves_the_same_run_folder_as_the_command(tmp_path, tiny_data, capsys):
    import mnistlab
    from mnistlab.cli import main

    config = TrainConfig(epochs=1, model_args={"hidden": 16}, device="cpu", data_dir=str(tiny_data), progress=False)
    run = mnistlab.train(dataclasses.replace(config, out=str(tmp_path / "library")))
    assert run.pictures == ["curves.png", "report.html"]
    assert main(["train", "--epochs", "1", "--hidden", "16", "--device", "cpu", "--data-dir", str(tiny_data),
                 "--no-progress", "--out", str(tmp_path / "command")]) == 0
    assert f"wrote {tmp_path / 'command' / 'report.html'}" in capsys.readouterr().out
    files = {name: sorted(p.name for p in (tmp_path / name).iterdir()) for name in ("library", "command")}
    assert files["library"] == files["command"] and {"curves.png", "report.html"} <= set(files["library"])
    weights = {name: (tmp_path / name / "model.safetensors").read_bytes() for name in files}
    assert weights["library"] == weights["command"]  # the same run, seeded alike
    bare = mnistlab.train(dataclasses.replace(config, out=str(tmp_path / "bare")), pictures=False)
    assert bare.pictures == [] and not {"curves.png", "report.html"} & {p.name for p in bare.dir.iterdir()}
    no_report = mnistlab.train(dataclasses.replace(config, out=str(tmp_path / "curves")), report=False)
    assert no_report.pictures == ["curves.png"]


# --- what `mnistlab train` costs besides training -------------------------------------------------------------------

def test_the_optimizers_step_as_torchs_own_without_importing_its_compiler():
    import subprocess
    import sys

    # One process for every optimizer: the compiler's import is checked once, after all of ours have run.
    script = """
import sys, torch
from mnistlab.config import TrainConfig
from mnistlab.optim import make_optimizer, make_scheduler

SETTINGS = [("adam", "onecycle"), ("adamw", "cosine"), ("sgd", "none")]

def run(kind_of, optimizer, schedule):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    config = TrainConfig(optimizer=optimizer, schedule=schedule, weight_decay=0.01, lr=0.01)
    optimizer = kind_of(model, config)
    scheduler = make_scheduler(optimizer, config, 20)
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        x, y = torch.randn(8, 12, generator=generator), torch.randint(4, (8,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return [p.detach().clone() for p in model.parameters()]

ours = [run(make_optimizer, *setting) for setting in SETTINGS]
assert "torch._dynamo" not in sys.modules, "the compiler was imported"
import mnistlab.optim
mnistlab.optim.eager = lambda kind, params, **options: kind(params, **options)  # guards and all
for setting, mine in zip(SETTINGS, ours, strict=True):
    theirs = run(make_optimizer, *setting)
    assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True)), f"the steps differ: {setting}"
assert "torch._dynamo" in sys.modules  # so the guards were there to skip
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_train_command_imports_nothing_heavy_before_it_is_needed():
    import subprocess
    import sys

    script = ("import sys, mnistlab.cli.train, mnistlab.runs, mnistlab.training; "
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'scipy', 'PIL', 'sympy'}), "
              "'torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]", "False"]  # matplotlib comes with the pictures, the rest never


def test_one_pass_over_the_test_set_serves_the_metrics_and_the_report(tmp_path, tiny_data, monkeypatch):
    import mnistlab
    import mnistlab.evaluation as evaluation

    passes = []
    real = evaluation.evaluate_split

    def counted(model, split, *args, **kwargs):
        passes.append(len(split))
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(training, "evaluate_split", counted)
    monkeypatch.setattr(evaluation, "evaluate_split", counted)
    run = mnistlab.train(quick(tmp_path, tiny_data, epochs=1))
    assert run.pictures == ["curves.png", "report.html"]
    assert len(passes) == 1  # the evaluation after the epoch; the report draws its answers
    expected = evaluation.compute_predictions(run.model, run.test_split, run.config.mean, run.config.std)
    assert torch.equal(run.test_predictions.probs, expected.probs)
    assert run.test_predictions.accuracy == run.final.test_acc


# --- run folders: `pretrained:` is reserved, inputs are checked before outputs --------------------------------------

@pytest.mark.parametrize("out", ["pretrained:cnn-mine", "runs/pretrained:cnn-mine", "pretrained:"])
def test_a_run_folder_named_like_a_shipped_model_is_refused_before_training(tmp_path, tiny_data, monkeypatch, out):
    from mnistlab import OutputError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(training, "train_one_epoch", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(OutputError, match=r"a run folder's name may not start with 'pretrained:'"):
        train_run(quick(tmp_path, tiny_data, out=out))
    assert list(tmp_path.iterdir()) == [tiny_data]


def test_the_command_line_refuses_a_pretrained_run_name_in_one_line(tmp_path, tiny_data, capsys, monkeypatch):
    from mnistlab.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data-dir", str(tiny_data), "--epochs", "1", "--out", "runs/pretrained:cnn-mine"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("mnistlab: error: runs/pretrained:cnn-mine: a run folder's name may not start with 'pretrained:', "
                   "which names the models that ship with mnistlab; choose another name")


def test_a_missing_data_folder_is_named_before_an_existing_run(tmp_path, tiny_data, capsys):
    from mnistlab import DataError
    from mnistlab.cli import main

    old = train_run(quick(tmp_path, tiny_data, epochs=1)).dir
    with pytest.raises(DataError, match="no-such-data: data directory not found"):
        train_run(quick(tmp_path, tmp_path / "no-such-data", out=str(old)))
    assert main(["train", "--data-dir", str(tmp_path / "no-such-data"), "--out", str(old)]) == 1
    assert "no-such-data: data directory not found" in capsys.readouterr().err


def test_an_existing_run_is_named_in_the_language_of_the_interface(tmp_path, tiny_data, capsys):
    from mnistlab import OutputError
    from mnistlab.cli import main

    old = train_run(quick(tmp_path, tiny_data, epochs=1)).dir
    with pytest.raises(OutputError) as error:
        train_run(quick(tmp_path, tiny_data, epochs=1, out=str(old)))
    assert str(error.value) == (f"{old}: already holds a run; pass overwrite=True to replace it, "
                                "or choose another folder")
    assert main(["train", "--data-dir", str(tiny_data), "--epochs", "1", "--out", str(old)]) == 1
    err = capsys.readouterr().err
    assert f"{old}: already holds a run; use --overwrite to replace it, or choose another folder" in err
    assert "overwrite=True" not in err


def test_init_starts_from_a_runs_weights(tmp_path, tiny_data):
    """`init`: the run starts where the given run ended (at the smallest rate the weights stay there); without
    it, from the seed's random weights."""
    base = train_run(quick(tmp_path, tiny_data, model_args={"hidden": 16}, out=str(tmp_path / "base")))
    settings = dict(model_args={"hidden": 16}, epochs=1, lr=1e-12, seed=5)
    further = train_run(quick(tmp_path, tiny_data, init=str(base.dir), out=str(tmp_path / "further"), **settings))
    fresh = train_run(quick(tmp_path, tiny_data, out=str(tmp_path / "fresh"), **settings))
    for name, weight in base.model.state_dict().items():
        assert torch.allclose(further.model.state_dict()[name], weight, atol=1e-6)
        assert not torch.allclose(fresh.model.state_dict()[name], weight, atol=1e-3)
    assert further.final.test_acc == base.final.test_acc
    assert json.loads((further.dir / "config.json").read_text())["train_config"]["init"] == str(base.dir)


def test_init_from_another_model_is_refused_in_one_line_before_training(tmp_path, tiny_data, tiny_run, capsys):
    from mnistlab.cli import main

    with pytest.raises(ValueError, match=r"^init: .* holds mlp \{'hidden': 16\}; this run trains mlp \{'hidden': 32\}"):
        check_config(quick(tmp_path, tiny_data, init=str(tiny_run[0]), model_args={"hidden": 32}))
    argv = ["train", "--data-dir", str(tiny_data), "--init", str(tiny_run[0]), "--model", "cnn_small",
            "--out", str(tmp_path / "never")]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[0]
    assert error.startswith("mnistlab train: error: argument --init: ") and "holds mlp" in error
    assert error.endswith("this run trains cnn_small {'width': 16}")
    assert not (tmp_path / "never").exists()
    with pytest.raises(SystemExit):
        main(["train", "--data-dir", str(tiny_data), "--init", str(tmp_path / "nothing"),
              "--out", str(tmp_path / "never")])
    error = capsys.readouterr().err
    assert "argument --init: " in error and "nothing: no such checkpoint" in error and not (tmp_path / "never").exists()
