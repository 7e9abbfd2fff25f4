"""`mnistlab read` and `mnistlab.read`: numbers composed from MNIST test digits, and hostile pictures."""

import glob
import json
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

import mnistlab
from mnistlab.cli import main
from mnistlab.data import load_mnist
from mnistlab.segmentation import MAX_MARKS

from .test_preprocessing import png_header_only

SCALE = 3  # the test digits are drawn 84 px tall


@pytest.fixture(scope="module")
def model():
    return mnistlab.load_model("pretrained:cnn")


@pytest.fixture(scope="module")
def samples(model) -> dict[int, np.ndarray]:
    """One MNIST test digit of each class that the model reads right and sure (p > 0.9) alone on paper."""
    test = load_mnist().test
    images, labels = test.images[:300].numpy(), test.labels[:300].numpy()
    found = {}
    for image, label in zip(images, labels, strict=True):
        if int(label) not in found:
            p = mnistlab.predict(model, image)[0]
            if p.label == label and p.confidence > 0.9:
                found[int(label)] = image
    assert len(found) == 10
    return found


def line(samples: dict[int, np.ndarray], number: str, gap: float = 0.3, slant: float = 0.0,
         height: int = 28 * SCALE) -> np.ndarray:
    """The number written in a row, dark on light: uint8 (H, W); `gap` and `slant` as fractions of `height`."""
    digits = [np.asarray(Image.fromarray(samples[int(c)]).resize((height, height), Image.Resampling.BICUBIC))
              for c in number]
    tight = [d[:, np.flatnonzero(d.max(0) > 40)[0]:np.flatnonzero(d.max(0) > 40)[-1] + 1] for d in digits]
    width = sum(t.shape[1] for t in tight) + int(gap * height) * (len(tight) - 1) + 2 * height
    sheet = np.zeros((2 * height + int(abs(slant) * width), width), np.uint8)
    x = height
    for t in tight:
        y = int(height / 2 + slant * (width - x)) if slant > 0 else int(height / 2 - slant * x)
        region = sheet[y:y + height, x:x + t.shape[1]]
        np.maximum(region, t, out=region)
        x += t.shape[1] + int(gap * height)
    return 255 - sheet


def test_a_number_is_read_left_to_right_with_boxes_in_the_pictures_pixels(model, samples):
    picture = line(samples, "2903")
    (reading,) = mnistlab.read(model, picture)
    assert reading.text == "2903" and reading.error is None
    lefts = [d.box[0] for d in reading.digits]
    assert lefts == sorted(lefts)
    for d in reading.digits:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= picture.shape[1] and 0 <= y0 < y1 <= picture.shape[0]
        assert 0.5 < d.confidence <= 1
    assert reading.to_dict() == {"file": "<image 0>", "text": "2903", "error": None,
                                 "digits": [{"label": d.label, "confidence": round(d.confidence, 6), "box": d.box}
                                            for d in reading.digits]}


@pytest.mark.parametrize("number, gap, slant", [
    ("1234567", 0.6, 0.0),  # wide apart
    ("4817", 0.1, 0.15),  # a rising line
    ("5960", 0.2, -0.12),  # a falling line
    ("50", -0.06, 0.0),  # touching: the 5's bar runs into the 0
    ("00", -0.1, 0.0),  # two 0s that overlap
    ("38", -0.05, 0.0),
])
def test_numbers_as_people_write_them(model, samples, number, gap, slant):
    (reading,) = mnistlab.read(model, line(samples, number, gap, slant))
    assert reading.text == number, reading


def test_digits_of_different_sizes(model, samples):
    small, large = line(samples, "7", height=60), line(samples, "4", height=110)
    sheet = np.full((small.shape[0] + large.shape[0], small.shape[1] + large.shape[1]), 255, np.uint8)
    sheet[:small.shape[0], :small.shape[1]] = small
    sheet[small.shape[0] // 2:small.shape[0] // 2 + large.shape[0], small.shape[1] - 50:small.shape[1] - 50 +
          large.shape[1]] = np.minimum(sheet[small.shape[0] // 2:small.shape[0] // 2 + large.shape[0],
                                             small.shape[1] - 50:small.shape[1] - 50 + large.shape[1]], large)
    assert mnistlab.read(model, sheet)[0].text == "74"


def test_a_digit_in_two_strokes_is_one_digit(model, samples):
    picture = line(samples, "45")
    five = line(samples, "5")[:, 28 * SCALE:-28 * SCALE]  # the 5 alone, as the line's last digit
    left = picture.shape[1] - 28 * SCALE - five.shape[1]
    rows = np.flatnonzero((five < 128).any(1))
    picture[rows[0] + 14:rows[0] + 19, left:] = 255  # a gap under the 5's bar: two strokes
    assert mnistlab.read(model, picture)[0].text == "45"


