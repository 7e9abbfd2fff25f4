"""Hostile input at the `predict` boundary: every per-file failure is that file's row, never the batch's.

Files: every Pillow mode, special files (FIFOs, sockets, devices, links), broken and foreign
payloads under image names, bombs, strange sizes and names. In memory: arrays and tensors of every
wrong shape, dtype and value. Output: escaped tables, strict JSON, closed pipes and full disks.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import EpsImagePlugin, Image, ImageDraw
from safetensors.torch import load_file, save_file

import mnistlab
import mnistlab.prediction as prediction
from mnistlab import predict
from mnistlab.cli import main
from mnistlab.decoding import IMAGE_FORMATS, load_image
from mnistlab.errors import ImageError, NoDigitError
from mnistlab.prediction import escape, safe_file_stem
from mnistlab.preprocessing import INVERT_CHOICES, preprocess

MNISTLAB = [sys.executable, "-m", "mnistlab"]
NOT_AN_IMAGE = "not an image (or an unsupported format)"


def digit(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """Dark ink on white paper: a slanted stroke, what a person draws."""
    image = Image.new("L", size, 255)
    w, h = size
    ImageDraw.Draw(image).line([(w * 0.3, h * 0.15), (w * 0.7, h * 0.85)], fill=0, width=max(2, w // 10))
    return image


def encoded(image: Image.Image, format: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def checkpoint(tiny_run):
    return mnistlab.load_checkpoint(tiny_run[0])


def run_json(capsys, checkpoint, *inputs) -> tuple[int, list[dict], str]:
    code = main(["predict", str(checkpoint.path), *map(str, inputs), "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


# --- every Pillow mode: converted, or refused per image ------------------------------------------

def as_mode(mode: str) -> Image.Image:
    """The same digit in `mode`, with the values that mode's convention expects."""
    gray = digit()
    pixels = np.asarray(gray)
    if mode.startswith("I;16"):  # 16-bit: full scale is 65535
        dtype = {"I;16B": ">u2", "I;16L": "<u2"}.get(mode, "=u2")
        return Image.frombytes(mode, gray.size, (pixels.astype(dtype) * 257).tobytes())
    if mode == "LAB":
        return Image.merge("LAB", [gray, Image.new("L", gray.size, 128), Image.new("L", gray.size, 128)])
    if mode in ("La", "RGBa", "PA"):
        return gray.convert("RGBA").convert(mode)
    return gray.convert(mode)


@pytest.mark.parametrize("mode", Image.MODES)
def test_every_pillow_mode_gives_the_digit(mode):
    reference = preprocess(digit())
    torch.testing.assert_close(preprocess(as_mode(mode)), reference, atol=0.05, rtol=0)


@pytest.mark.parametrize("mode", ["LAB", "CMYK", "YCbCr", "I;16", "F", "1", "P", "RGBA", "LA"])
def test_a_tiff_in_any_mode_is_a_row_of_its_own(mode, checkpoint, tmp_path, capsys):
    path = tmp_path / f"{mode.replace(';', '')}.tif"
    try:
        as_mode(mode).save(path, format="TIFF")
    except OSError:
        pytest.skip(f"Pillow cannot write a {mode} TIFF")
    code, rows, err = run_json(capsys, checkpoint, path, path)  # twice: repeats keep their own row
    assert len(rows) == 2 and rows[0] == rows[1] and rows[0]["file"] == str(path)
    assert code == 0 and "label" in rows[0], rows


def test_an_unknown_mode_is_that_images_error():
    class Odd(Image.Image):
        """An image whose conversion Pillow refuses, as a mode added in a future Pillow might."""

        def convert(self, *args, **kwargs):
            raise ValueError("conversion not supported")

    odd = Odd()
    odd._mode, odd._size = "RGB", (8, 8)
    with pytest.raises(ImageError, match=r"^cannot convert its RGB pixels to gray \(ValueError: conversion not"):
        preprocess(odd)


def test_a_multi_frame_file_gives_its_first_frame(tmp_path):
    frames = [digit(), Image.new("L", (64, 64), 255)]  # the digit, then a blank page
    for name, params in (("anim.gif", {}), ("pages.tif", {})):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], **params)
        torch.testing.assert_close(preprocess(load_image(tmp_path / name)), preprocess(digit()), atol=0.05, rtol=0)


# --- special files: refused at once, never waited on ---------------------------------------------

