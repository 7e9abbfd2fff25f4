"""The command line as a newcomer meets it: usage errors, what a command says while it works, where it writes."""

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mnistlab.cli import build_parser, main


def usage_error(argv: list[str], capsys) -> list[str]:
    """The lines a bad command line prints on stderr (it must exit 2)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err.splitlines()


# --- usage errors: the line that matters, then one hint ------------------------------------------------------------

@pytest.mark.parametrize("argv, error, hint", [
    (["train", "--epochs", "0"], "mnistlab train: error: argument --epochs: must be from 1 to 1,000, got 0",
     "see 'mnistlab train --help'"),
    (["trian"], "mnistlab: error: argument COMMAND: invalid choice: 'trian'", "did you mean 'mnistlab train'?"),
    (["train", "--model", "cnnn"],
     "mnistlab train: error: argument --model: unknown model 'cnnn'; choose from: cnn, cnn_small, mlp "
     "(`mnistlab models`)", "did you mean '--model cnn'?"),
    (["train", "--model", "resnet"], "mnistlab train: error: argument --model: unknown model 'resnet'",
     "see 'mnistlab train --help'"),
    (["train", "--recipe", "bset"], "mnistlab train: error: argument --recipe: invalid choice: 'bset'",
     "did you mean '--recipe best'?"),
    (["train", "--dataset", "fashion"], "mnistlab train: error: argument --dataset: invalid choice: 'fashion'",
     "did you mean '--dataset fashion-mnist'?"),
    (["plot", "grd", "runs/demo"], "mnistlab plot: error: argument FIGURE: invalid choice: 'grd'",
     "did you mean 'mnistlab plot grid'?"),
    (["data", "download", "kmnsit"], "mnistlab data download: error: argument NAME: invalid choice: 'kmnsit'",
     "did you mean 'mnistlab data download kmnist'?"),
    (["evaluate"], "mnistlab evaluate: error: the following arguments are required: RUN_OR_CHECKPOINT",
     "see 'mnistlab evaluate --help'"),
    (["evaluate", "runs/demo", "--json"], "mnistlab evaluate: error: --json goes with --images",
     "see 'mnistlab evaluate --help'"),
    ([], "mnistlab: error: the following arguments are required: COMMAND", "see 'mnistlab --help'"),
], ids=["bound", "command", "model", "unknown-model", "recipe", "dataset", "figure", "download", "required",
        "handler", "no-command"])
def test_a_usage_error_is_its_line_then_one_hint(argv, error, hint, capsys):
    lines = usage_error(argv, capsys)
    assert len(lines) == 2, lines  # no usage block above it
    assert lines[0].startswith(error) and lines[1] == hint


@pytest.mark.parametrize("argv, error", [
    (["train", "--model", "cnn", "--hidden", "64"], "argument --hidden: cnn takes no --hidden (only mlp)"),
    (["train", "--width", "8"], "argument --width: mlp takes no --width (only cnn and cnn_small)"),
], ids=["hidden", "width"])
def test_model_flags_are_named_as_flags(argv, error, capsys):
    lines = usage_error(argv, capsys)
    assert lines[0] == f"mnistlab train: error: {error}"
    assert "model_args" not in "\n".join(lines)


def test_a_config_error_names_the_flag_not_the_python_field(capsys):
    train = build_parser().parse_args(["train"]).command_parser
    with pytest.raises(SystemExit):
        train.config_error(ValueError("train_limit: must be from 1 to 10,000,000, got 0"))
    assert capsys.readouterr().err.splitlines()[0] == \
        "mnistlab train: error: argument --train-limit: must be from 1 to 10,000,000, got 0"
    finetune = build_parser().parse_args(["finetune", "b", "--images", "i", "--out", "o"]).command_parser
    with pytest.raises(SystemExit):
        finetune.config_error(ValueError("base: expected a string, got None"))
    assert capsys.readouterr().err.splitlines()[0] == \
        "mnistlab finetune: error: argument BASE: expected a string, got None"


# --- what a command says ------------------------------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_evaluate_names_a_shipped_model_and_says_what_it_does_on_a_terminal(capsys, monkeypatch):
    assert main(["evaluate", "pretrained:mlp"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("pretrained:mlp: mlp (101,770 parameters) on ")
    assert "site-packages" not in out and "src/mnistlab" not in out
    assert err == ""  # not a terminal: nothing but the result
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["evaluate", "pretrained:mlp", "--device", "cpu"]) == 0
    status, progress = terminal.getvalue().split("\n", 1)
    assert status == "evaluating pretrained:mlp on the test set of its dataset..."
    assert progress.startswith("\revaluating:") and "/10000 " in progress  # then the progress bar, on a terminal only


def test_a_missing_run_points_to_the_shipped_models(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv in (["evaluate", "runs/cnn"], ["export", "runs/cnn"], ["plot", "mistakes", "runs/cnn"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("mnistlab: error: runs/cnn: no such checkpoint; ") and err.count("\n") == 1
        assert "pretrained:cnn" in err and "`mnistlab models`" in err


def test_a_mistyped_shipped_model_gets_its_correction(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "pretrained:cnnn"]) == 1
    assert capsys.readouterr().err == ("mnistlab: error: no pretrained model named 'cnnn' (pretrained:NAME); did you "
                                       "mean pretrained:cnn? choose from: pretrained:cnn, pretrained:cnn_small, "
                                       "pretrained:mlp\n")


# --- where commands write -----------------------------------------------------------------------------------------

def test_figures_get_their_own_names_and_a_replaced_file_is_said(tiny_run, tmp_path, capsys):
    run = shutil.copytree(tiny_run[0], tmp_path / "run")
    data = ["--data-dir", str(tiny_run[1]), "--device", "cpu", "--rows", "1"]
    assert main(["plot", "grid", str(run), *data]) == 0
    assert capsys.readouterr().out == f"wrote {run / 'predictions.png'}\n"
    assert main(["plot", "grid", str(run), "--random", "--seed", "1", *data]) == 0
    assert capsys.readouterr().out == f"wrote {run / 'predictions-random.png'}\n"
    assert main(["plot", "grid", str(run), *data]) == 0
    assert capsys.readouterr().out == f"wrote {run / 'predictions.png'} (replacing the one that was there)\n"
    out = tmp_path / "mine.png"
    for _ in range(2):  # a file the user named is replaced as asked
        assert main(["plot", "grid", str(run), *data, "--out", str(out)]) == 0
        assert capsys.readouterr().out == f"wrote {out}\n"


def test_show_and_shipped_models_write_under_runs_not_the_current_folder(tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["show", "0", "--data-dir", str(tiny_data)]) == 0
    assert capsys.readouterr().out == f"wrote {Path('runs/show/train-0.png')}\n"
    assert main(["export", "pretrained:mlp", "--format", "torchscript"]) == 0
    assert capsys.readouterr().out == f"wrote {Path('runs/pretrained-mlp/model.pt')}\n"
    assert main(["export", "pretrained:mlp", "--format", "torchscript"]) == 0
    assert "(replacing the one that was there)" in capsys.readouterr().out
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "runs"]  # tiny_data's folder, and runs/


def test_predict_says_where_the_preprocessed_images_went(tmp_path, capsys):
    image = Image.new("L", (28, 28), 0)
    image.paste(255, (12, 4, 16, 24))  # a "1"
    image.save(tmp_path / "one.png")
    folder = tmp_path / "inputs"
    assert main(["predict", "pretrained:mlp", str(tmp_path / "one.png"), "--save-preprocessed", str(folder)]) == 0
    assert capsys.readouterr().err == f"mnistlab: wrote 1 model input (28×28 PNG) into {folder}\n"
    assert [path.name for path in folder.iterdir()] == ["one.png"]
