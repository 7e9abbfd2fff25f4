"""`mnistlab finetune`: the held-out split, the run folder it writes, and every kind of bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from mnistlab.checkpoints import load_checkpoint
from mnistlab.cli import main
from mnistlab.data import load_split
from mnistlab.errors import CheckpointError
from mnistlab.finetune import split_held_out
from mnistlab.training import evaluate

from .conftest import make_dataset


def digit_png(digit: int, variant: int) -> Image.Image:
    """A printed digit, shifted and turned a little per variant: a stand-in for one person's handwriting."""
    image = Image.new("L", (64, 64), 255)
    font = ImageFont.load_default(size=40)
    ImageDraw.Draw(image).text((20 + variant % 3 * 3, 8 + variant % 2 * 4), str(digit), fill=0, font=font)
    return image.rotate(5 * (variant % 3 - 1), fillcolor=255)


def person_folder(root: Path, per_digit: int = 3) -> Path:
    folder = root / "mine"
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True)
        for variant in range(per_digit):
            digit_png(digit, variant).save(folder / str(digit) / f"d{digit}-{variant}.png")
    return folder


def finetune(run: Path, data: Path, images: Path, out: Path, *flags: str) -> int:
    return main(["finetune", str(run), "--images", str(images), "--out", str(out), "--data-dir", str(data),
                 "--epochs", "2", "--no-progress", *flags])


def test_the_split_is_stratified_and_the_seed_reproduces_it():
    labels = torch.tensor([d for d in range(10) for _ in range(2 + d)])  # 2 … 11 images a digit
    held = split_held_out(labels, 0.3, seed=7)
    for digit in range(10):
        count = 2 + digit
        assert held[labels == digit].sum() == min(max(1, round(0.3 * count)), count - 1)  # never none, never all
    assert torch.equal(held, split_held_out(labels, 0.3, seed=7))
    assert not torch.equal(held, split_held_out(labels, 0.3, seed=8))
    assert not split_held_out(labels, 0, seed=7).any()


