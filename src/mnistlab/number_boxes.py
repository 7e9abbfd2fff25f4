"""A number read, drawn over its picture: a box around each digit and its reading above it (`read --boxes DIR`).

The picture is drawn as it was decoded (upright), with the boxes in its own pixels as `Reading.digits` gives
them; each file is written whole or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ._outputs import atomic_path, check_output_file
from .decoding import gray_mode, load_image
from .reading import Reading

BOX_COLOUR = (9, 105, 218)  # the page's accent blue: the same boxes on the page and in the files
TEXT_COLOUR = (255, 255, 255)
LABEL_OF_DIGIT = 0.25  # the reading's text is this fraction of the digits' median height (at least MIN_LABEL_PX)
MIN_LABEL_PX = 12


def draw_boxes(picture: Image.Image, reading: Reading) -> Image.Image:
    """An RGB copy of `picture` with a box around each digit of `reading` and "label confidence" above it."""
    drawn = _as_rgb(picture)
    draw = ImageDraw.Draw(drawn)
    heights = sorted(d.box[3] - d.box[1] for d in reading.digits) or [0]
    size = max(MIN_LABEL_PX, round(LABEL_OF_DIGIT * heights[len(heights) // 2]))
    font = ImageFont.load_default(size=size)
    line = max(1, size // 8)
    tags_end = -1  # the right edge of the last tag drawn above its box: a tag that would overlap it goes below
    for digit in reading.digits:
        x0, y0, x1, y1 = digit.box
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX_COLOUR, width=line)
        text = f"{digit.label} {digit.confidence:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        width, height = right - left + 2 * line, bottom - top + 2 * line
        above = x0 > tags_end and y0 - height >= 0
        tag_top = y0 - height if above else min(y1, drawn.height - height)
        tags_end = x0 + width if above else tags_end
        draw.rectangle((x0, tag_top, x0 + width, tag_top + height), fill=BOX_COLOUR)
        draw.text((x0 + line - left, tag_top + line - top), text, font=font, fill=TEXT_COLOUR)
    return drawn


def _as_rgb(picture: Image.Image) -> Image.Image:
    """The picture as 8-bit RGB: transparency over white paper, 16- and 32-bit pixels scaled to 0-255."""
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        paper = Image.new("RGBA", picture.size, "white")
        return Image.alpha_composite(paper, picture.convert("RGBA")).convert("RGB")
    if picture.mode.startswith("I") or picture.mode == "F":
        gray = np.asarray(gray_mode(picture), np.float32)  # 0-1
        return Image.fromarray(np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    return picture.convert("RGB")


def boxes_paths(readings: Sequence[Reading], folder: str | os.PathLike) -> dict[int, Path]:
    """Where `save_boxes` writes each reading with digits from a file: FOLDER/<file's stem>.png, a second file of
    the same stem as <stem>-2.png, and so on. Keyed by the reading's index."""
    folder, taken, paths = Path(folder), set(), {}
    for index, reading in enumerate(readings):
        if not reading.ok or reading.source.startswith("<"):  # "<image N>": in memory, no file to draw on
            continue
        stem, n = Path(reading.source).stem or "picture", 1
        while (name := f"{stem}.png" if n == 1 else f"{stem}-{n}.png") in taken:
            n += 1
        taken.add(name)
        paths[index] = folder / name
    return paths


def check_boxes_folder(folder: str | os.PathLike) -> None:
    """Before the work: a file can be written in `folder` (made if missing). Raises OutputError naming it."""
    check_output_file(Path(folder) / "boxes.png")


def save_boxes(readings: Sequence[Reading], folder: str | os.PathLike) -> list[Path]:
    """Each reading of a file that holds a number, drawn over its picture (`draw_boxes`), as a PNG in `folder`
    (see `boxes_paths`), each written atomically. Returns the paths written, in order."""
    written = []
    for index, path in boxes_paths(readings, folder).items():
        picture = load_image(readings[index].source)
        with atomic_path(path) as tmp:
            draw_boxes(picture, readings[index]).save(tmp, format="PNG")
        written.append(path)
    return written
