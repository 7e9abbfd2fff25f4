"""Each preprocessing step on synthetic drawings, the image modes and files, and MNIST pass-through."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw

import mnistlab
import mnistlab.ink as ink
import mnistlab.preprocessing as preprocessing
from mnistlab.data import load_mnist, normalize
from mnistlab.preprocessing import (
    CENTRE,
    DIGIT_BOX,
    ImageError,
    NoDigitError,
    centre_by_mass,
    find_digit,
    ink_is_dark,
    level_background,
    load_image,
    preprocess,
    stretch_contrast,
    stroke_width,
    to_grayscale,
)

SEVEN = [(0.2, 0.15), (0.8, 0.15), (0.45, 0.9)]  # a "7" as a polyline, in fractions of its box


def draw(size=(200, 200), box=(40, 30, 160, 170), width=12, ink=255, paper=0, mode="L", shape=SEVEN) -> Image.Image:
    """A white-on-black (by default) "7" drawn in `box` (left, top, right, bottom)."""
    image = Image.new(mode, size, paper)
    left, top, right, bottom = box
    points = [(left + x * (right - left), top + y * (bottom - top)) for x, y in shape]
    ImageDraw.Draw(image).line(points, fill=ink, width=width, joint="curve")
    return image


def centre_of_mass(x: torch.Tensor) -> tuple[float, float]:
    x = x.double()
    rows, cols = torch.arange(x.shape[0], dtype=torch.float64), torch.arange(x.shape[1], dtype=torch.float64)
    return float(x.sum(1) @ rows / x.sum()), float(x.sum(0) @ cols / x.sum())


def extent(x: torch.Tensor, threshold: float = 0.0) -> tuple[int, int]:
    """Height and width of the pixels above `threshold`."""
    rows, cols = torch.nonzero(x.sum(1) > threshold), torch.nonzero(x.sum(0) > threshold)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


# --- the result's convention ---------------------------------------------------------------------

def test_output_is_28x28_float_white_on_black():
    out = preprocess(draw())
    assert out.shape == (28, 28) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1 and out.max() > 0.9
    assert out[0].sum() == 0 and out[:, 0].sum() == 0  # black border, as in MNIST


@pytest.mark.parametrize("box", [(5, 5, 60, 70), (150, 140, 195, 198), (120, 10, 190, 60)])
def test_an_off_centre_stroke_ends_up_centred_by_mass_in_a_20_pixel_box(box):
    out = preprocess(draw(box=box, width=6))
    cy, cx = centre_of_mass(out)
    assert abs(cy - CENTRE) <= 0.5 and abs(cx - CENTRE) <= 0.5
    assert max(extent(out)) in (DIGIT_BOX, DIGIT_BOX + 1)  # +1: the anti-aliased edge may spill over


def filled_item(size=(160, 120), box=(50, 20, 110, 100), paper=255, item=60) -> Image.Image:
    """A photo-like product shot: a dark filled shape (a "trouser") on light paper, off-centre."""
    image = Image.new("L", size, paper)
    ImageDraw.Draw(image).rectangle(box, fill=item)
    return image


@pytest.mark.parametrize("box", [(50, 20, 110, 100), (5, 70, 45, 150), (70, 10, 115, 40)],
                         ids=["tall", "tall-off-centre", "wide-corner"])
def test_the_fill_layout_spans_the_frame_and_centres_by_the_box(box):
    out = preprocess(filled_item(box=box), layout="fill")
    height, width = extent(out, threshold=0.5)
    assert max(height, width) == 28  # the long side spans the whole frame, as Fashion-MNIST's items do
    rows, cols = torch.nonzero(out.sum(1) > 0.5), torch.nonzero(out.sum(0) > 0.5)
    assert abs((rows.min() + rows.max()) / 2 - 13.5) <= 0.5 and abs((cols.min() + cols.max()) / 2 - 13.5) <= 0.5
    assert out.max() > 0.9  # dark on light was inverted to light on dark
    # the digit layout of the same picture keeps it in MNIST's smaller box, with a margin
    assert max(extent(preprocess(filled_item(box=box)), threshold=0.5)) < 24


def test_an_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="layout must be one of digit, fill"):
        preprocess(draw(), layout="stretch")


def test_the_inverted_twin_gives_the_same_tensor():
    white_on_black = draw(width=10)
    black_on_white = Image.fromarray(255 - np.asarray(white_on_black))
    torch.testing.assert_close(preprocess(black_on_white), preprocess(white_on_black))
    dark_blue_on_cream = draw(width=10, ink=(20, 30, 120), paper=(245, 240, 225), mode="RGB")
    torch.testing.assert_close(preprocess(dark_blue_on_cream), preprocess(white_on_black), atol=0.03, rtol=0)


def test_invert_override():
    black_on_white = Image.fromarray(255 - np.asarray(draw(width=10)))
    torch.testing.assert_close(preprocess(black_on_white, invert="yes"), preprocess(black_on_white))
    with pytest.raises(NoDigitError):  # taken as white ink, the "digit" is the whole sheet of paper
        preprocess(black_on_white, invert="no")
    with pytest.raises(ValueError, match="invert must be one of auto, yes, no"):
        preprocess(black_on_white, invert="maybe")


@pytest.mark.parametrize("size, box, expected", [
    ((300, 300), (140, 50, 158, 250), (20, 2)),  # a tall thin "1": 18 × 200 pixels
    ((300, 300), (40, 120, 260, 180), (5, 20)),  # a wide "-": 220 × 60
])
def test_aspect_ratio_is_kept(size, box, expected):
    bar = Image.new("L", size, 0)
    ImageDraw.Draw(bar).rectangle(box, fill=255)
    height, width = extent(preprocess(bar), threshold=0.5)
    assert abs(height - expected[0]) <= 1 and abs(width - expected[1]) <= 1


def test_an_already_mnist_style_digit_passes_through():
    images = load_mnist().test.images[:200]
    out = torch.stack([preprocess(x) for x in images])
    pixels = images.float() / 255
    unchanged = (out - pixels).abs().amax((1, 2)) < 0.02
    assert unchanged.float().mean() >= 0.85
    assert (out - pixels).abs().mean() < 0.01


@pytest.mark.slow
def test_mnist_accuracy_does_not_drop_by_more_than_a_tenth_of_a_point(mnist_mlp):
    checkpoint = mnistlab.load_checkpoint(mnist_mlp)
    test = load_mnist().test
    preprocessed = torch.stack([preprocess(x) for x in test.images])  # (10000, 28, 28)
    with torch.inference_mode():
        accuracy = {name: (checkpoint.model(normalize(x, checkpoint.mean, checkpoint.std)).argmax(1)
                           == test.labels).float().mean().item()
                    for name, x in (("raw", test.images), ("preprocessed", preprocessed))}
    assert accuracy["raw"] > 0.95
    assert accuracy["preprocessed"] >= accuracy["raw"] - 0.001


# --- the steps -----------------------------------------------------------------------------------

def test_polarity_is_read_from_the_border():
    light = to_grayscale(draw())
    assert not ink_is_dark(light)
    assert ink_is_dark(1 - light)
    assert ink_is_dark(0.4 + 0.5 * (1 - light))  # grey paper, grey ink


def test_uneven_light_is_levelled():
    reflectance = 1 - 0.8 * to_grayscale(draw(width=8))  # dark ink on white paper
    light = np.linspace(0.3, 1.0, 200, dtype=np.float32)[None, :] * np.ones((200, 1), np.float32)
    ink = 1 - light * reflectance
    levelled = level_background(ink)
    paper, strokes = reflectance == 1, reflectance < 0.25
    assert np.ptp(ink[paper]) > 0.6 and np.ptp(levelled[paper]) < 0.05
    assert np.ptp(levelled[strokes]) < 0.05  # the ink is as dark under dim light as under bright
    out = preprocess(Image.fromarray((255 * light * reflectance).astype(np.uint8)))
    torch.testing.assert_close(out, preprocess(draw(width=8)), atol=0.1, rtol=0)


def test_contrast_is_stretched_robustly():
    rng = np.random.default_rng(0)
    faint = 0.5 + 0.15 * to_grayscale(draw()) + rng.normal(0, 0.01, (200, 200)).astype(np.float32)
    stretched = stretch_contrast(faint)
    drawn = to_grayscale(draw()) > 0.5
    assert np.median(stretched[drawn]) > 0.85 and np.percentile(stretched[drawn], 90) > 0.99
    assert np.mean(stretched[~drawn] == 0) > 0.99  # the paper's noise is floored, not amplified into a grey block


def test_salt_noise_does_not_blow_up_the_box():
    clean = to_grayscale(draw(box=(60, 50, 140, 150)))
    noisy = clean.copy()
    noisy[np.random.default_rng(1).random(clean.shape) < 0.02] = 1.0
    _, clean_box = find_digit(clean)
    cleaned, box = find_digit(noisy)
    assert all(abs(a - b) <= 2 for a, b in zip(box, clean_box, strict=True))
    assert cleaned[:40].sum() == 0  # the specks outside the digit are gone


def test_a_hairline_is_redrawn_with_mnist_stroke_width():
    thin = draw(size=(800, 800), box=(100, 100, 700, 700), width=3)
    out = preprocess(thin)
    assert 2.0 <= stroke_width(out.numpy()) <= 4.5
    assert out.max() > 0.95


def test_a_marker_stroke_is_trimmed(monkeypatch):
    thick = draw(size=(300, 300), box=(80, 60, 220, 240), width=55)
    trimmed = stroke_width(preprocess(thick).numpy())
    monkeypatch.setattr(preprocessing, "MAX_STROKE", float("inf"))
    assert trimmed <= 5.0 and trimmed < stroke_width(preprocess(thick).numpy()) - 0.5


def test_centre_by_mass_rounds_to_whole_pixels():
    digit = np.zeros((20, 10), np.float32)
    digit[:5] = 1.0  # all the mass at the top
    out = centre_by_mass(digit)
    cy, cx = centre_of_mass(torch.from_numpy(out))
    assert abs(cy - CENTRE) <= 0.5 and abs(cx - CENTRE) <= 0.5
    assert out.sum() == digit[:5].sum()  # the lower part fell outside 28×28; nothing was blurred


# --- inputs: modes, files, arrays ----------------------------------------------------------------

def as_file(image: Image.Image, format: str, **params) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    buffer.seek(0)
    return Image.open(buffer)


@pytest.mark.parametrize("convert", [
    lambda im: im.convert("RGB"),
    lambda im: im.convert("P"),
    lambda im: Image.fromarray(np.asarray(im).astype(np.uint16) * 257),  # I;16
    lambda im: im.convert("I"),
    lambda im: im.convert("F"),
    lambda im: im.convert("1"),
    lambda im: as_file(im.convert("RGB"), "JPEG", quality=90),
    lambda im: as_file(im, "GIF"),
    lambda im: as_file(im, "BMP"),
    lambda im: as_file(im, "WEBP", lossless=True),
    lambda im: as_file(im, "TIFF"),
    lambda im: as_file(Image.fromarray(np.asarray(im).astype(np.uint16) * 257), "PNG"),
], ids=["RGB", "P", "I;16", "I", "F", "1", "JPEG", "GIF", "BMP", "WebP", "TIFF", "16-bit PNG"])
def test_every_mode_and_format_gives_the_same_digit(convert):
    reference = preprocess(draw())
    converted = convert(draw())
    torch.testing.assert_close(preprocess(converted), reference, atol=0.06, rtol=0)


def test_exif_orientation_is_honoured(tmp_path):
    upright = draw(size=(200, 160), box=(30, 20, 170, 140))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "photo.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    expected = preprocess(upright)
    assert load_image(path).size == upright.size
    torch.testing.assert_close(preprocess(load_image(path)), expected, atol=0.06, rtol=0)
    torch.testing.assert_close(preprocess(Image.open(path)), expected, atol=0.06, rtol=0)  # opened by hand


@pytest.mark.parametrize("ink", [(0, 0, 0, 255), (255, 255, 255, 255), (200, 30, 30, 255)],
                         ids=["dark ink", "light ink", "red ink"])
@pytest.mark.parametrize("clear", [(0, 0, 0, 0), (255, 255, 255, 0)], ids=["black clear", "white clear"])
def test_a_drawing_on_a_transparent_canvas(ink, clear):
    canvas = draw(mode="RGBA", ink=ink, paper=clear)
    expected = preprocess(draw())
    torch.testing.assert_close(preprocess(canvas), expected, atol=0.03, rtol=0)
    torch.testing.assert_close(preprocess(as_file(canvas, "PNG").convert("PA")), expected, atol=0.03, rtol=0)


def test_an_opaque_photo_with_transparent_corners_keeps_its_paper():
    photo = draw(mode="RGBA", ink=(0, 0, 0, 255), paper=(240, 240, 240, 255))
    ImageDraw.Draw(photo).polygon([(0, 0), (30, 0), (0, 30)], fill=(0, 0, 0, 0))  # a clear corner
    torch.testing.assert_close(preprocess(photo), preprocess(draw()), atol=0.03, rtol=0)


def test_arrays_and_tensors():
    pil = draw()
    expected = preprocess(pil)
    pixels = np.array(pil)
    for image in (pixels, pixels.astype(np.float32) / 255, torch.from_numpy(pixels), torch.from_numpy(pixels)[None],
                  np.stack([pixels] * 3, axis=-1), pixels.astype(np.int64)):
        torch.testing.assert_close(preprocess(image), expected, atol=1e-5, rtol=0)
    with pytest.raises(ImageError, match="expected an image of shape"):
        preprocess(np.zeros((2, 3, 5, 5)))


def test_the_package_exports_the_function():
    assert mnistlab.preprocess(draw()).shape == (28, 28)  # even after the module of that name was imported
    assert mnistlab.load_image is load_image and mnistlab.NoDigitError is NoDigitError


# --- no digit ------------------------------------------------------------------------------------

@pytest.mark.parametrize("image", [
    Image.new("L", (100, 100), 255),
    Image.new("L", (100, 100), 0),
    Image.new("RGBA", (100, 100), (0, 0, 0, 0)),
    Image.fromarray(np.clip(200 + np.random.default_rng(0).normal(0, 8, (300, 300)), 0, 255).astype(np.uint8)),
    Image.fromarray(np.where(np.random.default_rng(1).random((200, 200)) < 0.01, 0, 255).astype(np.uint8)),
    draw(size=(400, 400), box=(200, 200, 204, 204), width=2),  # one speck of dust
    Image.new("L", (3, 3), 0),
], ids=["white", "black", "transparent", "noise", "salt", "speck", "3 pixels"])
def test_a_blank_or_near_blank_image_is_no_digit(image):
    with pytest.raises(NoDigitError, match="^no digit found"):
        preprocess(image)


# --- load_image ----------------------------------------------------------------------------------

def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width×height pixels: what a decompression bomb looks like before it explodes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name, content, message", [
    ("notes.png", b"these are not pixels\n", "not an image"),
    ("empty.png", b"", "not an image"),
    ("bomb.png", png_header_only(9000, 9000), "9000×9000 pixels is over the limit of 64,000,000"),
    ("huge.png", png_header_only(100_000, 100_000), "decompression bomb"),
])
def test_load_image_rejects_bad_files_naming_them(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_load_image_catches_truncation_missing_files_and_folders(tmp_path):
    buffer = io.BytesIO()
    draw().save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut.png: cannot decode \(.*truncated"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="missing.png: no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path)
    (tmp_path / "small.png").write_bytes(buffer.getvalue())
    with pytest.raises(ImageError, match="over the limit of 100"):
        load_image(tmp_path / "small.png", max_pixels=100)


def test_decoding_lives_apart_and_the_old_names_still_work():
    """Decoding (files, formats, limits, arrays) is `mnistlab.decoding`; the pipeline imports it, never the reverse."""
    import ast
    import inspect

    import mnistlab.decoding as decoding

    assert mnistlab.load_image is decoding.load_image is preprocessing.load_image
    assert mnistlab.ImageError is mnistlab.errors.ImageError and mnistlab.NoDigitError is mnistlab.errors.NoDigitError
    assert preprocessing.IMAGE_SUFFIXES is decoding.IMAGE_SUFFIXES and preprocessing.MAX_PIXELS == decoding.MAX_PIXELS
    imported = {node.module for node in ast.walk(ast.parse(inspect.getsource(decoding)))
                if isinstance(node, ast.ImportFrom)}
    assert "preprocessing" not in imported and "torch" not in imported


# --- the fast statistics, against their references ------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(values=hnp.arrays(np.float32, st.integers(1, 300), elements=st.floats(0, 1, width=32)),
       fractions=st.lists(st.floats(0, 1), min_size=1, max_size=3))
def test_quantiles_agree_with_numpy(values, fractions):
    expected = np.quantile(values, fractions)
    assert np.allclose(ink._quantiles(values, *fractions), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("seed", range(5))
def test_stroke_width_counts_the_boundary_as_binary_erosion_does(seed):
    from scipy import ndimage

    ink = np.asarray(draw(width=3 + 4 * seed), np.float32) / 255
    ink[np.random.default_rng(seed).random(ink.shape) < 0.01] = 1.0  # specks, and ink at the image's edge
    core = ink > preprocessing.CORE_THRESHOLD
    boundary = np.count_nonzero(core & ~ndimage.binary_erosion(core))
    assert stroke_width(ink) == pytest.approx(2 * np.count_nonzero(core) / boundary)


# --- marks too small to be a digit (what the drawing page refuses) ---------------------------------

@pytest.mark.parametrize("mark", ["dot", "dash"])
def test_a_dot_or_a_dash_is_refused_only_when_asked(mark):
    image = Image.new("L", (280, 280), 255)
    if mark == "dot":
        ImageDraw.Draw(image).ellipse([130, 130, 150, 150], fill=0)
    else:
        ImageDraw.Draw(image).line([(100, 140), (180, 140)], fill=0, width=18)
    with pytest.raises(NoDigitError, match="^draw it larger"):
        preprocessing.preprocess_array(image, refuse_small_marks=True)
    assert preprocessing.preprocess_array(image).shape == (28, 28)  # predict reads whatever is there


def test_real_digits_of_any_size_are_not_too_small():
    for size, width in [(40, 4), (120, 12), (260, 18)]:
        image = draw(size=(280, 280), box=(10, 10, 10 + size, 10 + size), width=width)
        assert preprocessing.preprocess_array(image, refuse_small_marks=True).max() > 0.9


def test_an_opaque_rgba_drawing_reads_as_its_gray_and_a_transparent_one_is_composited():
    gray = draw(ink=0, paper=255)
    opaque = gray.convert("RGBA")
    assert np.array_equal(preprocessing.preprocess_array(opaque), preprocessing.preprocess_array(gray))
    transparent = Image.new("RGBA", gray.size, (0, 0, 0, 0))
    transparent.putalpha(Image.eval(gray, lambda v: 255 - v))  # black ink on a transparent canvas
    assert np.abs(preprocessing.preprocess_array(transparent) - preprocessing.preprocess_array(gray)).max() < 0.05