def special(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.png"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))  # the socket file outlives the closed socket
        server.close()
    elif kind == "device":
        path.symlink_to("/dev/zero")  # endless bytes, were it read
    elif kind == "folder":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "dangling":
        path.symlink_to("nowhere.png")
    elif kind == "link-to-fifo":
        os.mkfifo(folder / "target")
        path.symlink_to("target")
    return path


SPECIAL = {
    "fifo": "cannot read (not a regular file: a FIFO)",
    "socket": "cannot read (not a regular file: a socket)",
    "device": "cannot read (not a regular file: a device)",
    "loop": "cannot read (Too many levels of symbolic links)",
    "dangling": "no such file",
    "link-to-fifo": "cannot read (not a regular file: a FIFO)",
}


@pytest.mark.parametrize("kind", SPECIAL)
def test_a_special_file_named_as_an_argument_is_its_own_error(kind, checkpoint, tmp_path, capsys, no_hang):
    path = special(kind, tmp_path)
    code, rows, err = run_json(capsys, checkpoint, path)
    assert code == 1 and rows == [{"file": str(path), "error": SPECIAL[kind]}]
    assert err == "mnistlab: 1 of 1 files failed\n"


@pytest.mark.parametrize("kind", [*SPECIAL, "folder"])
def test_a_folder_passes_over_its_special_files(kind, checkpoint, tmp_path, capsys, no_hang):
    digit().save(tmp_path / "a.png")
    path = special(kind, tmp_path)
    code, rows, err = run_json(capsys, checkpoint, tmp_path)
    assert code == 0 and [row["file"] for row in rows] == [str(tmp_path / "a.png")]
    why = {"fifo": "a FIFO", "socket": "a socket", "device": "a device", "loop": "a symlink loop",
           "dangling": "a broken link", "link-to-fifo": "a FIFO", "folder": "a folder"}[kind]
    assert err == f"mnistlab: skipped {path} ({why})\n"


@pytest.mark.slow
def test_a_fifo_never_freezes_predict(tmp_run_path, tmp_path):
    """As a process, with a timeout: a FIFO in a folder and one as an argument."""
    os.mkfifo(tmp_path / "waiting.png")
    digit().save(tmp_path / "good.png")
    predict = subprocess.run([*MNISTLAB, "predict", tmp_run_path, tmp_path, tmp_path / "waiting.png"],
                             capture_output=True, text=True, timeout=60)
    assert predict.returncode == 1
    assert predict.stdout.splitlines()[-1].split() == [str(tmp_path / "waiting.png"), "-", "-", "error:", "cannot",
                                                       "read", "(not", "a", "regular", "file:", "a", "FIFO)"]
    assert predict.stderr.splitlines() == [f"mnistlab: skipped {tmp_path / 'waiting.png'} (a FIFO)",
                                           "mnistlab: 1 of 2 files failed"]


def test_show_of_a_fifo(tmp_path, capsys, no_hang):
    os.mkfifo(tmp_path / "waiting.png")
    assert main(["show", str(tmp_path / "waiting.png"), "--out", str(tmp_path / "x.png")]) == 1
    assert capsys.readouterr().err == (f"mnistlab: error: {tmp_path / 'waiting.png'}: cannot read (not a regular "
                                       f"file: a FIFO)\n")


@pytest.fixture
def tmp_run_path(tiny_run) -> str:
    return str(tiny_run[0])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_file_without_read_permission(checkpoint, tmp_path, capsys):
    path = tmp_path / "locked.png"
    digit().save(path)
    path.chmod(0)
    code, rows, _ = run_json(capsys, checkpoint, path)
    assert code == 1 and rows == [{"file": str(path), "error": "cannot read (Permission denied)"}]


# --- broken, foreign and oversized files ---------------------------------------------------------

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, mode: int = 0) -> bytes:
    """A PNG that declares width×height pixels (colour type `mode`) and holds almost none."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 100))
            + png_chunk(b"IEND", b""))


def gif_header(width: int, height: int) -> bytes:
    image = b",\0\0\0\0" + struct.pack("<HH", width, height) + b"\0\x02\x02D\x01\0;"  # one descriptor, no pixels
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + image


def bmp_header(width: int, height: int) -> bytes:
    return (b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0,
                                                                       0, 0, 0, 0))


PNG, JPEG, GIF = encoded(digit(), "PNG"), encoded(digit().convert("RGB"), "JPEG"), encoded(digit(), "GIF")
BROKEN = {
    "zero bytes": (b"", NOT_AN_IMAGE),
    "text": (b"1,2,3\n", NOT_AN_IMAGE),
    "PNG signature only": (PNG[:8], NOT_AN_IMAGE),
    "truncated PNG": (PNG[: len(PNG) // 2], "cannot decode ("),
    "truncated JPEG": (JPEG[: len(JPEG) // 2], "cannot decode ("),
    "truncated GIF": (GIF[:40], "cannot decode ("),
    "PNG bomb": (png_header(9000, 9000), "9000×9000 pixels is over the limit of 64,000,000 (a decompression bomb?)"),
    "PNG far past Pillow's own limit": (png_header(100_000, 100_000), "over the limit of 64,000,000 pixels (a "
                                                                      "decompression bomb?)"),
    "GIF bomb": (gif_header(65535, 65535), "over the limit of 64,000,000 pixels (a decompression bomb?)"),
    "BMP bomb": (bmp_header(10000, 10000), "10000×10000 pixels is over the limit of 64,000,000"),
    "PNG of zero width": (png_header(0, 10), NOT_AN_IMAGE),
}


@pytest.mark.parametrize("content, error", BROKEN.values(), ids=BROKEN)
def test_a_broken_file_is_its_own_error(content, error, checkpoint, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(content)
    digit().save(tmp_path / "good.png")
    code, rows, _ = run_json(capsys, checkpoint, tmp_path / "bad.png", tmp_path / "good.png")
    assert code == 1 and rows[0]["file"] == str(tmp_path / "bad.png") and "label" in rows[1]
    assert rows[0]["error"].startswith(error) or error in rows[0]["error"], rows[0]
    with pytest.raises(ImageError, match="^image: "):  # the same from bytes, as an upload comes
        load_image(content)


STRANGE_SIZES = {
    "1×100000": ((100_000, 1), "no digit found (the image is only 100000×1 pixels)"),
    "100000×1": ((1, 100_000), "no digit found (the image is only 1×100000 pixels)"),
    "3×3": ((3, 3), "no digit found (the image is only 3×3 pixels)"),
    "4×60000 blank": ((60_000, 4), "no digit found (the image is blank or its marks are too faint)"),
}


@pytest.mark.parametrize("size, error", STRANGE_SIZES.values(), ids=STRANGE_SIZES)
def test_strange_sizes(size, error, checkpoint, tmp_path, capsys):
    Image.new("L", size, 0).save(tmp_path / "strip.png")
    code, rows, _ = run_json(capsys, checkpoint, tmp_path / "strip.png")
    assert code == 1 and rows == [{"file": str(tmp_path / "strip.png"), "error": error}]


@pytest.mark.slow
def test_a_huge_alpha_only_image_is_blank(checkpoint, tmp_path, capsys):
    Image.new("RGBA", (4000, 4000), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    code, rows, _ = run_json(capsys, checkpoint, tmp_path / "clear.png")
    assert code == 1 and rows[0]["error"] == "no digit found (the image is blank or its marks are too faint)"


# --- the bytes never choose the decoder ----------------------------------------------------------

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n0 0 moveto 16 16 lineto stroke\nshowpage\n%%EOF\n"
PS = b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 16 16\n(x) print\nshowpage\n"
XBM = b"#define x_width 8\n#define x_height 8\nstatic char x_bits[] = {" + b"0xff," * 8 + b"};\n"
XPM = b'/* XPM */\nstatic char *x[] = {\n"2 2 1 1",\n"a c #000000",\n"aa",\n"aa"};\n'
FOREIGN = {  # payloads Pillow would decode, or hand to a program, were it free to choose
    "EPS": EPS, "PS": PS, "XBM": XBM, "XPM": XPM,
    "PDF": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    "SVG": b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><image href="file:///etc/passwd"/></svg>',
}


def trap_programs(monkeypatch) -> list[str]:
    """Make every way to start a program, and Pillow's Ghostscript hook, record the attempt and fail."""
    calls: list[str] = []

    def refuse(*args, **kwargs):
        calls.append(repr(args)[:80])
        raise AssertionError("an external program was started")
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    monkeypatch.setattr(os, "system", refuse)
    return calls


