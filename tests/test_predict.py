"""`mnistlab predict` and `mnistlab.predict`: real MNIST digits as people present them, and bad files."""

import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import mnistlab
import mnistlab.prediction as prediction
from mnistlab import predict
from mnistlab.cli import main
from mnistlab.data import load_mnist
from mnistlab.prediction import Prediction, collect_images

from .test_preprocessing import png_header_only


def photo(digit: np.ndarray) -> Image.Image:
    """Blue ink on cream paper under light falling off to one side, 112 px, a JPEG at quality 70."""
    ink = np.asarray(Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC), np.float32)[..., None] / 255
    light = np.linspace(1.0, 0.45, 112, dtype=np.float32)[None, :, None]
    rgb = light * ((1 - ink) * np.array([250, 245, 230]) + ink * np.array([25, 35, 140]))
    buffer = io.BytesIO()
    Image.fromarray(rgb.round().astype(np.uint8)).save(buffer, format="JPEG", quality=70)
    return Image.open(buffer)


def off_centre(digit: np.ndarray) -> Image.Image:
    canvas = np.zeros((84, 84), np.uint8)
    canvas[50:78, 6:34] = digit
    return Image.fromarray(canvas)


VARIANTS = {
    "inverted": lambda d: Image.fromarray(255 - d),
    "upscaled": lambda d: Image.fromarray(d).resize((150, 150), Image.Resampling.BICUBIC),
    "off-centre": off_centre,
    "photo": photo,
}


@pytest.fixture(scope="module")
def checkpoint(mnist_mlp):
    return mnistlab.load_checkpoint(mnist_mlp)


@pytest.fixture(scope="module")
def digits(checkpoint) -> tuple[np.ndarray, list[int]]:
    """One test digit of each class, the first the model reads right and sure (p > 0.99) as MNIST gives it."""
    test = load_mnist().test
    with torch.inference_mode():
        x = mnistlab.normalize(test.images[:500], checkpoint.mean, checkpoint.std)
        probabilities = checkpoint.model(x).softmax(1)
    confident = (probabilities.argmax(1) == test.labels[:500]) & (probabilities.amax(1) > 0.99)
    chosen = [int(np.flatnonzero(confident & (test.labels[:500] == k))[0]) for k in range(10)]
    return test.images.numpy()[chosen], list(range(10))


def write(folder, name: str, image: Image.Image) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / name)
    return str(folder / name)