@pytest.mark.slow
def test_finetune_writes_a_run_that_the_other_commands_take(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    images = person_folder(tmp_path)
    out = tmp_path / "adapted"
    assert finetune(run, data, images, out, "--seed", "3") == 0
    printed = capsys.readouterr().out
    assert "20 of your images trained on, 10 held out" in printed
    assert "your held-out images: " in printed and f"saved {out}" in printed
    assert "before (recorded for the same test files)" in printed  # the base was evaluated on these very files

    checkpoint = load_checkpoint(out)  # the normal loader keeps the record: an optional, checked field
    record = checkpoint.config["finetune"]
    assert record["base"] == str(run) and record["seed"] == 3 and record["trained_images"] == 20
    assert len(record["base_sha256"]) == 64 and len(record["images_sha256"]) == 64
    labels = torch.tensor([d for d in range(10) for _ in range(3)])
    held = split_held_out(labels, 0.3, seed=3)
    names = [f"d{d}-{v}.png" for d in range(10) for v in range(3)]
    assert record["held_out"] == {str(d): [n for n, h, lab in zip(names, held, labels, strict=True) if h and lab == d]
                                  for d in range(10)}
    assert record["after"]["test_acc"] == checkpoint.metrics["test_acc"]
    assert checkpoint.temperature == load_checkpoint(run).temperature  # its base's calibration, said so
    assert str(run) in checkpoint.config["calibration"]["data"]

    assert main(["evaluate", str(out), "--data-dir", str(data)]) == 0
    assert "reproduced exactly" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--images", str(images)]) == 0
    assert main(["predict", str(out), str(images / "7" / "d7-0.png")]) == 0
    assert main(["report", str(out), "--data-dir", str(data), "--out", str(tmp_path / "report.html")]) == 0

    # the same images and seed give the same record, in a run written over the first
    assert finetune(run, data, images, out, "--seed", "3") == 1
    assert "already holds a run" in capsys.readouterr().err
    assert finetune(run, data, images, out, "--seed", "3", "--overwrite") == 0
    assert load_checkpoint(out).config["finetune"]["held_out"] == record["held_out"]


def test_the_base_is_evaluated_again_on_other_test_files(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    other = make_dataset(tmp_path / "other", seed=5)
    assert finetune(run, other, person_folder(tmp_path, per_digit=2), tmp_path / "out") == 0
    printed = capsys.readouterr().out
    assert "test set: " in printed and "recorded" not in printed
    base, (test, _) = load_checkpoint(run), load_split(other, "test")
    assert load_checkpoint(tmp_path / "out").config["finetune"]["before"]["test_acc"] == evaluate(
        base.model, test, base.mean, base.std)[1]


def test_unreadable_files_are_listed_apart_and_left_out(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    images = person_folder(tmp_path)
    (images / "4" / "notes.png").write_text("not an image")
    (images / "5" / "blank.png").write_bytes(_png(Image.new("L", (30, 30), 255)))
    os.mkfifo(images / "6" / "pipe.png")
    (images / "7" / "link.png").symlink_to(images / "7" / "d7-0.png")  # not read: a symlink is never followed
    assert finetune(run, data, images, tmp_path / "out") == 0
    captured = capsys.readouterr()
    assert f"could not read {images / '4' / 'notes.png'}: " in captured.err
    assert f"could not read {images / '5' / 'blank.png'}: no digit found" in captured.err
    assert captured.err.count("\n") == 2  # the FIFO and the link are not images of the folder
    assert "2 images could not be read (listed above) and were left out" in captured.out
    assert load_checkpoint(tmp_path / "out").config["finetune"]["unreadable_images"] == 2


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _short_digit(images: Path) -> None:
    for name in ("d3-1.png", "d3-2.png"):
        (images / "3" / name).unlink()


def _unreadable_digit(images: Path) -> None:
    (images / "3" / "d3-1.png").write_text("no")
    (images / "3" / "d3-2.png").write_bytes(b"")


def _wrong_classes(images: Path) -> None:
    for digit in range(10):
        (images / str(digit)).rename(images / f"class-{digit}")


def _fifo(images: Path) -> None:
    shutil.rmtree(images)
    os.mkfifo(images)


def _symlinked_digit(images: Path) -> None:  # a digit folder that points elsewhere is not read
    shutil.rmtree(images / "3")
    (images / "3").symlink_to(images / "4", target_is_directory=True)


def _empty(images: Path) -> None:
    for digit in range(10):
        for file in (images / str(digit)).iterdir():
            file.unlink()


@pytest.mark.parametrize("spoil, message", [
    (_short_digit, "mine/3: 1 readable image; each digit needs at least 2"),
    (_unreadable_digit, "mine/3: 1 readable image (2 more could not be read); each digit needs at least 2"),
    (_wrong_classes, "no image files in sub-folders 0/ … 9/ (found other sub-folders: class-0, class-1"),
    (_empty, "no image files in sub-folders 0/ … 9/"),
    (_fifo, "mine: expected a folder with sub-folders 0/ … 9/"),
    (_symlinked_digit, "mine/3: 0 readable images; each digit needs at least 2"),
    (lambda images: os.rename(images, images.with_name("gone")), "mine: expected a folder with sub-folders 0/ … 9/"),
], ids=["one-image", "unreadable", "wrong-classes", "empty", "fifo", "symlinked-digit", "missing"])
def test_a_bad_images_folder_gets_one_line_and_nothing_is_written(tiny_run, tmp_path, capsys, spoil, message):
    run, data = tiny_run
    images = person_folder(tmp_path)
    spoil(images)
    assert finetune(run, data, images, tmp_path / "out") == 1
    err = capsys.readouterr().err.splitlines()
    assert message in err[-1] and err[-1].startswith("mnistlab: error: ") and len(err) <= 3
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("base, message", [
    ("{tmp}/nothing", "no such checkpoint"),
    ("{tmp}/mine", "not a checkpoint (missing config.json)"),
    ("{tmp}/mine/0/d0-0.png", "expected a checkpoint folder"),
    ("{tmp}/model.onnx", ".onnx"),
])
def test_a_base_that_is_not_a_model_gets_one_line(tiny_run, tmp_path, capsys, base, message):
    run, data = tiny_run
    images = person_folder(tmp_path, per_digit=2)
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    assert finetune(Path(base.format(tmp=tmp_path)), data, images, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_the_base_run_cannot_be_its_own_output(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    assert finetune(run, data, person_folder(tmp_path), run, "--overwrite") == 1
    assert "is the base run itself" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--holdout", "0.95"], "--holdout: must be a number from 0 to 0.9"),
    (["--holdout", "nan"], "--holdout: must be finite"),
    (["--epochs", "0"], "--epochs: must be from 1"),
    (["--lr", "1e400"], "--lr: must be finite"),
    (["--batch-size", "-3"], "--batch-size: must be from 1"),
    (["--mix", "65"], "--mix: must be from 0 to 64"),
    (["--seed", "x"], "--seed: expected a whole number"),
    (["--device", "tpu"], "--device: expected one of"),
])
def test_bad_flags_are_refused_before_anything_is_read(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as info:
        main(["finetune", "base", "--images", "dir", "--out", str(tmp_path / "out"), *flags])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_a_record_with_a_bad_finetune_field_is_refused_by_the_loader(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    assert finetune(run, data, person_folder(tmp_path, per_digit=2), tmp_path / "out") == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    config["finetune"]["held_out"]["3"] = "d3-0.png"
    (tmp_path / "out" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"field 'finetune.held_out\['3'\]' must be a list"):
        load_checkpoint(tmp_path / "out")


def test_too_many_images_or_too_large_files_are_refused_before_decoding(tiny_run, tmp_path, capsys, monkeypatch):
    run, data = tiny_run
    images = person_folder(tmp_path)
    monkeypatch.setattr("mnistlab.finetune.MAX_FINETUNE_IMAGES", 29)
    assert finetune(run, data, images, tmp_path / "out") == 1
    assert "mine: 30 images; at most 29 can be fine-tuned on" in capsys.readouterr().err
    monkeypatch.setattr("mnistlab.finetune.MAX_FINETUNE_IMAGES", 30)
    big = images / "0" / "d0-0.png"
    monkeypatch.setattr("mnistlab.finetune.MAX_IMAGE_BYTES", big.stat().st_size - 1)
    assert finetune(run, data, images, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"could not read {big}: too large" in err and err.splitlines()[-1].startswith("mnistlab: error: ")
    assert not (tmp_path / "out").exists()


def test_names_that_are_not_utf8_are_recorded_so_that_the_run_loads(tiny_run, tmp_path):
    run, data = tiny_run
    images = person_folder(tmp_path, per_digit=2)
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/mine\xff"))
    images.rename(odd)
    (odd / "5" / "d5-0.png").rename(odd / "5" / os.fsdecode(b"\xfe.png"))
    assert finetune(run, data, odd, tmp_path / "out", "--seed", "2") == 0
    record = load_checkpoint(tmp_path / "out").config["finetune"]
    assert record["images"].endswith("mine\\xff")
    assert record["held_out"]["5"] in (["\\xfe.png"], ["d5-1.png"])


# --- the first error names what the user got wrong, in the language of the interface ------------------------------

def test_a_missing_images_folder_is_named_before_an_existing_run(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    out = tmp_path / "runs" / "mine"
    shutil.copytree(run, out)  # an earlier run in the way, and no my-digits/ at all
    assert finetune(run, data, tmp_path / "my-digits", out) == 1
    err = capsys.readouterr().err
    assert "my-digits: expected a folder with sub-folders 0/ … 9/" in err and "already holds a run" not in err
    assert finetune(run, tmp_path / "no-data", person_folder(tmp_path, per_digit=2), out) == 1
    err = capsys.readouterr().err
    assert "no-data: data directory not found" in err and "already holds a run" not in err


def test_an_existing_run_is_named_as_a_flag_on_the_command_line_and_an_argument_in_python(tiny_run, tmp_path,
                                                                                         capsys):
    from mnistlab import OutputError
    from mnistlab.config import FinetuneConfig
    from mnistlab.finetune import finetune as finetune_in_python

    run, data = tiny_run
    images, out = person_folder(tmp_path, per_digit=2), tmp_path / "runs" / "mine"
    shutil.copytree(run, out)
    assert finetune(run, data, images, out) == 1
    err = capsys.readouterr().err
    assert f"{out}: already holds a run; use --overwrite to replace it, or choose another folder" in err
    assert "overwrite=True" not in err
    config = FinetuneConfig(base=str(run), images=str(images), out=str(out), data_dir=str(data), progress=False)
    with pytest.raises(OutputError, match=r"already holds a run; pass overwrite=True to replace it") as error:
        finetune_in_python(config)
    assert "--overwrite" not in str(error.value)


def test_a_fine_tuned_run_may_not_be_named_like_a_shipped_model(tiny_run, tmp_path, capsys, monkeypatch):
    run, data = tiny_run
    monkeypatch.chdir(tmp_path)
    assert finetune(run, data, person_folder(tmp_path, per_digit=2), Path("runs/pretrained:cnn-mine")) == 1
    assert "runs/pretrained:cnn-mine: a run folder's name may not start with 'pretrained:'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