@pytest.mark.parametrize("name", ["x.png", "x.jpg", "x.eps", "x.tif"])
@pytest.mark.parametrize("payload", FOREIGN, ids=FOREIGN)
def test_a_foreign_payload_under_any_name_is_not_an_image(payload, name, checkpoint, tmp_path, monkeypatch):
    calls = trap_programs(monkeypatch)
    (tmp_path / name).write_bytes(FOREIGN[payload])
    results = predict(checkpoint, [tmp_path / name, FOREIGN[payload], io.BytesIO(FOREIGN[payload])])
    assert [p.error for p in results] == [NOT_AN_IMAGE] * 3
    assert calls == []


def test_the_trap_would_catch_ghostscript(monkeypatch):
    """Without the whitelist Pillow opens the EPS payload and calls Ghostscript: the trap above is real."""
    calls = trap_programs(monkeypatch)
    with Image.open(io.BytesIO(EPS)) as image, pytest.raises(AssertionError, match="external program"):
        assert image.format == "EPS"
        image.load()
    assert len(calls) == 1


def foreign_formats() -> list[str]:
    Image.init()
    return sorted(set(Image.SAVE) & set(Image.OPEN) - set(IMAGE_FORMATS) - {"PDF", "EPS", "PALM", "MPO"})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Pillow is retiring some of these formats
