import argparse
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import mnistlab
from mnistlab.cli import build_parser, main
from mnistlab.cli.train import train_config
from mnistlab.training import TrainConfig

MNISTLAB = [sys.executable, "-m", "mnistlab"]


def test_help_and_version_do_not_import_torch():
    commands = ["train", "evaluate", "models", "show", "plot grid", "plot curves", "report", "predict", "serve"]
    code = ("import sys; from mnistlab.cli import main\n"
            f"for argv in [['--help'], ['--version'], *[[*c.split(), '--help'] for c in {commands!r}]]:\n"
            "    try: main(argv)\n"
            "    except SystemExit as e: assert e.code == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'fastapi' not in sys.modules, 'fastapi was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"mnistlab {mnistlab.__version__}" in result.stdout
    assert "--batch-size N" in result.stdout and "--recipe NAME" in result.stdout
    assert "--top-k N" in result.stdout and "--save-preprocessed DIR" in result.stdout


def test_train_without_flags_runs_the_library_defaults():
    args = build_parser().parse_args(["train"])
    assert (args.epochs, args.batch_size, args.lr) == (None, None, None)  # not given: the recipe decides
    assert dataclasses.asdict(train_config(args)) == dataclasses.asdict(TrainConfig(progress=True))


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "-1"], "argument --epochs: must be from 1 to 1,000, got -1"),
    (["train", "--epochs", "two"], "expected a whole number"),
    (["train", "--lr", "0"], "argument --lr: must be a number from 1e-12 to 10"),
    (["train", "--lr", "-0.1"], "argument --lr"),
    (["train", "--device", "tpu"], "argument --device: expected one of auto, cpu, cuda, mps"),
    (["train", "--model", "resnet"], "unknown model 'resnet'; choose from: "),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["evaluate"], "the following arguments are required: RUN_OR_CHECKPOINT"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_flags_exit_2_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_files_and_devices_are_one_line_errors(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.strip() == (f"mnistlab: error: {tmp_path / 'missing'}: no such checkpoint; the "
                                               "shipped models need no training: pretrained:cnn, pretrained:cnn_small, "
                                               "pretrained:mlp (`mnistlab models`)")
    assert main(["train", "--data-dir", str(tmp_path), "--no-progress", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing train-images-idx3-ubyte.gz" in err
    if not mnistlab.resolve_device("auto").type == "cuda":
        assert main(["train", "--device", "cuda", "--no-progress"]) == 1
        assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_evaluate_reproduces_the_recorded_accuracy(tmp_path, tiny_data, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--hidden", "32", "--data-dir", str(tiny_data), "--device", "cpu",
                 "--no-progress", "--no-report", "--out", str(out)]) == 0
    assert f"saved {out}" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--data-dir", str(tiny_data), "--device", "cpu"]) == 0
    report = capsys.readouterr().out
    assert "mlp (25,450 parameters) on cpu" in report
    assert "reproduced exactly" in report
    assert main(["models"]) == 0
    models = capsys.readouterr().out.splitlines()
    assert models[0].split()[:2] == ["model", "parameters"]
    assert any(line.split()[:3] == ["mlp", "101,770", "hidden=128"] for line in models)


@pytest.mark.slow
def test_ctrl_c_exits_cleanly_and_saves_nothing(tmp_path):
    out = tmp_path / "run"
    with open(tmp_path / "stderr.txt", "w") as stderr:  # a file, not a pipe: the progress bar would fill it
        # A shell running this suite in the background hands its children SIGINT ignored; undo that.
        proc = subprocess.Popen([*MNISTLAB, "train", "--epochs", "50", "--out", str(out)], text=True,
                                stdout=subprocess.PIPE, stderr=stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while "epoch 1/50" not in proc.stdout.readline() and time.monotonic() < deadline:
            pass  # wait until training is under way
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130
    assert "interrupted; nothing was saved" in err and "Traceback" not in err
    assert not out.exists()


def test_evaluate_notes_test_files_other_than_the_recorded_ones(tmp_path, tiny_data, capsys):
    from .conftest import make_dataset

    out = tmp_path / "run"
    main(["train", "--epochs", "1", "--data-dir", str(tiny_data), "--device", "cpu", "--no-progress", "--no-report",
          "--out", str(out)])
    assert main(["evaluate", str(out), "--data-dir", str(tiny_data), "--device", "cpu"]) == 0
    assert "note:" not in capsys.readouterr().out
    other = make_dataset(tmp_path / "other", seed=1)
    assert main(["evaluate", str(out), "--data-dir", str(other), "--device", "cpu"]) == 0
    assert "note: the test files differ from the ones this checkpoint was evaluated on" in capsys.readouterr().out


def test_models_prints_a_table(monkeypatch, capsys):
    import torch

    import mnistlab.models as models

    monkeypatch.setattr(models, "_MODELS", dict(models._MODELS))

    @models.register_model
    def probe(scale: float = 0.5, name: str = "x") -> torch.nn.Module:
        """A linear probe.

        More text that the table leaves out."""
        return torch.nn.Linear(784, 10)

    @models.register_model
    def broken() -> torch.nn.Module:
        raise RuntimeError("no\nsuch layer")

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "parameters", "arguments", "(defaults)", "description"]
    rows = {line.split()[0]: re.split(r"\s{2,}", line) for line in lines[1:]}
    assert rows["mlp"][:3] == ["mlp", "101,770", "hidden=128"]
    assert rows["probe"] == ["probe", "7,850", "scale=0.5, name='x'", "A linear probe."]
    assert rows["broken"] == ["broken", "?", "?", "cannot be built: no such layer"]
    by_name = {line.split()[0]: line for line in lines}
    starts = {by_name[name].index(text) for name, text in (("model", "arguments"), ("mlp", "hidden=128"),
                                                            ("probe", "scale=0.5"))}
    assert len(starts) == 1  # the arguments column lines up


@pytest.mark.parametrize("argv", [
    ["evaluate", "{path}"], ["export", "{path}"], ["predict", "{path}", "x.png"], ["plot", "confusion", "{path}"],
    ["report", "{path}"], ["evaluate", "{path}.onnx"], ["train", "--data-dir", "{path}"],
], ids=["evaluate", "export", "predict", "plot", "report", "evaluate-onnx", "train-data-dir"])
def test_a_file_name_with_a_newline_or_escape_still_gives_one_line(argv, tmp_path, capsys):
    path = tmp_path / "run\nsecond line\x1b[31m"
    path.mkdir()
    assert main([word.replace("{path}", str(path)) for word in argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mnistlab: error: ") and "\x1b" not in err
    assert "run\\nsecond line\\x1b[31m" in err


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(argv prefix, parser) of every command and sub-command, with the dummy positionals each one requires."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))
    positionals = [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
                   and a.nargs != "?"]
    if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        yield [*path, *["X" for _ in positionals]], parser


def _numeric_flags():
    for argv, parser in _commands(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.type is None or action.nargs == 0:
                continue
            try:
                sample = action.type("5")
            except (argparse.ArgumentTypeError, ValueError):
                sample = None
            if isinstance(sample, int | float) and not isinstance(sample, bool):
                yield pytest.param(argv, action, id=f"{' '.join(argv)} {action.option_strings[-1]}")


NUMERIC_FLAGS = list(_numeric_flags())


def test_the_walk_finds_the_numeric_flags_of_every_command():
    found = {(argv[0], action.option_strings[-1]) for argv, action in (p.values for p in NUMERIC_FLAGS)}
    assert {("train", "--epochs"), ("predict", "--batch-size"), ("serve", "--port"), ("plot", "--rows"),
            ("report", "--test-batch-size"), ("evaluate", "--test-batch-size")} <= found


@pytest.mark.parametrize("argv, action", NUMERIC_FLAGS)
def test_every_numeric_flag_is_bounded_from_its_declaration(argv, action, capsys):
    bounds = getattr(action.type, "bounds", None)
    assert bounds is not None and bounds.low is not None and bounds.high is not None, \
        f"{action.option_strings[-1]} has no declared bound (use _args.bounded)"
    if action.default is not None:
        assert bounds.contains(action.default)
    flag = action.option_strings[-1]
    for huge in (str(10**30), "1e308", "-" + str(10**30)):
        with pytest.raises(SystemExit) as info:
            main([*argv, flag, huge])
        err = capsys.readouterr().err
        assert info.value.code == 2 and "Traceback" not in err, err
        errors = [line for line in err.splitlines() if ": error: " in line]  # first, then one hint
        assert len(errors) == 1 and errors[0] == err.splitlines()[0] and f"error: argument {flag}: " in errors[0]
        assert len(err.splitlines()) == 2
