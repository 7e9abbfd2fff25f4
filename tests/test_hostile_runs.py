"""Hostile runs of `mnistlab train` (and the figure commands' --out): a run folder appears whole or
not at all, every output is checked before any work, and numbers that cannot work are refused.

Most cases run the command in-process on a tiny synthetic dataset (256 images, 1 epoch, 16 hidden
units), so each takes a fraction of a second; the signal cases run it as a process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mnistlab._outputs as io_module
import mnistlab._signals as signals_module
import mnistlab.training as training
from mnistlab._outputs import StagedFolder, check_output_file
from mnistlab.cli import main
from mnistlab.errors import OutputError
from mnistlab.training import TrainConfig, check_config

from .conftest import make_dataset, write_idx

RUN_FILES = ["config.json", "metrics.json", "model.safetensors"]  # what the library's train() writes
CLI_FILES = sorted([*RUN_FILES, "curves.png"])  # `mnistlab train --no-report`


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("hostile") / "data", n_train=256, n_test=64)


def train_argv(data: Path, out: Path | str | None, *extra: str) -> list[str]:
    argv = ["train", "--data-dir", str(data), "--epochs", "1", "--hidden", "16", "--device", "cpu",
            "--no-progress", "--no-report", *extra]
    return argv if out is None else [*argv, "--out", str(out)]


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its content (None for folders and other non-files), to compare."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(root.rglob("*"))}


def leftovers(folder: Path) -> list[str]:
    """Temporary names mnistlab may have left in `folder` (staging folders, aside folders, temp files)."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def make_run(data: Path, out: Path, *extra: str) -> Path:
    assert main(train_argv(data, out, *extra)) == 0
    return out


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory) -> Path:
    return make_run(data, tmp_path_factory.mktemp("finished") / "run", "--seed", "5")


@pytest.fixture
def old_run(finished_run, tmp_path) -> Path:
    """A copy of a finished run with a figure beside it, as `mnistlab plot` leaves one."""
    run = Path(shutil.copytree(finished_run, tmp_path / "old"))
    (run / "confusion.png").write_bytes(b"old figure")
    return run


@pytest.fixture
def no_data_load(monkeypatch):
    """Fail the test if training gets as far as loading the data."""
    def refuse(*args, **kwargs):
        raise AssertionError("the data was loaded before the output was checked")

    monkeypatch.setattr(training, "load_mnist", refuse)


# --- bad output folders: refused before any work, nothing created ------------------------------------

def _file(tmp: Path) -> Path:
    (tmp / "file").write_text("x")
    return tmp / "file"


def _inside_file(tmp: Path) -> Path:
    return _file(tmp) / "run"


def _deep_inside_file(tmp: Path) -> Path:
    return _file(tmp) / "a" / "b" / "run"


def _other_files(tmp: Path) -> Path:
    (tmp / "notes").mkdir()
    (tmp / "notes" / "todo.txt").write_text("keep me")
    return tmp / "notes"


def _foreign_checkpoint(tmp: Path) -> Path:  # another tool's model folder: config.json + model.safetensors
    (tmp / "bert").mkdir()
    (tmp / "bert" / "config.json").write_text('{"model_type": "bert"}')
    (tmp / "bert" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return tmp / "bert"


def _symlink_to_folder(tmp: Path) -> Path:
    (tmp / "real").mkdir()
    (tmp / "link").symlink_to(tmp / "real")
    return tmp / "link"


def _dangling_symlink(tmp: Path) -> Path:
    (tmp / "link").symlink_to(tmp / "nowhere")
    return tmp / "link"


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "fifo")
    return tmp / "fifo"


def _fifo_as_weights(tmp: Path) -> Path:  # recognising a run must not open a FIFO (it would block)
    (tmp / "odd").mkdir()
    os.mkfifo(tmp / "odd" / "model.safetensors")
    os.mkfifo(tmp / "odd" / "config.json")
    return tmp / "odd"