@pytest.mark.parametrize("format", foreign_formats())
def test_every_other_pillow_format_is_refused_under_an_image_name(format, tmp_path):
    for mode in ("RGB", "L", "1"):  # the first mode the format's writer takes
        try:
            content = encoded(digit().convert(mode), format)
            break
        except (OSError, ValueError, KeyError) as e:
            reason = e
    else:
        pytest.skip(f"Pillow cannot write {format} here ({reason})")
    try:
        with Image.open(io.BytesIO(content)) as free:  # Pillow, free to choose, would decode these bytes
            decoded_as = free.format
    except Exception as e:
        pytest.skip(f"Pillow cannot read back its {format} ({e})")
    if decoded_as in IMAGE_FORMATS:
        pytest.skip(f"{format} is written as {decoded_as}")
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(ImageError, match=re.escape(f"x.png: {NOT_AN_IMAGE}")):
        load_image(tmp_path / "x.png")


# --- names: escaped in the table, strict in JSON, safe on disk -----------------------------------

NAMES = {  # file name → how the table shows it
    "new\nline.png": "new\\nline.png",
    "tab\there.png": "tab\\there.png",
    "\x1b[31mred\x1b[0m.png": "\\x1b[31mred\\x1b[0m.png",
    "cr\rreturn.png": "cr\\rreturn.png",
    "bidi\u202egnp.png": "bidi\\u202egnp.png",
    "back\\slash.png": "back\\\\slash.png",
    os.fsdecode(b"latin-\xe9.png"): "latin-\\xe9.png",
    "é-ünïcode-数字.png": "é-ünïcode-数字.png",
    "x" * 246 + ".png": "x" * 246 + ".png",
}


@pytest.mark.parametrize("name", NAMES, ids=[repr(n)[:20] for n in NAMES])
def test_a_weird_name_cannot_fake_a_row_break_json_or_escape_the_output_folder(name, checkpoint, tmp_path, capsys):
    path = tmp_path / name
    digit().save(path, format="PNG")
    out = tmp_path / "pre"
    assert main(["predict", str(checkpoint.path), str(path), str(path), "--save-preprocessed", str(out)]) == 0
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert len(lines) == 3 and lines[1] == lines[2] and lines[1].startswith(f"{tmp_path}/{NAMES[name]}  ")
    assert all(c.isprintable() for c in table.replace("\n", ""))
    saved = sorted(p.name for p in out.iterdir())
    stem = safe_file_stem(name)
    assert saved == [f"{stem}-2.png", f"{stem}.png"]
    assert all(c.isprintable() and c not in "/\\" and len(n.encode()) <= 110 for n in saved for c in n)
    code, rows, _ = run_json(capsys, checkpoint, path)
    assert code == 0 and rows[0]["file"] == str(path).replace("\udce9", "\\xe9")  # JSON escapes the rest itself


def test_json_is_ascii_and_strict(checkpoint, tmp_path, capsys):
    path = tmp_path / os.fsdecode(b"\xff\xfe-\n.png")
    digit().save(path, format="PNG")
    main(["predict", str(checkpoint.path), str(path), str(tmp_path / "missing\x1b.png"), "--json"])
    out = capsys.readouterr().out
    assert out.isascii()

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    rows = json.loads(out, parse_constant=refuse)
    assert rows[0]["file"] == f"{tmp_path}/\\xff\\xfe-\n.png"  # undecodable bytes as text, the newline as JSON's \n
    assert rows[1] == {"file": f"{tmp_path}/missing\x1b.png", "error": "no such file"}