def run_json(capsys, *argv) -> tuple[int, list[dict], str]:
    code = main(["predict", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


@pytest.mark.slow
def test_real_digits_presented_as_people_do_are_read_right(checkpoint, digits, tmp_path, capsys):
    images, labels = digits
    for variant, make in VARIANTS.items():
        for image, label in zip(images, labels, strict=True):
            write(tmp_path / "digits", f"{label}-{variant}.{'jpg' if variant == 'photo' else 'png'}", make(image))
    code, rows, err = run_json(capsys, checkpoint.path, tmp_path / "digits")
    assert code == 0 and err == ""
    assert len(rows) == 10 * len(VARIANTS)
    wrong = [row for row in rows if row["label"] != int(os.path.basename(row["file"])[0])]
    assert wrong == []


@pytest.mark.slow
def test_the_table(checkpoint, digits, tmp_path, capsys):
    images, _ = digits
    seven = write(tmp_path, "seven.png", VARIANTS["inverted"](images[7]))
    two = write(tmp_path, "two.jpg", photo(images[2]))
    assert main(["predict", str(checkpoint.path), seven, two]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["file", "digit", "confidence", "top", "3"]
    assert rows[0].startswith(seven) and rows[0].split()[1] == "7" and rows[0].split()[3] == "7"
    assert rows[1].startswith(two) and rows[1].split()[1] == "2"
    assert len(rows[0].split()) == 3 + 2 * 3  # file, digit, confidence, then 3 × (digit, probability)


@pytest.mark.slow
def test_every_bad_file_gets_its_own_error_and_the_others_still_run(checkpoint, digits, tmp_path, capsys):
    folder = tmp_path / "mixed"
    good = write(folder, "a-good.png", VARIANTS["inverted"](digits[0][3]))
    (folder / "b-notes.png").write_text("these are not pixels\n")
    buffer = io.BytesIO()
    VARIANTS["upscaled"](digits[0][4]).save(buffer, format="PNG")
    (folder / "c-cut.png").write_bytes(buffer.getvalue()[:600])
    (folder / "d-empty.png").write_bytes(b"")
    (folder / "e-bomb.png").write_bytes(png_header_only(9000, 9000))
    (folder / "f-folder.png").mkdir()  # a path that names no file to read
    (folder / "f-loop.png").symlink_to("f-loop.png")  # unreadable, even for root (who ignores chmod 000)
    write(folder, "g-blank.png", Image.new("L", (64, 64), 255))
    also_good = write(folder, "h-good.jpg", photo(digits[0][5]))
    (folder / "readme.txt").write_text("not picked up: a folder gives its image files only")
    code, rows, err = run_json(capsys, checkpoint.path, folder, tmp_path / "missing.png", tmp_path / "none-*.png",
                               folder / "f-folder.png", folder / "f-loop.png")
    assert code == 1
    assert err.splitlines() == [f"mnistlab: skipped {folder}/f-folder.png (a folder)",  # a folder yields regular files
                                f"mnistlab: skipped {folder}/f-loop.png (a symlink loop)",
                                f"mnistlab: no images found in {tmp_path}/none-*.png",
                                f"mnistlab: no images found in {folder}/f-folder.png",  # as an argument, a folder
                                "mnistlab: 7 of 9 files failed"]
    by_name = {os.path.basename(row["file"]): row for row in rows}
    assert list(by_name) == ["a-good.png", "b-notes.png", "c-cut.png", "d-empty.png", "e-bomb.png", "g-blank.png",
                             "h-good.jpg", "missing.png", "f-loop.png"]
    assert by_name["a-good.png"]["label"] == 3 and by_name["h-good.jpg"]["label"] == 5
    errors = {name: row["error"] for name, row in by_name.items() if "error" in row}
    assert errors == {
        "b-notes.png": "not an image (or an unsupported format)",
        "c-cut.png": errors["c-cut.png"],
        "d-empty.png": "not an image (or an unsupported format)",
        "e-bomb.png": "9000×9000 pixels is over the limit of 64,000,000 (a decompression bomb?)",
        "f-loop.png": "cannot read (Too many levels of symbolic links)",  # as an argument, its own row
        "g-blank.png": "no digit found (the image is blank or its marks are too faint)",
        "missing.png": "no such file",
    }
    assert errors["c-cut.png"].startswith("cannot decode") and "truncated" in errors["c-cut.png"]
    assert {good, also_good} == {row["file"] for row in rows if "label" in row}


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads a file whatever its mode")
@pytest.mark.slow
def test_an_unreadable_file(checkpoint, digits, tmp_path, capsys):
    path = write(tmp_path, "locked.png", VARIANTS["inverted"](digits[0][1]))
    os.chmod(path, 0)
    code, rows, _ = run_json(capsys, checkpoint.path, path)
    assert code == 1 and rows == [{"file": path, "error": "cannot read (Permission denied)"}]


def test_folders_globs_and_repeats_are_expanded_in_order(tmp_path):
    for name in ("b.png", "a.PNG", "c.jpeg", "notes.txt", "sub/d.webp", "sub/deeper/e.tif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    t = str(tmp_path)
    assert collect_images([tmp_path]) == [f"{t}/a.PNG", f"{t}/b.png", f"{t}/c.jpeg"]  # not recursive
    assert collect_images([f"{t}/*.png", f"{t}/b.png", f"{t}/**/*.tif"]) == [
        f"{t}/b.png", f"{t}/b.png", f"{t}/sub/deeper/e.tif"]  # each occurrence: repeats are not merged
    assert collect_images([f"{t}/sub", f"{t}/zz*.png", f"{t}/nope.png"]) == [f"{t}/sub/d.webp", f"{t}/nope.png"]


@pytest.mark.slow
def test_json_objects(checkpoint, digits, tmp_path, capsys):
    path = write(tmp_path, "six.png", VARIANTS["off-centre"](digits[0][6]))
    code, rows, _ = run_json(capsys, checkpoint.path, path, "--top-k", "5")
    assert code == 0 and len(rows) == 1
    row = rows[0]
    assert set(row) == {"file", "label", "class", "confidence", "top_k", "probabilities"}
    assert row["file"] == path and row["label"] == 6 and row["class"] == "6"
    assert len(row["probabilities"]) == 10 and abs(sum(row["probabilities"]) - 1) < 1e-4
    assert [t["label"] for t in row["top_k"]][0] == 6 and len(row["top_k"]) == 5
    assert [t["probability"] for t in row["top_k"]] == sorted((t["probability"] for t in row["top_k"]), reverse=True)
    assert row["confidence"] == row["top_k"][0]["probability"] == row["probabilities"][6]


@pytest.mark.slow
def test_save_preprocessed(checkpoint, digits, tmp_path, capsys):
    a_png = write(tmp_path / "in", "a.png", VARIANTS["inverted"](digits[0][8]))
    a_jpg = write(tmp_path / "in", "a.jpg", photo(digits[0][9]))
    blank = write(tmp_path / "in", "blank.png", Image.new("L", (40, 40), 0))
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint.path), a_png, a_jpg, blank, "--save-preprocessed", str(out)]) == 1
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a-2.png", "a.png"]  # nothing for the failure, no temp files
    saved = np.asarray(Image.open(out / "a.png"))
    assert saved.shape == (28, 28) and saved.dtype == np.uint8
    expected = predict(checkpoint, a_png)[0].image
    assert np.array_equal(saved, (expected * 255).round().astype(np.uint8))


@pytest.mark.slow
def test_the_library_api(checkpoint, digits, tmp_path):
    images, _ = digits
    path = write(tmp_path, "four.png", VARIANTS["upscaled"](images[4]))
    pil, tensor = VARIANTS["inverted"](images[1]), torch.from_numpy(images[2])
    results = predict(checkpoint, [path, pil, tensor, tmp_path / "x.png"])
    assert [type(p) for p in results] == [Prediction] * 4
    assert [p.label for p in results] == [4, 1, 2, None]
    assert [p.source for p in results] == [path, "<image 1>", "<image 2>", str(tmp_path / "x.png")]
    first = results[0]
    assert first.ok and first.image.shape == (28, 28) and len(first.probabilities) == 10
    assert first.top_k[0] == (4, first.confidence) and len(first.top_k) == 3
    assert not results[3].ok and results[3].error == "no such file" and results[3].image is None
    assert [p.label for p in predict(checkpoint, torch.from_numpy(images))] == list(range(10))  # an (N, 28, 28) batch
    assert [p.label for p in predict(checkpoint, path)] == [4]
    in_twos = predict(checkpoint, torch.from_numpy(images), batch_size=2, top_k=1)
    at_once = predict(checkpoint, torch.from_numpy(images))
    torch.testing.assert_close(torch.tensor([p.probabilities for p in in_twos]),
                               torch.tensor([p.probabilities for p in at_once]))
    assert mnistlab.Prediction is Prediction


@pytest.mark.slow
def test_thresholded_real_digits_read_as_the_same_digits(checkpoint, digits):
    """A boolean image (False background, True ink), as `image > 127` gives, is a digit like any other."""
    images, labels = digits
    thresholded = images > 127
    as_arrays = predict(checkpoint, list(thresholded))
    as_batch = predict(checkpoint, torch.from_numpy(thresholded))  # an (N, 28, 28) bool tensor
    channels = predict(checkpoint, [torch.from_numpy(image)[None] for image in thresholded])  # (1, H, W) each
    for results in (as_arrays, as_batch, channels):
        assert [p.error for p in results] == [None] * 10
        assert [p.label for p in results] == labels
    assert [p.label for p in predict(checkpoint, list(thresholded), invert="no")] == labels  # True is ink


@pytest.mark.slow
def test_a_progress_bar_only_past_a_few_hundred_images(checkpoint, digits, capsys):
    batch = torch.from_numpy(digits[0][:1]).repeat(prediction.PROGRESS_MIN_FILES + 1, 1, 1)
    predict(checkpoint, batch[:20])
    assert capsys.readouterr().err == ""
    predict(checkpoint, batch)
    assert "image" in capsys.readouterr().err


@pytest.mark.slow
def test_invert_flag(checkpoint, digits, tmp_path, capsys):
    dark_on_light = write(tmp_path, "nine.png", VARIANTS["inverted"](digits[0][9]))
    code, rows, _ = run_json(capsys, checkpoint.path, dark_on_light, "--invert", "yes")
    assert code == 0 and rows[0]["label"] == 9
    code, rows, _ = run_json(capsys, checkpoint.path, dark_on_light, "--invert", "no")
    assert code == 1 and rows[0]["error"].startswith("no digit found")


@pytest.mark.parametrize("argv, message", [
    (["--top-k", "0"], "argument --top-k: must be from 1 to 10, got 0"),
    (["--top-k", "11"], "argument --top-k: must be from 1 to 10, got 11"),
    (["--invert", "maybe"], "argument --invert: invalid choice: 'maybe'"),
    (["--batch-size", "0"], "argument --batch-size: must be from 1 to 65,536, got 0"),
    (["--device", "tpu"], "argument --device"),
])
def test_bad_flags_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", "run", "x.png", *argv])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_checkpoint_exits_1(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope"), str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (f"mnistlab: error: {tmp_path / 'nope'}: no such checkpoint; the "
                                               "shipped models need no training: pretrained:cnn, pretrained:cnn_small, "
                                               "pretrained:mlp (`mnistlab models`)")


def test_predict_help_quotes_the_defaults(capsys):
    # That `predict --help` needs no torch is checked with every command's help in test_cli.py.
    with pytest.raises(SystemExit) as info:
        main(["predict", "--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    assert "--top-k N" in help_text and "(default: 3)" in help_text
    assert "--save-preprocessed DIR" in help_text


@pytest.mark.parametrize("options, message", [
    ({"invert": "bogus"}, r"invert: expected one of auto, yes, no, got 'bogus'"),
    ({"top_k": 0}, "top_k: must be a whole number from 1 to 10, got 0"),
    ({"top_k": 11}, "top_k: must be a whole number from 1 to 10"),
    ({"batch_size": 10**30}, "batch_size: must be a whole number from 1 to 65,536"),
    ({"batch_size": 2.5}, "batch_size: must be a whole number"),
])
@pytest.mark.slow
def test_a_bad_option_is_refused_at_the_call(options, message, checkpoint, tmp_path):
    never_read = tmp_path / "missing.png"  # the call fails before any image is read: no per-image error
    with pytest.raises(ValueError, match=message):
        prediction.predict(checkpoint, [never_read], **options)
    with pytest.raises(ValueError, match=message):
        predict(checkpoint, np.zeros((28, 28), np.uint8), **options)