def test_a_bar_drawn_apart_and_past_its_digit_is_no_digit_of_its_own(model, samples):
    """A 5 whose top bar is a stroke of its own, running on past the 5 towards the next digit: the bar's
    overhang is in no digit, and is left out; the number is still read."""
    picture = line(samples, "357", gap=0.6)
    columns = np.flatnonzero((picture < 128).any(0))
    starts = columns[np.r_[0, np.flatnonzero(np.diff(columns) > 1) + 1]]
    stops = columns[np.r_[np.flatnonzero(np.diff(columns) > 1), -1]] + 1
    left, right = starts[1], stops[1]  # the 5
    rows = np.flatnonzero((picture[:, left:right] < 128).any(1))
    picture[rows[0] + 10:rows[0] + 15, left:right] = 255  # a gap under the bar: two strokes
    picture[rows[0]:rows[0] + 6, (left + right) // 2:right + (starts[2] - right) * 3 // 4] = 0  # the bar runs on
    assert mnistlab.read(model, picture)[0].text == "357"


@pytest.mark.parametrize("index", [7454, 694])
@pytest.mark.parametrize("after", [1, 2, 9])
def test_a_5_whose_bar_is_a_stroke_of_its_own_is_one_digit(model, samples, index, after):
    """MNIST test digits 7454 and 694, 5s whose top bar is a stroke of its own, written as tall as the next
    digit, as a thin pen line: 7454's bar runs on past the body (the digit is 1.4 times as wide as it is tall),
    694's has paper between it and the body. Their bodies alone read as a 3 and a 1."""
    five = load_mnist().test.images[index].numpy()
    rows, cols = np.flatnonzero(five.max(1)), np.flatnonzero(five.max(0))
    tight = Image.fromarray(five[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    picture = line(samples, str(after), height=40 * SCALE)  # its digits about 84 px tall
    ink = np.flatnonzero((picture < 128).any(1))
    height = ink[-1] + 1 - ink[0]
    wide = tight.resize((round(tight.width * height / tight.height), height), Image.Resampling.BICUBIC)
    pen = (np.clip(np.asarray(wide, np.float32) / 255 / 0.3 - 1, 0, 1) * 255).astype(np.uint8)  # a thin pen line
    written = np.full((picture.shape[0], pen.shape[1] + height), 255, np.uint8)
    written[ink[0]:ink[0] + height, height:] = 255 - pen
    assert mnistlab.read(model, np.hstack([written, picture]))[0].text == f"5{after}"


@pytest.mark.parametrize("digit, stretch", [("3", 1.6), ("6", 1.8), ("0", 2.0)])
def test_a_wide_digit_is_one_digit(model, samples, digit, stretch):
    """A digit drawn wider than usual (a 0 twice as wide) is read as one digit, not cut into two."""
    wide = Image.fromarray(line(samples, digit))
    wide = np.asarray(wide.resize((int(wide.width * stretch), wide.height)))
    ones = line(samples, "101")
    assert mnistlab.read(model, np.hstack([ones, wide, ones]))[0].text == f"101{digit}101"


@pytest.mark.parametrize("mark", ["hash", "scribble", "cross"])
def test_a_mark_that_is_no_digit_is_left_out(model, samples, mark):
    """A mark between the digits in which the model's "not a digit" rule finds no digit is not read as one;
    with `reject="off"` it is, as the digit it looks most like."""
    picture = Image.fromarray(line(samples, "74", gap=1.4))
    ink = np.flatnonzero((np.asarray(picture) < 128).any(0))
    left = ink[np.argmax(np.diff(ink))] + 1  # the paper between the two digits
    right = ink[np.argmax(np.diff(ink)) + 1]
    rows = np.flatnonzero((np.asarray(picture) < 128).any(1))
    middle = (left + right) // 2
    x0, x1, y0, y1 = middle - 22, middle + 22, rows[0] + 4, rows[-1] - 4  # narrower than a digit is tall
    pen = ImageDraw.Draw(picture)
    if mark == "hash":
        for t in (0.3, 0.7):
            pen.line([(x0, y0 + t * (y1 - y0)), (x1, y0 + t * (y1 - y0))], fill=0, width=7)
            pen.line([(x0 + t * (x1 - x0) + 8, y0), (x0 + t * (x1 - x0) - 8, y1)], fill=0, width=7)
    elif mark == "cross":
        pen.line([(x0, y0), (x1, y1)], fill=0, width=7)
        pen.line([(x1, y0), (x0, y1)], fill=0, width=7)
    else:
        rng = np.random.default_rng(3)
        points = [(x0 + rng.uniform() * (x1 - x0), y0 + rng.uniform() * (y1 - y0)) for _ in range(12)]
        pen.line(points, fill=0, width=7, joint="curve")
    (reading,) = mnistlab.read(model, picture)
    assert reading.text == "74"
    assert len(mnistlab.read(model, picture, reject="off")[0].text) == 3


def test_specks_and_dots_are_left_out(model, samples):
    picture = line(samples, "362")
    rng = np.random.default_rng(0)
    for y, x in zip(rng.integers(0, picture.shape[0] - 3, 400), rng.integers(0, picture.shape[1] - 3, 400),
                    strict=True):
        picture[y:y + 2, x:x + 2] = 0
    assert mnistlab.read(model, picture)[0].text == "362"


@pytest.mark.parametrize("side", [12, 24])  # a speck; a dot too large for one, yet too short to be a digit
def test_a_decimal_point_is_left_out(model, samples, side):
    picture = line(samples, "314", gap=0.5)
    columns = np.flatnonzero((picture < 128).any(0))
    rows = np.flatnonzero((picture < 128).any(1))
    three = np.flatnonzero((line(samples, "3") < 128).any(0))
    x = columns[0] + len(three) + 21 - side // 2  # half-way between the 3 and the 1
    picture[rows[-1] - side:rows[-1], x:x + side] = 0
    assert mnistlab.read(model, picture)[0].text == "314"


@pytest.mark.parametrize("path", sorted(glob.glob("examples/digits/*")))
def test_a_picture_of_one_digit_reads_as_predict_reads_it(model, path):
    (reading,), (prediction,) = mnistlab.read(model, path), mnistlab.predict(model, path)
    if prediction.ok:
        assert reading.text == str(prediction.label)
        assert reading.digits[0].confidence == pytest.approx(prediction.confidence, abs=0.02)
    else:
        assert reading.text is None and reading.error.startswith("no number found")


def test_an_empty_page(model):
    (reading,) = mnistlab.read(model, np.full((300, 800), 240, np.uint8))
    assert reading.text is None and reading.digits == []
    assert reading.error.startswith("no number found")
    assert reading.to_dict()["text"] is None


def test_thousands_of_marks_are_refused_in_bounded_time(model):
    page = np.full((1000, 1000), 255, np.uint8)
    for y in range(0, 1000, 20):  # 2,500 blots of the same size: none is a speck
        for x in range(0, 1000, 20):
            page[y + 5:y + 15, x + 5:x + 15] = 0
    started = time.perf_counter()
    (reading,) = mnistlab.read(model, page)
    assert time.perf_counter() - started < 10
    assert reading.text is None and f"more than the {MAX_MARKS}" in reading.error


def test_a_20000_pixel_wide_line_is_worked_on_at_a_bounded_size(model, samples):
    number = line(samples, "2903", height=200)
    wide = np.full((number.shape[0], 20_000), 255, np.uint8)
    wide[:, 8000:8000 + number.shape[1]] = number
    started = time.perf_counter()
    (reading,) = mnistlab.read(model, wide)
    assert time.perf_counter() - started < 10
    assert reading.text == "2903"
    assert all(8000 <= d.box[0] < d.box[2] <= 8000 + number.shape[1] for d in reading.digits)


def test_bad_inputs_come_back_with_their_error(model, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(90_000, 90_000))
    notes = tmp_path / "notes.png"
    notes.write_text("not pixels")
    readings = mnistlab.read(model, [bomb, notes, tmp_path / "missing.png", np.zeros((2, 2, 2, 2))])
    assert [r.text for r in readings] == [None] * 4
    assert "decompression bomb" in readings[0].error and "not an image" in readings[1].error
    assert "no such file" in readings[2].error and "expected an image" in readings[3].error
    with pytest.raises(ValueError, match="invert"):
        mnistlab.read(model, np.zeros((28, 28)), invert="maybe")
    for bad in ("loose", "", None, 1, "NORMAL"):
        with pytest.raises(ValueError, match="reject must be one of off, normal, strict"):
            mnistlab.read(model, np.zeros((28, 28)), reject=bad)


def test_the_command(samples, tmp_path, capsys):
    Image.fromarray(line(samples, "716")).save(tmp_path / "number.png")
    assert main(["read", "pretrained:cnn", str(tmp_path)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["file", "number", "digits"] and row.split()[1] == "716"

    Image.new("L", (200, 100), 255).save(tmp_path / "blank.png")
    assert main(["read", "pretrained:cnn", str(tmp_path), "--json"]) == 1
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert [set(r) for r in rows] == [{"file", "text", "digits", "error"}] * 2
    assert rows[0]["text"] is None and rows[0]["error"].startswith("no number found")
    assert rows[1]["text"] == "716" and [set(d) for d in rows[1]["digits"]] == [{"label", "confidence", "box"}] * 3
    assert "no number read in 1 of 2 files" in err


def test_the_command_on_bad_arguments_says_one_line(tmp_path, capsys):
    assert main(["read", "pretrained:cnn", str(tmp_path / "nothing-*.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mnistlab: error: no images found") and "Traceback" not in err
    for bad in ("loose", "", "Normal"):
        with pytest.raises(SystemExit) as exit_:
            main(["read", "pretrained:cnn", str(tmp_path), "--reject", bad])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "argument --reject: invalid choice" in err and "Traceback" not in err


def test_boxes_draws_each_picture_with_its_readings(samples, tmp_path, capsys):
    from mnistlab.number_boxes import BOX_COLOUR

    for folder in ("a", "b"):  # two files of one name: the second is written as number-2.png
        (tmp_path / folder).mkdir()
        Image.fromarray(line(samples, "716")).save(tmp_path / folder / "number.png")
    Image.new("L", (200, 100), 255).save(tmp_path / "a" / "blank.png")
    out = tmp_path / "boxes" / "new"
    assert main(["read", "pretrained:cnn", str(tmp_path / "a"), str(tmp_path / "b"), "--boxes", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"wrote {out / 'number.png'}" in printed and f"wrote {out / 'number-2.png'}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["number-2.png", "number.png"]  # no blank, no temporary file
    drawn = Image.open(out / "number.png")
    picture = Image.open(tmp_path / "a" / "number.png")
    assert (drawn.mode, drawn.size) == ("RGB", picture.size)
    (reading,) = mnistlab.read(mnistlab.load_model("pretrained:cnn"), tmp_path / "a" / "number.png")
    pixels = np.asarray(drawn)
    for digit in reading.digits:
        x0, y0, x1, y1 = digit.box
        assert (pixels[(y0 + y1) // 2, x0] == BOX_COLOUR).all() and (pixels[y1 - 1, (x0 + x1) // 2] == BOX_COLOUR).all()


def test_boxes_into_a_file_is_refused_before_the_work(samples, tmp_path, capsys):
    Image.fromarray(line(samples, "716")).save(tmp_path / "number.png")
    (tmp_path / "taken").write_text("a file, not a folder")
    assert main(["read", "pretrained:cnn", str(tmp_path / "number.png"), "--boxes", str(tmp_path / "taken")]) != 0
    out, err = capsys.readouterr()
    assert out == "" and "taken" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P"])
def test_boxes_are_drawn_on_a_picture_of_any_mode(mode):
    from mnistlab.number_boxes import BOX_COLOUR, draw_boxes
    from mnistlab.reading import Digit, Reading

    picture = Image.new("L", (120, 60), 200).convert(mode)
    drawn = draw_boxes(picture, Reading("x.png", text="7", digits=[Digit(7, 0.9, [40, 20, 70, 55])]))
    assert (drawn.mode, drawn.size) == ("RGB", (120, 60))
    assert drawn.getpixel((40, 40)) == BOX_COLOUR and drawn.getpixel((100, 5)) != BOX_COLOUR


class Tempered:
    """A model whose probabilities are temperature-scaled, as a calibrated model's are."""

    def __init__(self, model, factor: float):
        self.model, self.factor = model, factor

    @property
    def temperature(self) -> float:
        return self.model.temperature * self.factor

    def probabilities(self, pixels):
        logits = np.log(np.maximum(self.model.probabilities(pixels), 1e-12)) / self.factor
        odds = np.exp(logits - logits.max(1, keepdims=True))
        return odds / odds.sum(1, keepdims=True)

    def __getattr__(self, name: str):
        return getattr(self.model, name)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sharper_or_softer_probabilities_read_the_same_numbers(model, samples, temperature):
    written = (("4817", 0.1), ("38", -0.05), ("2903", 0.0), ("5061", 0.3))
    pictures = [line(samples, number, gap=gap) for number, gap in written]
    plain = [r.text for r in mnistlab.read(model, pictures)]
    assert plain == ["4817", "38", "2903", "5061"]
    assert [r.text for r in mnistlab.read(Tempered(model, temperature), pictures)] == plain