@pytest.mark.parametrize("text, expected", [
    ("plain.png", "plain.png"), ("a\nb", "a\\nb"), ("\x00\x07\x7f", "\\x00\\x07\\x7f"), ("\u200b", "\\u200b"),
    ("\udcff", "\\xff"), ("\ud800", "\\ud800"), ("\\n", "\\\\n"), ("\U000e0041", "\\U000e0041"),
])
def test_escape(text, expected):
    assert escape(text) == expected


@pytest.mark.parametrize("source, stem", [
    ("a/b/c.png", "c"), ("<image 3>", "image-3"), ("../..", "image"), (".hidden.png", "hidden"),
    ("-rf.png", "rf"), ("new\nline.png", "new-line"), ("x" * 300 + ".png", "x" * 100),
    ("数" * 50 + ".png", "数" * 33), ("a\\b.png", "b"), ("", "image"),
])
def test_saved_names_are_safe(source, stem):
    assert safe_file_stem(source) == stem


# --- --save-preprocessed: checked before any work, failures per file ------------------------------

@pytest.mark.parametrize("target, message", [
    ("file.txt", "{t}/file.txt: exists and is not a folder"),
    ("file.txt/sub", "{t}/file.txt/sub: cannot be made ({t}/file.txt is not a folder)"),
    ("/dev/null", "/dev/null: exists and is not a folder"),
    ("dangling", "{t}/dangling: exists and is not a folder"),
])
def test_save_preprocessed_into_an_impossible_place_is_refused_before_any_work(target, message, tmp_path, capsys,
                                                                                monkeypatch):
    (tmp_path / "file.txt").write_text("mine")
    (tmp_path / "dangling").symlink_to("nowhere")
    monkeypatch.setattr("mnistlab.checkpoints.load_checkpoint", lambda *a, **k: pytest.fail("work was done"))
    target = target if target.startswith("/") else str(tmp_path / target)
    assert main(["predict", "no-such-run", str(tmp_path), "--save-preprocessed", target]) == 1
    assert capsys.readouterr().err == f"mnistlab: error: {message.format(t=tmp_path)}\n"
    assert (tmp_path / "file.txt").read_text() == "mine"


def test_a_write_that_fails_is_that_files_error(checkpoint, tmp_path, capsys, monkeypatch):
    digit().save(tmp_path / "a.png")
    digit().save(tmp_path / "full.png")
    real = prediction.atomic_path

    def full_disk(path):
        if path.name == "full.png":
            raise OSError(28, "No space left on device")
        return real(path)
    monkeypatch.setattr(prediction, "atomic_path", full_disk)
    out = tmp_path / "pre"
    code = main(["predict", str(checkpoint.path), str(tmp_path / "a.png"), str(tmp_path / "full.png"), "--json",
                 "--save-preprocessed", str(out)])
    rows = json.loads(capsys.readouterr().out)
    assert code == 1 and "label" in rows[0] and sorted(p.name for p in out.iterdir()) == ["a.png"]
    assert rows[1]["error"] == f"cannot save its preprocessed image as {out}/full.png (No space left on device)"


# --- what a user trips on: nothing found, repeats, a blank image in `show` -----------------------

def test_an_empty_folder_or_a_pattern_matching_nothing(checkpoint, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["predict", str(checkpoint.path), str(tmp_path / "empty"), str(tmp_path / "*.png")])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err == f"mnistlab: error: no images found in {tmp_path}/empty, {tmp_path}/*.png\n"


def test_repeated_inputs_keep_their_own_rows_in_order(checkpoint, tmp_path, capsys):
    digit().save(tmp_path / "a.png")
    a, missing = str(tmp_path / "a.png"), str(tmp_path / "gone.png")
    code, rows, _ = run_json(capsys, checkpoint, a, missing, a, tmp_path, missing)
    assert code == 1 and [row["file"] for row in rows] == [a, missing, a, a, missing]


def test_show_names_a_blank_file(tmp_path, capsys):
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    assert main(["show", str(tmp_path / "blank.png")]) == 1
    assert capsys.readouterr().err == (f"mnistlab: error: {tmp_path}/blank.png: no digit found "
                                       f"(the image is blank or its marks are too faint)\n")


# --- in memory: the library marks a bad item, it does not raise ----------------------------------