def _long_name(tmp: Path) -> Path:
    return tmp / ("r" * 300)


@pytest.mark.parametrize("make_target, overwrite, message", [
    (_file, False, "exists and is not a folder"),
    (_file, True, "exists and is not a folder"),
    (_inside_file, False, "is a file, not a folder"),
    (_deep_inside_file, False, "is a file, not a folder"),
    (_other_files, False, "not an mnistlab run"),
    (_other_files, True, "not an mnistlab run"),
    (_foreign_checkpoint, True, "not an mnistlab run"),
    (_symlink_to_folder, False, "is a symbolic link"),
    (_dangling_symlink, True, "is a symbolic link"),
    (_fifo, False, "exists and is not a folder"),
    (_fifo_as_weights, True, "not an mnistlab run"),
    (_long_name, False, "file name too long"),
], ids=["file", "file-overwrite", "inside-a-file", "deep-inside-a-file", "other-files", "other-files-overwrite",
        "foreign-checkpoint-overwrite", "symlink", "dangling-symlink-overwrite", "fifo", "fifos-named-as-run-files",
        "name-too-long"])
def test_a_bad_out_is_refused_before_any_work(make_target, overwrite, message, data, tmp_path, capsys, no_data_load):
    target = make_target(tmp_path)
    before = tree(tmp_path)
    assert main(train_argv(data, target, *(["--overwrite"] if overwrite else []))) == 1
    err = capsys.readouterr().err
    assert err.startswith("mnistlab: error: ") and err.count("\n") == 1 and message in err
    assert tree(tmp_path) == before


def test_an_existing_run_is_refused_without_overwrite(old_run, data, tmp_path, capsys, no_data_load):
    before = tree(tmp_path)
    assert main(train_argv(data, old_run)) == 1
    assert f"{old_run}: already holds a run; use --overwrite" in capsys.readouterr().err
    assert tree(tmp_path) == before


