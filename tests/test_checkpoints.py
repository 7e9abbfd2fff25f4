import json
import shutil

import pytest
import torch

from mnistlab import CheckpointError
from mnistlab.checkpoints import load_checkpoint
from mnistlab.data import load_mnist
from mnistlab.training import TrainConfig, evaluate, train_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from .conftest import make_dataset

    root = tmp_path_factory.mktemp("ckpt")
    data_dir = make_dataset(root / "data")
    run = train_run(TrainConfig(epochs=1, device="cpu", data_dir=str(data_dir), out=str(root / "run"),
                            progress=False, model_args={"hidden": 16}))
    return run, data_dir


@pytest.fixture
def copy(trained, tmp_path):
    run, _ = trained
    return shutil.copytree(run.dir, tmp_path / "copy")


@pytest.mark.slow
def test_round_trip_rebuilds_the_model_and_reproduces_accuracy(trained):
    run, data_dir = trained
    for path in (run.dir, run.dir / "config.json", run.dir / "model.safetensors"):
        checkpoint = load_checkpoint(path)
        assert checkpoint.model_name == "mlp" and checkpoint.config["model"]["args"] == {"hidden": 16}
        assert not checkpoint.model.training
        x = torch.randn(5, 1, 28, 28)
        torch.testing.assert_close(checkpoint.model(x), run.model.eval()(x), rtol=0, atol=0)
    data = load_mnist(data_dir)
    _, acc = evaluate(checkpoint.model, data.test, checkpoint.mean, checkpoint.std)
    assert acc == checkpoint.metrics["test_acc"] == run.final.test_acc
    assert checkpoint.config["dataset"]["sha256"] == data.sha256


def test_config_records_what_a_checkpoint_needs(trained):
    config = json.loads((trained[0].dir / "config.json").read_text())
    assert config["format"] == "mnistlab.checkpoint" and config["mnistlab_version"]
    assert config["normalization"] == {"mean": 0.1307, "std": 0.3081}
    assert set(config["metrics"]) >= {"test_acc", "test_loss", "train_acc", "train_loss"}
    assert config["train_config"]["lr"] == 1e-3


def test_missing_things(tmp_path, copy):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nothing")
    (copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_checkpoint(copy)
    (copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        load_checkpoint(copy)


def test_truncated_weights(copy):
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors: unreadable or truncated"):
        load_checkpoint(copy)


def test_foreign_files(copy, tmp_path):
    (copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_checkpoint(copy)
    (copy / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(CheckpointError, match="not an mnistlab checkpoint"):
        load_checkpoint(copy)
    other = tmp_path / "weights.pt"
    other.write_bytes(b"\x80\x04pickle")
    with pytest.raises(CheckpointError, match="expected a checkpoint folder"):
        load_checkpoint(other)


def edit_config(folder, change):
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def test_weights_that_do_not_match_the_config(copy):
    edit_config(copy, lambda c: c["model"]["args"].update(hidden=32))
    with pytest.raises(CheckpointError, match=r"weights do not match the config: fc1.bias is \(16,\), config needs"):
        load_checkpoint(copy)


def test_bad_model_fields(copy):
    edit_config(copy, lambda c: c["model"].update(name="resnet"))
    with pytest.raises(CheckpointError, match="config.json: field 'model.name': unknown model 'resnet'; choose from"):
        load_checkpoint(copy)
    edit_config(copy, lambda c: c.update(format_version=99))
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_checkpoint(copy)
    edit_config(copy, lambda c: c.update(format_version=1, normalization={}))
    with pytest.raises(CheckpointError, match="field 'normalization.mean' is missing"):
        load_checkpoint(copy)


def test_saving_leaves_no_temporary_files(trained):
    assert not [p for p in trained[0].dir.iterdir() if p.name.startswith(".")]


def test_evaluating_a_test_set_shows_progress_on_stderr(tiny_run, capsys):
    import numpy as np

    from mnistlab.prediction import evaluate_arrays
    from mnistlab.runs import evaluate_test_set

    run, data = tiny_run
    checkpoint = load_checkpoint(run)
    quiet = evaluate_test_set(checkpoint, data_dir=data)  # stderr is not a terminal here: no bar
    assert capsys.readouterr().err == ""
    shown = evaluate_test_set(checkpoint, data_dir=data, progress=True)
    assert "evaluating" in capsys.readouterr().err and shown == quiet
    assert shown.accuracy == checkpoint.metrics["test_acc"]

    class Uniform:  # any Classifier: an exported model goes this way
        def probabilities(self, images):
            return np.full((len(images), 10), 0.1, np.float32)

    evaluate_arrays(Uniform(), np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.int64), progress=True)
    assert "evaluating" in capsys.readouterr().err