GOOD = np.array(digit())
BAD_ARRAYS = {
    "complex": (np.zeros((28, 28), complex), "expected integer or float pixel values, got dtype complex128"),
    "object": (np.array([[object()] * 4] * 4), "expected integer or float pixel values, got dtype object"),
    "strings": (np.array([["a"] * 4] * 4), "expected integer or float pixel values, got dtype <U1"),
    "empty": (np.zeros((0, 0)), "the image is empty (shape (0, 0))"),
    "no columns": (np.zeros((28, 0), np.uint8), "the image is empty (shape (28, 0))"),
    "0-d": (np.array(3.0), "expected an image of shape (H, W), (1, H, W) or (H, W, 1|2|3|4), got ()"),
    "1-D": (np.zeros(784), "expected an image of shape (H, W), (1, H, W) or (H, W, 1|2|3|4), got (784,)"),
    "5 channels": (np.zeros((28, 28, 5)), "expected an image of shape (H, W), (1, H, W) or (H, W, 1|2|3|4), got "
                                          "(28, 28, 5)"),
    "5-D": (np.zeros((1, 1, 28, 28, 1)), "expected an image of shape (H, W), (1, H, W) or (H, W, 1|2|3|4), got "
                                         "(1, 1, 28, 28, 1)"),
    "NaN": (np.where(GOOD > 0, np.nan, 0.5), "some pixel values are not finite (NaN or infinity)"),
    "inf": (np.full((28, 28), -np.inf), "some pixel values are not finite (NaN or infinity)"),
    "beyond float32": (np.full((28, 28), 1e308), "some pixel values are not finite (NaN or infinity)"),
    "negative integers": (-np.ones((28, 28), int), "integer pixel values must lie in 0-255 or 0-65535, found -1 to -1"),
    "huge integers": (np.full((4, 4), 2**40), "integer pixel values must lie in 0-255 or 0-65535, found "
                                              "1099511627776 to 1099511627776"),
    "huge view": (np.broadcast_to(np.uint8(0), (100_000, 100_000)), "100000×100000 pixels is over the limit of "
                                                                    "64,000,000"),
    "huge tensor view": (torch.zeros(1).expand(100_000, 100_000), "the tensor of shape (100000, 100000) is over "
                                                                  "the limit of 64,000,000 pixels"),
    "complex tensor": (torch.zeros(28, 28, dtype=torch.complex64), "expected real pixel values, got a tensor of "
                                                                   "torch.complex64"),
    "meta tensor": (torch.zeros(28, 28, device="meta"), "cannot read Tensor as an image (NotImplementedError: "),
    "sparse tensor": (torch.eye(28).to_sparse(), "cannot read Tensor as an image (TypeError: "),
    "ragged list": ([[1, 2], [3]], "cannot read list as an image (ValueError: "),
    "None": (None, "expected an image (a path, Pillow image, array or tensor), got NoneType"),
    "a dict": ({"pixels": 1}, "expected an image (a path, Pillow image, array or tensor), got dict"),
    "a number": (7, "expected an image of shape (H, W), (1, H, W) or (H, W, 1|2|3|4), got ()"),
}


@pytest.mark.parametrize("bad, error", BAD_ARRAYS.values(), ids=BAD_ARRAYS)
def test_a_bad_in_memory_image_is_that_items_error(bad, error, checkpoint):
    first, second, third = predict(checkpoint, [GOOD, bad, torch.from_numpy(GOOD)])
    assert first.ok and third.ok and first.probabilities == third.probabilities
    assert second.source == "<image 1>" and not second.ok and second.image is None and second.label is None
    assert second.error.startswith(error)
    assert "\n" not in second.error


GOOD_ARRAYS = {
    "float16": GOOD.astype(np.float16) / 255, "float64 0-255": GOOD.astype(np.float64),
    "uint16": GOOD.astype(np.uint16) * 257, "int64": GOOD.astype(np.int64), "big-endian": GOOD.astype(">u2") * 257,
    "(1, H, W)": GOOD[None], "(H, W, 1)": GOOD[..., None],
    "gray + alpha": np.stack([GOOD, np.full_like(GOOD, 255)], -1),
    "RGB": np.stack([GOOD] * 3, -1), "RGBA float": np.stack([GOOD / 255] * 3 + [np.ones(GOOD.shape)], -1),
    "bfloat16 tensor": torch.from_numpy(GOOD).to(torch.bfloat16) / 255,
    "tensor with grad": (torch.from_numpy(GOOD).float() / 255).requires_grad_(),
    "non-contiguous": np.asfortranarray(GOOD), "nested lists": GOOD.tolist(),
    "bool (thresholded)": GOOD < 128, "bool tensor": torch.from_numpy(GOOD < 128),
    "bool (1, H, W) tensor": torch.from_numpy(GOOD < 128)[None], "bool (H, W, 1)": (GOOD < 128)[..., None],
    "bool, True the paper": GOOD > 127, "bool RGB": np.stack([GOOD < 128] * 3, -1),
}