def test_an_unwritable_parent_is_found_by_trying(data, tmp_path, monkeypatch, capsys, no_data_load):
    # Permission bits do not stop root, so the test makes creating the staging folder fail as they would.
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(io_module.tempfile, "mkdtemp", denied)
    assert main(train_argv(data, tmp_path / "new" / "deeper" / "run")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write in" in err and "Permission denied" in err
    assert list(tmp_path.iterdir()) == []  # the parents it had made are gone again


@pytest.mark.parametrize("argv_out, message", [
    ("", "argument --out: must not be empty"),
])
def test_an_empty_out_flag_exits_2(argv_out, message, data, capsys):
    with pytest.raises(SystemExit) as info:
        main(train_argv(data, argv_out))
    assert info.value.code == 2 and message in capsys.readouterr().err


# --- good output folders ------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["new", "nested/new/folders", "empty"])
def test_a_new_or_empty_folder_receives_the_whole_run(where, data, tmp_path):
    (tmp_path / "empty").mkdir()
    out = make_run(data, tmp_path / where)
    assert sorted(p.name for p in out.iterdir()) == CLI_FILES
    assert leftovers(out.parent) == []


def test_overwrite_replaces_the_old_run_whole(old_run, data, tmp_path, capsys):
    old_config = (old_run / "config.json").read_text()
    assert main(train_argv(data, old_run, "--overwrite")) == 0
    assert sorted(p.name for p in old_run.iterdir()) == CLI_FILES  # the old figure went with the old run
    assert (old_run / "config.json").read_text() != old_config
    assert json.loads((old_run / "config.json").read_text())["train_config"]["seed"] == 1
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_a_weights_only_folder_an_older_mnistlab_left(old_run, data, tmp_path):
    for name in ("config.json", "metrics.json", "curves.png", "confusion.png"):
        (old_run / name).unlink()
    assert main(train_argv(data, old_run)) == 1  # still a run: refused without --overwrite
    assert main(train_argv(data, old_run, "--overwrite")) == 0
    assert sorted(p.name for p in old_run.iterdir()) == CLI_FILES


@pytest.mark.slow
def test_the_command_line_pictures_are_part_of_the_whole(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([a for a in train_argv(data, out) if a != "--no-report"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*CLI_FILES, "report.html"])
    printed = capsys.readouterr().out
    assert f"wrote {out / 'curves.png'}" in printed and f"wrote {out / 'report.html'}" in printed
    assert ".tmp-" not in (out / "report.html").read_text()  # titled with the run's own name


# --- interrupts and write failures at each step --------------------------------------------------------

def _fail_on(monkeypatch, target_name: str, error: BaseException) -> None:
    """Make writing the run file `target_name`, or drawing the picture of that name, raise `error`."""
    real_write = StagedFolder.write

    def write(self, name, content):
        if name == target_name:
            raise error
        return real_write(self, name, content)

    monkeypatch.setattr(StagedFolder, "write", write)
    if target_name == "curves.png":
        import mnistlab.plots as plots

        def broken(*args, **kwargs):
            raise error

        monkeypatch.setattr(plots, "training_curves", broken)
    if target_name == "publish":  # between moving an old run aside and moving the new one in
        real_replace = os.replace

        def replace(source, destination):
            if ".tmp-" in str(source):
                raise error
            return real_replace(source, destination)

        monkeypatch.setattr(io_module.os, "replace", replace)
    if target_name == "training":
        def epoch(*args, **kwargs):
            raise error

        monkeypatch.setattr(training, "train_one_epoch", epoch)


STEPS = ["training", "model.safetensors", "config.json", "metrics.json", "publish"]


@pytest.mark.parametrize("over_old_run", [False, True], ids=["new", "over-old-run"])
@pytest.mark.parametrize("step", [*STEPS, "curves.png"])
def test_ctrl_c_at_any_step_leaves_nothing_new(step, over_old_run, old_run, data, tmp_path, monkeypatch, capsys):
    out = old_run if over_old_run else tmp_path / "run"
    before = tree(tmp_path)
    _fail_on(monkeypatch, step, KeyboardInterrupt())
    extra = ["--overwrite"] if over_old_run else []
    assert main(train_argv(data, out, *extra)) == 130
    err = capsys.readouterr().err
    if over_old_run:
        assert f"interrupted; nothing was saved; the old run in {out} is untouched" in err
    else:
        assert err.strip() == "mnistlab: interrupted; nothing was saved"
    assert tree(tmp_path) == before


@pytest.mark.parametrize("over_old_run", [False, True], ids=["new", "over-old-run"])
@pytest.mark.parametrize("step", ["model.safetensors", "config.json", "metrics.json"])
def test_a_full_disk_is_one_line_naming_the_file(step, over_old_run, old_run, data, tmp_path, monkeypatch, capsys):
    out = old_run if over_old_run else tmp_path / "run"
    before = tree(tmp_path)

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real = Path.write_bytes
    monkeypatch.setattr(Path, "write_bytes", lambda self, d: full(self, d) if self.name == step else real(self, d))
    assert main(train_argv(data, out, *(["--overwrite"] if over_old_run else []))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"mnistlab: error: {out / step}: cannot write (No space left on device); nothing was saved" in err
    assert ("is untouched" in err) == over_old_run
    assert tree(tmp_path) == before


@pytest.mark.parametrize("picture", ["curves.png", "report.html"])
@pytest.mark.slow
def test_a_picture_that_fails_keeps_the_trained_run(picture, data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real = Path.write_text
    if picture == "curves.png":
        import matplotlib.figure

        def full(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    else:
        def full(self, text, *args, **kwargs):
            if self.name == picture:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(self, text, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", full)
    assert main([a for a in train_argv(data, out) if a != "--no-report"]) == 1
    captured = capsys.readouterr()
    assert f"saved {out}" in captured.out
    kept = sorted(p.name for p in out.iterdir())
    assert kept == sorted([*RUN_FILES, *(["curves.png"] if picture == "report.html" else [])])
    assert captured.err.strip() == (f"mnistlab: error: {out / picture}: not written (No space left on device); "
                                    f"{out} holds the trained run: {', '.join(kept)}")
    assert leftovers(tmp_path) == []


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if text in line or not line:
            return


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
@pytest.mark.slow
def test_a_signal_during_training_leaves_the_old_run_untouched(sig, code, old_run, data, tmp_path):
    before = tree(tmp_path)
    argv = [sys.executable, "-m", "mnistlab", *train_argv(data, old_run, "--overwrite")]
    argv[argv.index("--epochs") + 1] = "1000"
    argv.remove("--no-progress")  # the per-epoch lines tell when training is under way
    with open(tmp_path.parent / f"{tmp_path.name}-stderr.txt", "w") as stderr:
        proc = subprocess.Popen(argv, text=True, stdout=subprocess.PIPE, stderr=stderr,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        _wait_for(proc, "epoch 1/1000")
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    err = Path(stderr.name).read_text()
    assert proc.returncode == code, err
    assert f"interrupted; nothing was saved; the old run in {old_run} is untouched" in err and "Traceback" not in err
    assert tree(tmp_path) == before


# --- the library gives a notebook the same guarantee ---------------------------------------------------

def test_train_publishes_its_hooks_files_with_the_run(data, tmp_path):
    seen = []

    def hook(run, folder):
        seen.append((run.dir, folder.parent, sorted(p.name for p in folder.iterdir())))
        (folder / "notes.txt").write_text("drawn before publication")
        assert not run.dir.exists()

    config = TrainConfig(epochs=1, device="cpu", data_dir=str(data), out=str(tmp_path / "nb"), progress=False,
                         model_args={"hidden": 16})
    run = training.train_run(config, before_publish=hook)
    assert seen == [(tmp_path / "nb", tmp_path, RUN_FILES)]
    assert (run.dir / "notes.txt").read_text() == "drawn before publication"
    assert {"data", "model", "training", "evaluation", "writing", "extras", "publish"} <= set(run.timings)


def test_a_failing_hook_publishes_nothing(data, tmp_path):
    def hook(run, folder):
        raise RuntimeError("boom")

    config = TrainConfig(epochs=1, device="cpu", data_dir=str(data), out=str(tmp_path / "nb"), progress=False,
                         model_args={"hidden": 16})
    with pytest.raises(RuntimeError, match="boom"):
        training.train_run(config, before_publish=hook)
    assert list(tmp_path.iterdir()) == []


def test_save_checkpoint_alone_writes_a_whole_folder(data, tmp_path):
    from mnistlab.checkpoints import load_checkpoint, save_checkpoint
    from mnistlab.models import create_model

    model = create_model("mlp", hidden=4)
    kwargs = dict(mean=0.1, std=0.3, dataset={}, metrics={}, train_config={})
    save_checkpoint(tmp_path / "ck", model, "mlp", {"hidden": 4}, **kwargs)
    with pytest.raises(OutputError, match="already holds a run"):
        save_checkpoint(tmp_path / "ck", model, "mlp", {"hidden": 4}, **kwargs)
    save_checkpoint(tmp_path / "ck", model, "mlp", {"hidden": 4}, overwrite=True, **kwargs)
    assert load_checkpoint(tmp_path / "ck").config["model"]["args"] == {"hidden": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


# --- numbers that cannot work ---------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, message", [
    ("--std", "1e-320", "must be a number from 0.001 to 100"),
    ("--std", "0", "must be a number from 0.001"),
    ("--std", "-1", "must be a number from 0.001"),
    ("--std", "1e9", "must be a number from 0.001"),
    ("--std", "nan", "must be finite"),
    ("--std", "inf", "must be finite"),
    ("--mean", "1e308", "must be a number from 0 to 1"),
    ("--mean", "-0.5", "must be a number from 0 to 1"),
    ("--mean", "nan", "must be finite"),
    ("--seed", "-1", "must be from 0 to 18,446,744,073,709,551,615"),
    ("--seed", str(2**64), "must be from 0 to"),
    ("--seed", "1" * 5000, "expected a whole number"),
    ("--seed", "1.5", "expected a whole number"),
    ("--batch-size", "0", "must be from 1 to 65,536"),
    ("--batch-size", str(10**30), "must be from 1 to 65,536"),
    ("--test-batch-size", str(10**12), "must be from 1 to 65,536"),
    ("--epochs", str(10**9), "must be from 1 to 1,000"),
    ("--epochs", "²", "expected a whole number"),
    ("--train-limit", str(10**20), "must be from 1 to 10,000,000"),
    ("--train-limit", "0", "must be from 1"),
    ("--hidden", str(10**7), "must be from 1 to 16,384"),
    ("--hidden", "0", "must be from 1"),
    ("--lr", "1e9", "must be a number from 1e-12 to 10"),
    ("--lr", "0", "must be a number from 1e-12 to 10"),
    ("--lr", "-0.001", "must be a number from 1e-12 to 10"),
    ("--lr", "1e-320", "must be a number from 1e-12 to 10"),  # subnormal: trains nothing
    ("--lr", "inf", "must be finite"),
])
def test_a_number_that_cannot_work_exits_2(flag, value, message, data, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([*train_argv(data, tmp_path / "run"), flag, value])
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"argument {flag}: {message}" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "seed: must be a whole number from 0"),
    ("seed", 2**64, "seed: must be a whole number from 0"),
    ("seed", True, "seed: must be a whole number"),
    ("epochs", 1.5, "epochs: must be a whole number"),
    ("batch_size", 10**9, "batch_size: must be a whole number from 1 to 65,536"),
    ("train_limit", 10**12, "train_limit"),
    ("mean", 1e308, "mean: must be a number from 0 to 1"),
    ("std", 1e-320, "std: must be a number from 0.001 to 100"),
    ("std", "0.3", "std: must be a number"),
    ("lr", 100.0, "lr: must be a number from 1e-12 to 10"),
    ("lr", 1e-320, "lr: must be a number from 1e-12 to 10"),
    ("model_args", {"hidden": 10**7}, "field 'model_args.hidden' must be a whole number from 1 to 16,384"),
    ("model_args", {"hidden": 2.5}, "field 'model_args.hidden' must be a whole number"),
])
def test_the_library_refuses_the_same_numbers(field, value, message):
    with pytest.raises(ValueError, match=message):
        check_config(TrainConfig(**{field: value}))


@pytest.mark.parametrize("split_file", ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"])
def test_an_empty_split_is_a_one_line_data_error(split_file, tmp_path, capsys):
    folder = make_dataset(tmp_path / "data", n_train=64, n_test=32)
    write_idx(folder / split_file, np.zeros((0, 28, 28), np.uint8))
    write_idx(folder / split_file.replace("images-idx3", "labels-idx1"), np.zeros(0, np.uint8))
    assert main(train_argv(folder, tmp_path / "run")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{folder / split_file}: holds no images" in err
    assert not (tmp_path / "run").exists() and leftovers(tmp_path) == []


def test_a_run_that_would_evaluate_more_often_than_metrics_json_holds_is_refused_before_training(data, tmp_path,
                                                                                                 monkeypatch, capsys):
    from mnistlab.limits import MAX_EVALUATIONS

    monkeypatch.setattr(training, "train_one_epoch", lambda *a, **k: pytest.fail("a step was trained"))
    # 256 images in batches of 1, 1,000 epochs, every step: 256,000 evaluations
    assert main(train_argv(data, tmp_path / "run", "--batch-size", "1", "--epochs", "1000", "--eval-every", "1")) == 1
    err = capsys.readouterr().err
    assert err == (f"mnistlab: error: eval_every: evaluating every 1 of 256,000 steps makes 256,000 evaluations, "
                   f"over the limit of {MAX_EVALUATIONS:,} (rows of metrics.json); evaluate every 3 steps or more; "
                   "nothing was saved\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_run_from_and_into_folders_with_undecodable_names_is_read_back(data, tmp_path, capsys):
    """A folder name may hold any byte; config.json and metrics.json record it as text every reader takes back."""
    from mnistlab.checkpoints import load_checkpoint
    from mnistlab.report import load_metrics

    odd_data = Path(os.fsdecode(bytes(tmp_path) + b"/data-\xff\xe9"))
    shutil.copytree(data, odd_data)
    assert main(train_argv(odd_data, tmp_path / "run")) == 0
    checkpoint, metrics = load_checkpoint(tmp_path / "run"), load_metrics(tmp_path / "run")
    assert checkpoint.config["dataset"]["source"] == metrics["dataset"]["source"] == f"{tmp_path}/data-\\xff\\xe9"
    assert metrics["config"]["data_dir"] == f"{tmp_path}/data-\\xff\\xe9"
    assert main(["evaluate", str(tmp_path / "run"), "--data-dir", str(odd_data), "--device", "cpu"]) == 0
    assert main(["report", str(tmp_path / "run"), "--data-dir", str(odd_data)]) == 0
    odd_run = Path(os.fsdecode(bytes(tmp_path) + b"/run-\xfe"))  # the run's own name, in its report.html
    capsys.readouterr()
    assert main([arg for arg in train_argv(odd_data, odd_run) if arg != "--no-report"]) == 0
    out = capsys.readouterr().out  # the name as error lines show it, not as Python holds it (\udcfe)
    assert f"saved {tmp_path}/run-\\xfe " in out and f"wrote {tmp_path}/run-\\xfe/report.html" in out, out
    assert load_metrics(odd_run)["config"]["out"] == f"{tmp_path}/run-\\xfe"
    assert "mnistlab run run-\\xfe" in (odd_run / "report.html").read_text()
    assert "error" not in capsys.readouterr().err


@pytest.mark.parametrize("failure", ["nan-loss", "inf-loss", "nan-weights"])
def test_a_diverging_run_saves_nothing(failure, data, tmp_path, monkeypatch, capsys):
    real = training.train_one_epoch

    def diverging(model, *args, **kwargs):  # train_one_epoch yields (loss, number right, batch size) per step
        for loss, right, n in real(model, *args, **kwargs):
            if failure == "nan-weights":
                model.fc2.bias.data.fill_(float("nan"))
                yield loss, right, n
            else:
                yield torch.full_like(loss, float("nan" if failure == "nan-loss" else "inf")), right, n

    monkeypatch.setattr(training, "train_one_epoch", diverging)
    assert main(train_argv(data, tmp_path / "run")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "diverged" in err and err.strip().endswith("nothing was saved")
    assert list(tmp_path.iterdir()) == []


# --- the figure commands check --out first --------------------------------------------------------------

@pytest.fixture(scope="module")
def run_for_figures(data, tmp_path_factory) -> Path:
    return make_run(data, tmp_path_factory.mktemp("figures") / "run")


@pytest.mark.parametrize("command", [
    ["report", "{run}"], ["plot", "confusion", "{run}"], ["plot", "mistakes", "{run}"], ["plot", "grid", "{run}"],
    ["plot", "curves", "{run}"], ["show", "0"],
])
@pytest.mark.parametrize("bad", ["folder", "inside-a-file"])
def test_a_figure_out_is_checked_before_the_work(command, bad, run_for_figures, data, tmp_path, monkeypatch, capsys):
    import mnistlab.report as report

    def refuse(*args, **kwargs):
        raise AssertionError("the predictions were computed before the output was checked")

    monkeypatch.setattr(report, "predictions_for_run", refuse)
    monkeypatch.setattr(report, "load_metrics", refuse)
    out = tmp_path if bad == "folder" else _file(tmp_path) / "x.png"
    before = tree(tmp_path)
    argv = [part.format(run=run_for_figures) for part in command]
    assert main([*argv, "--data-dir", str(data), "--out", str(out)] if command[0] != "plot" or command[1] != "curves"
                else [*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("is a folder; give a file name" if bad == "folder" else "is a file, not a folder") in err
    assert tree(tmp_path) == before


def test_a_full_disk_while_writing_a_figure_is_one_line(run_for_figures, tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    assert main(["plot", "curves", str(run_for_figures), "--out", str(tmp_path / "c.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"mnistlab: error: {tmp_path / 'c.png'}: cannot write (No space left on device)"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target, message", [
    ("dir", "is a folder; give a file name"),
    ("file/x.png", "is a file, not a folder"),
    ("new/deeper/x.png", None),
    ("x" * 300 + ".png", "file name too long"),
])
def test_check_output_file(target, message, tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    before = tree(tmp_path)
    if message is None:
        assert check_output_file(tmp_path / target) == tmp_path / target
    else:
        with pytest.raises(OutputError, match=message):
            check_output_file(tmp_path / target)
    assert tree(tmp_path) == before


def test_a_signal_inside_publication_waits_until_the_run_is_in_place(old_run, data, tmp_path, monkeypatch, capsys):
    real_replace = os.replace

    def replace(source, destination):
        if ".old-" in str(destination):  # the old run is being moved aside: the worst moment for Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return real_replace(source, destination)

    monkeypatch.setattr(io_module.os, "replace", replace)
    assert main(train_argv(data, old_run, "--overwrite")) == 130
    assert capsys.readouterr().err.strip() == f"mnistlab: interrupted; the complete run was saved in {old_run}"
    assert sorted(p.name for p in old_run.iterdir()) == CLI_FILES and leftovers(tmp_path) == []


def test_signals_deferred_hands_a_signal_on_after_the_block():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with signals_module.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached.append("end of the block")
    assert reached == ["end of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.slow
def test_ctrl_c_while_a_progress_bar_is_built_leaves_no_half_built_bar(monkeypatch):
    """A signal inside tqdm's constructor used to leave a half-built bar whose __del__ printed a traceback."""
    import gc
    import io

    import tqdm.auto

    class Bar(tqdm.auto.tqdm):
        @classmethod
        def _get_free_pos(cls, instance=None):  # called half-way through the constructor, before `pos` is set
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives there
            return super()._get_free_pos(instance)

    unraisable = []  # what Python prints as "Exception ignored in ..." (a traceback on the user's terminal)
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    with pytest.raises(KeyboardInterrupt):
        with signals_module.progress_bar(total=3, file=io.StringIO()):
            pass
    gc.collect()  # a half-built bar complains here, from its __del__: "no attribute 'pos'"
    assert [repr(u.exc_value) for u in unraisable] == []


def test_make_folders_removes_what_it_made_when_a_deeper_one_fails(tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name == "c":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(PermissionError) as error:
        io_module.make_folders(tmp_path / "a" / "b" / "c" / "d")
    assert error.value.filename == str(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []  # a/ and b/ were made, then removed again
    assert io_module.make_folders(tmp_path) == []  # an existing folder: nothing made


@pytest.mark.slow
def test_a_run_under_a_name_that_is_not_utf8_is_read_back(data, tmp_path, capsys):
    """safetensors opens only UTF-8 paths; a byte like 0xff in a folder name must not lock the run out."""
    run = tmp_path / os.fsdecode(b"run-\xff")
    make_run(data, run)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data-dir", str(data)]) == 0
    assert "reproduced exactly" in capsys.readouterr().out
    assert main(["export", str(run)]) == 0 and (run / "model.onnx").is_file()