@pytest.mark.parametrize("good", GOOD_ARRAYS.values(), ids=GOOD_ARRAYS)
def test_every_reasonable_in_memory_image_is_read(good):
    torch.testing.assert_close(preprocess(good), preprocess(digit()), atol=0.05, rtol=0)


@pytest.mark.parametrize("batch, count", [
    (np.zeros((0, 28, 28)), 0), (np.zeros((3, 28, 28)), 3), (np.zeros((2, 1, 28, 28)), 2), (np.zeros(7), 1),
    (np.array(1.0), 1), (torch.zeros(2, 28, 28, 3), 2), (b"\x89PNG", 1), (io.BytesIO(b"GIF89a"), 1),
])
def test_a_batch_of_any_shape_gives_one_prediction_per_item(batch, count, checkpoint):
    results = predict(checkpoint, batch)
    assert len(results) == count and all(isinstance(p, mnistlab.Prediction) for p in results)


def test_a_path_the_system_cannot_name_is_that_items_error(checkpoint, tmp_path):
    results = predict(checkpoint, [f"{tmp_path}/a\0.png", f"{tmp_path}/{'a' * 300}.png", f"{tmp_path}/{'b/' * 3000}"])
    assert [p.error for p in results] == ["no such file (a file name cannot hold a NUL byte)",
                                          "cannot read (File name too long)", "cannot read (File name too long)"]


def test_a_file_object_and_bytes_are_named_as_given(checkpoint, tmp_path):
    content = encoded(Image.new("L", (64, 64), 255), "PNG")
    (tmp_path / "blank.png").write_bytes(content)
    with open(tmp_path / "blank.png", "rb") as file:
        results = predict(checkpoint, [file, content, io.BytesIO(content)])
    assert [p.source for p in results] == [str(tmp_path / "blank.png"), "<image 1>", "<image 2>"]
    assert {p.error for p in results} == {"no digit found (the image is blank or its marks are too faint)"}
    with pytest.raises(NoDigitError, match="^upload.png: no digit found"):  # a web page names its upload
        preprocess(load_image(content, name="upload.png"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40),
                  elements={"allow_nan": True, "allow_infinity": True, "allow_subnormal": True}))
def test_any_array_gives_a_clean_digit_or_an_image_error(array):
    try:
        out = preprocess(array)
    except ImageError as e:  # NoDigitError included
        assert "\n" not in str(e)
        return
    assert out.shape == (28, 28) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(dtype=np.bool_, shape=st.sampled_from([(28, 28), (1, 28, 28), (28, 28, 1), (28, 28, 3), (40, 12),
                                                          (1, 64, 64), (64, 64, 4), (3, 3)])),
       st.sampled_from(["numpy", "tensor"]), st.sampled_from(INVERT_CHOICES))
def test_a_boolean_image_reads_as_black_and_white(mask, kind, invert):
    """False is 0 and True is 1: a boolean image gives what the same image as uint8 0/255 gives, error or digit."""
    def outcome(image):
        try:
            return preprocess(torch.from_numpy(image) if kind == "tensor" else image, invert)
        except ImageError as e:  # NoDigitError included
            return type(e), str(e)

    as_bool, as_uint8 = outcome(mask), outcome(mask.astype(np.uint8) * 255)
    if isinstance(as_uint8, tuple):
        assert as_bool == as_uint8 and "\n" not in as_bool[1]
    else:
        torch.testing.assert_close(as_bool, as_uint8, atol=0, rtol=0)


def test_a_thresholded_drawing_reads_as_the_drawing():
    ink = np.array(digit()) < 128  # dark ink on white paper, thresholded: True is ink
    for image in (ink, torch.from_numpy(ink), ~ink):  # True as the paper: "auto" sees the polarity
        torch.testing.assert_close(preprocess(image), preprocess(digit()), atol=0.05, rtol=0)
    torch.testing.assert_close(preprocess(ink, "no"), preprocess(digit()), atol=0.05, rtol=0)


# --- a broken model does not answer --------------------------------------------------------------

def test_a_nan_model_gives_errors_not_answers(checkpoint):
    broken = mnistlab.Checkpoint(model=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)),
                                 config=checkpoint.config, path=checkpoint.path)
    with torch.no_grad():
        broken.model[1].weight[3].fill_(float("nan"))  # one poisoned unit poisons the softmax of every image
    results = predict(broken, [GOOD, GOOD])
    assert [p.error for p in results] == ["the model's output is not a number (NaN or infinity): are its weights "
                                          "or normalisation broken?"] * 2
    assert all(p.label is None and p.probabilities is None for p in results)
    json.loads(prediction.format_json(results), parse_constant=pytest.fail)


def test_a_zero_std_gives_errors_not_answers(checkpoint):
    config = {**checkpoint.config, "normalization": {"mean": checkpoint.mean, "std": 0.0}}
    results = prediction.predict(dataclasses.replace(checkpoint, config=config), [GOOD])
    assert not results[0].ok and results[0].error.startswith("the model's output is not a number")


def test_a_nan_checkpoint_on_the_command_line_exits_1(tiny_run, tmp_path, capsys):
    run = tmp_path / "nan-run"
    shutil.copytree(tiny_run[0], run)
    weights = {k: torch.full_like(v, float("nan")) for k, v in load_file(run / "model.safetensors").items()}
    save_file(weights, run / "model.safetensors", metadata={"format": "mnistlab.checkpoint"})
    digit().save(tmp_path / "a.png")
    code = main(["predict", str(run), str(tmp_path / "a.png"), "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == "" or "label" not in json.loads(out, parse_constant=pytest.fail)[0]  # refused at load, or an error


# --- output that cannot be written ---------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["predict", "{run}", "{folder}", "--json"]], ids=["help", "predict"])
@pytest.mark.slow
def test_a_closed_pipe_ends_quietly_with_141(argv, tmp_run_path, tmp_path):
    digit().save(tmp_path / "a.png")
    argv = [a.format(run=tmp_run_path, folder=tmp_path) for a in argv]
    reader_gone = subprocess.Popen([*MNISTLAB, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader_gone.stdout.close()  # as `| head -0` does: every write to stdout now fails with EPIPE
    _, err = reader_gone.communicate(timeout=60)
    assert (reader_gone.returncode, err.decode()) == (141, "")


def test_a_full_disk_is_one_line_and_exit_1():
    with open("/dev/full", "w") as full:
        result = subprocess.run([*MNISTLAB, "--help"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (1, "mnistlab: error: cannot write the output (No space left on "
                                                     "device)\n")


class FullDisk(io.StringIO):
    def write(self, text):
        raise OSError(28, "No space left on device")


def test_predict_onto_a_full_disk(checkpoint, tmp_path, capsys, monkeypatch):
    digit().save(tmp_path / "a.png")
    with capsys.disabled():  # the command's stdout is the full disk, its stderr a buffer of ours
        monkeypatch.setattr(sys, "stdout", FullDisk())
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        code = main(["predict", str(checkpoint.path), str(tmp_path)])
        err = sys.stderr.getvalue()
    assert (code, err) == (1, "mnistlab: error: cannot write the output (No space left on device)\n")


# --- a collected drawing reads back as what was drawn ---------------------------------------------------------------

@pytest.mark.parametrize("mode, format", [
    ("L", "PNG"), ("RGBA", "PNG"), ("P", "GIF"), ("I;16", "PNG"), ("CMYK", "JPEG"), ("CMYK", "TIFF"),
    ("YCbCr", "TIFF"), ("LAB", "TIFF"), ("I", "TIFF"), ("F", "TIFF"), ("PA", "TIFF"),
])
def test_every_upload_that_reads_as_a_digit_is_collected_and_reads_back_the_same(mode, format, tmp_path):
    from mnistlab.labelled import read_labelled, save_labelled

    drawing = digit((96, 96))
    drawing = Image.fromarray(np.asarray(drawing).astype(np.uint16) * 257) if mode == "I;16" else drawing.convert(mode)
    upload = load_image(encoded(drawing, format), name="upload")
    saved = save_labelled(tmp_path, 7, upload)
    assert [image.path for image in read_labelled(tmp_path)] == [saved]
    torch.testing.assert_close(preprocess(load_image(saved)), preprocess(upload), atol=0.02, rtol=0)
