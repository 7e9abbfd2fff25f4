"""Reading whole handwritten numbers: every digit of a picture, in reading order.

Each picture goes through predict's rules (decoding's limits, polarity, uneven light, contrast) and
is over-segmented into pieces (`mnistlab.segmentation`: its marks, the wide ones cut at candidate
columns). Every run of neighbouring pieces that may be one digit is brought to MNIST's convention by
the same steps as one digit in `predict`, and all of a picture's crops are classified in one forward
pass; a small dynamic programme then groups the pieces into the digits the classifier is surest of
(segmentation by recognition). A mark in which the model's "not a digit" rule (`mnistlab.rejection`)
finds no digit, whole or in pieces (a plus sign, a letter, a doodle between the digits), is left out.

A picture with no number comes back with `text` None and its `error`; none raises.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .classifier import Classifier
from .config import INVERT_CHOICES, STRICTNESS
from .decoding import load_image
from .errors import MnistlabError, ModelError, NoDigitError, escape, escape_surrogates
from .ink import (
    MIN_DIGIT_PIXELS,
    ink_is_dark,
    level_background,
    stretch_contrast,
    to_grayscale,
)
from .prediction import NOT_A_NUMBER, Source, as_sources, source_name
from .preprocessing import (
    INK_THRESHOLD,
)
from .rejection import DEFAULT_STRICTNESS, Threshold, threshold_for
from .segmentation import Line, Piece, crop_pieces, find_marks, overlap, pieces

READ_WORKING_SIZE = 2048  # a larger picture is first reduced to this long side: a 7-digit line keeps ~250 px a digit
JOIN_GAP = 0.1  # marks this many digit heights apart, or closer, may be one digit's strokes (a 5's bar lifted off)
MAX_DIGIT_SPAN = 1.6  # pieces are joined into one digit only while they span at most this many digit heights
# A digit's score is its log-odds, log(p / (1 - p)), over the picture's typical digit's (`_typical_log_odds`):
# measured so, a model's sharper or softer probabilities (temperature scaling) change no reading. A digit adds
# its score less SURETY_BAR: one read half as surely as the typical digit still counts for the reading (a plain
# product of confidences would favour reading a touching "41" as one confident 4).
SURETY_BAR = 0.35
CUT_COST = 0.5  # what a cut through ink costs a reading: its digits must pay for it
# A piece that is in no candidate digit (a sliver of a long stroke, such as a 5's top bar drawn apart and past the
# digit) is left out at this cost: more than any digit's shortfall, so that a piece that may be read is read.
SKIP_COST = 2.0
TYPICAL_FLOOR = 1.0  # the typical log-odds is at least this (p = 0.73): a picture of unsure marks is not inflated
WIDE_DIGIT = 1.3  # a digit wider than this many of the line's digit heights is rare (0.5% of MNIST's) ...
WIDE_COST = 1.0  # ... each digit height wider costs a reading this much: two touching digits read as one
MIN_DIGIT_HEIGHT = 0.4  # a piece shorter than this fraction of the line's digit height is no digit alone
MIN_CUT_HEIGHT = 0.6  # a piece cut from a mark is at least this fraction of the line's digit height ...
MIN_ROW_COVER = 0.9  # a piece cut from a mark has ink in this fraction of its rows, at least (see `_whole_height`)
MAX_CROPS = 1024  # candidate digits a picture may give the classifier (~1-3 s on one core): more is no number
CROP_BATCH = 1024  # crops per forward pass: a picture with many marks is classified in a few passes
NO_NUMBER = "no number found"


@dataclass
class Digit:
    """One digit read: its label, the classifier's probability for it, and its box [x0, y0, x1, y1]
    in the picture's own pixels (upright, as decoded)."""

    label: int
    confidence: float
    box: list[int]

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": round(self.confidence, 6), "box": self.box}


@dataclass
class Reading:
    """The number read in one picture, or why there is none (`error`, with `text` None)."""

    source: str  # the file's path, or "<image N>" for an image passed in memory
    text: str | None = None  # the digits read, left to right ("2903")
    digits: list[Digit] = field(default_factory=list)
    error: str | None = None  # one line; set when no number was read

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        """A JSON-ready dict; strings hold no lone surrogates (see `Prediction.to_dict`)."""
        return {"file": escape_surrogates(self.source), "text": self.text,
                "digits": [d.to_dict() for d in self.digits],
                "error": None if self.error is None else escape_surrogates(self.error)}


def read(model: Classifier, images: Source | Sequence[Source], *, invert: str = "auto",
         reject: str = DEFAULT_STRICTNESS) -> list[Reading]:
    """Read the number in each image: one `Reading` per input, in order.

    Args:
        model: a digit classifier, as `mnistlab.load_model` loads it (a checkpoint or an .onnx file).
        images: paths, files' bytes, binary file objects, Pillow images, (H, W) arrays or tensors, one of them
            alone, or an (N, H, W) batch: as `mnistlab.predict` takes them. A bad one comes back with its `error`.
        invert: "auto", "yes" or "no"; see `mnistlab.preprocessing.preprocess`.
        reject: how strictly a mark standing alone must look like a digit to be read ("off", "normal" or
            "strict", as `predict`'s); one that does not is left out of the number.

    Raises:
        ValueError: `invert` is not one of INVERT_CHOICES, or `reject` not one of STRICTNESS.
        ModelError: the model's dataset is not laid out as digits (Fashion-MNIST's garments fill their frame).
    """
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert must be one of {', '.join(INVERT_CHOICES)}, got {invert!r}")
    if reject not in STRICTNESS:
        raise ValueError(f"reject must be one of {', '.join(STRICTNESS)}, got {reject!r}")
    if model.layout != "digit":
        raise ModelError(f"reading numbers needs a digit model; this one's images are laid out as {model.layout!r}")
    threshold = threshold_for(model, reject)
    return [_read_one(model, item, index, invert, threshold) for index, item in enumerate(as_sources(images))]


def _read_one(model: Classifier, item: Source, index: int, invert: str, threshold: Threshold) -> Reading:
    """Read one input; any failure becomes the Reading's error, never the caller's."""
    source = source_name(item, index)
    try:
        if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(item, "read"):
            item = load_image(item, name=source)
        return _read_picture(model, item, source, invert, threshold)
    except MnistlabError as e:
        message = str(e).removeprefix(f"{source}: ")
        if isinstance(e, NoDigitError):
            message = message.replace("no digit found", NO_NUMBER)
        return Reading(source, error=message)
    except Exception as e:  # a bug met by one odd input must not lose the answers for the others
        return Reading(source, error=f"cannot read it ({type(e).__name__}: {e})")


def _read_picture(model: Classifier, image: object, source: str, invert: str, threshold: Threshold) -> Reading:
    """A decoded picture or an in-memory image → its Reading. Raises MnistlabError for what it cannot read."""
    gray = to_grayscale(image, READ_WORKING_SIZE)
    if min(gray.shape) < MIN_DIGIT_PIXELS:
        raise NoDigitError(f"{NO_NUMBER} (the image is only {gray.shape[1]}×{gray.shape[0]} pixels)")
    height, width = _original_size(image, gray)
    dark_ink = ink_is_dark(gray) if invert == "auto" else invert == "yes"
    ink = stretch_contrast(level_background(1.0 - gray if dark_ink else gray))
    line = find_marks(ink)
    parts = pieces(line)
    candidates = _candidates(line, parts)
    probabilities = _classify(model, [crop for _, _, crop, _ in candidates])
    if not np.isfinite(probabilities).all():
        return Reading(source, error=NOT_A_NUMBER)
    digits, left_out = _best_reading(line, parts, candidates, probabilities, threshold)
    if not digits:
        why = "its marks do not look like digits" if left_out else "only specks of ink"
        return Reading(source, error=f"{NO_NUMBER} ({why})")
    sy, sx = height / gray.shape[0], width / gray.shape[1]  # working pixels → the picture's own
    found = [Digit(label, confidence, [math.floor(x0 * sx), math.floor(y0 * sy),
                                       min(width, math.ceil(x1 * sx)), min(height, math.ceil(y1 * sy))])
             for label, confidence, (y0, x0, y1, x1) in digits]
    return Reading(source, text="".join(model.classes[d.label] for d in found), digits=found)


def _original_size(image: object, gray: np.ndarray) -> tuple[int, int]:
    """(height, width) of the picture as given, before the working reduction."""
    size = getattr(image, "size", None)
    if isinstance(size, tuple) and len(size) == 2:  # a Pillow image: (width, height)
        return size[1], size[0]
    shape = tuple(np.shape(image))
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    return (shape[0], shape[1]) if len(shape) >= 2 else gray.shape


# A candidate digit: consecutive pieces [first, stop) of the line, as a 28×28 crop, with its ink's box in working pixels
Candidate = tuple[int, int, np.ndarray, tuple[int, int, int, int]]


def _candidates(line: Line, parts: list[Piece]) -> list[Candidate]:
    """Every group of consecutive pieces that may be one digit: each piece alone, each mark whole, and runs
    of pieces no wider than MAX_DIGIT_SPAN digit heights (a digit in several strokes, or cut from its neighbour).

    Raises:
        NoDigitError: more than MAX_CROPS candidates (a texture or a drawing, not a number).
    """
    found: list[Candidate] = []
    widest = MAX_DIGIT_SPAN * line.digit_height
    for first in range(len(parts)):
        left = line.marks[parts[first].mark].box[1] + parts[first].start
        for stop in range(first + 1, len(parts) + 1):
            group, last = parts[first:stop], parts[stop - 1]
            if len(group) > 1:
                if group[-2].mark != last.mark and \
                        overlap(line.marks[group[-2].mark], line.marks[last.mark]) < -JOIN_GAP * line.digit_height:
                    break  # paper between two marks' columns: two digits (one digit's strokes overlap, or nearly)
                right = max(line.marks[p.mark].box[1] + p.stop for p in group)
                if right - left > widest and not _whole_mark(line, group):
                    if group[0].mark != last.mark:
                        break
                    continue  # the whole of this wide mark may still come
            cropped = crop_pieces(line, group)
            if cropped is not None and (not any(p.cut for p in group) or _whole_height(line, *cropped)):
                found.append((first, stop, *cropped))
            if len(found) > MAX_CROPS:
                raise NoDigitError(f"{NO_NUMBER} (its marks may be cut into more than the {MAX_CROPS} candidate "
                                   "digits a number may have)")
    return found


def _whole_height(line: Line, digit: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    """Whether a crop cut from a mark may be a digit: as tall as MIN_CUT_HEIGHT of the line's digits, its ink
    running from top to bottom with no empty row between (every digit's does). A sliver cut off a digit's
    edge (the tips of a 3's arms) is neither, and would read as a confident 1."""
    rows = np.flatnonzero((digit > INK_THRESHOLD).any(1))
    tall = box[2] - box[0] >= MIN_CUT_HEIGHT * line.digit_height
    return tall and rows.size > 0 and rows.size >= MIN_ROW_COVER * (rows[-1] - rows[0] + 1)


def _classify(model: Classifier, crops: list[np.ndarray]) -> np.ndarray:
    if not crops:
        return np.zeros((0, len(model.classes)), np.float32)
    return np.concatenate([model.probabilities(np.stack(crops[i:i + CROP_BATCH]))
                           for i in range(0, len(crops), CROP_BATCH)])  # (crops, classes)


def _best_reading(line: Line, parts: list[Piece], candidates: list[Candidate], probabilities: np.ndarray,
                  threshold: Threshold) -> tuple[list[tuple], list[tuple]]:
    """The grouping of the pieces into digits with the best score, by a dynamic programme over the pieces,
    left to right: each digit adds its log-odds over the typical digit's less SURETY_BAR, each cut through ink
    costs CUT_COST, a digit wider than WIDE_DIGIT line heights WIDE_COST per height beyond, and a piece left out
    of every digit SKIP_COST. Returns (label, confidence, box) for each digit, and the boxes of the marks left
    out as not digits. A piece alone shorter than MIN_DIGIT_HEIGHT is no digit (a stroke's fragment, a dot):
    it is left out, at no cost, unless it joins its neighbour. So may a whole mark of which no run of pieces
    (the mark whole included) scores `threshold` (on the "not a digit" rule's score) or more: digits that
    touch make a mark that does not look like one digit, but each of them does."""
    surety = _log_odds(probabilities)
    scores = threshold.scores(probabilities)  # the "not a digit" rule's
    typical = _typical_log_odds(line, parts, candidates, surety)
    ending: dict[int, list[tuple]] = {}  # stop → (first, box, probabilities, log-odds) of the candidates ending there
    for (first, stop, _, box), p, sure in zip(candidates, probabilities, surety, strict=True):
        ending.setdefault(stop, []).append((first, box, p, sure))
    # A mark is no digit when no run of its own pieces looks like one: digits that touch have some that do.
    looks_like_a_digit = {parts[first].mark for (first, stop, _, _), s in zip(candidates, scores, strict=True)
                          if parts[first].mark == parts[stop - 1].mark and s >= threshold.value}
    # best[k]: the first k pieces read → (the best score, its digits, the marks it left out as not digits); every k
    # has one, since any piece may be skipped
    best: list[tuple[float, list, list]] = [(0.0, [], [])]
    for stop in range(1, len(parts) + 1):
        options = [(best[stop - 1][0] - SKIP_COST, *best[stop - 1][1:])]
        for first, box, p, sure in ending.get(stop, []):
            score, digits, left_out = best[first]
            if stop == first + 1 and box[2] - box[0] < MIN_DIGIT_HEIGHT * line.digit_height:
                options.append(best[first])  # too short to be a digit alone: a fragment, or a dot
                continue
            if _whole_mark(line, parts[first:stop]) and parts[first].mark not in looks_like_a_digit:
                options.append((score, digits, [*left_out, box]))  # a mark that does not look like a digit
            cut = first > 0 and parts[first].cut and parts[first - 1].mark == parts[first].mark
            gain = sure / typical - SURETY_BAR - (CUT_COST if cut else 0.0)
            gain -= WIDE_COST * max(0.0, (box[3] - box[1]) / line.digit_height - WIDE_DIGIT)
            options.append((score + gain, [*digits, (int(p.argmax()), float(p.max()), box)], left_out))
        best.append(max(options, key=lambda option: option[0]))
    _, digits, left_out = best[-1]
    return digits, left_out


def _whole_mark(line: Line, group: list[Piece]) -> bool:
    """Whether the pieces are one mark, whole."""
    first, last = group[0], group[-1]
    return first.mark == last.mark and first.start == 0 and last.stop == line.marks[last.mark].width


def _log_odds(probabilities: np.ndarray) -> np.ndarray:
    """Each candidate's log-odds of its likeliest class, log(p / (1 - p)): (candidates,)."""
    top = np.clip(probabilities.max(1, initial=0.0).astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(top / (1 - top))


def _typical_log_odds(line: Line, parts: list[Piece], candidates: list[Candidate], surety: np.ndarray) -> float:
    """What a digit of this picture scores with this model: the median log-odds of the marks that stand alone
    (uncut, as tall as a digit), else the best candidate's; at least TYPICAL_FLOOR. Scores are measured
    against it, so that a model whose probabilities are sharper or softer (temperature-scaled) reads alike."""
    alone = [sure for (first, stop, _, box), sure in zip(candidates, surety, strict=True)
             if stop == first + 1 and not parts[first].cut and box[2] - box[0] >= MIN_CUT_HEIGHT * line.digit_height]
    typical = float(np.median(alone)) if alone else float(surety.max(initial=0.0))
    return max(typical, TYPICAL_FLOOR)


def format_table(readings: Sequence[Reading]) -> str:
    """One row per file: file, the number read, each digit with its confidence; a failure shows its error."""
    rows = [("file", "number", "digits")]
    for r in readings:
        if r.ok:
            rows.append((escape(r.source), r.text, "  ".join(f"{d.label} {d.confidence:.1%}" for d in r.digits)))
        else:
            rows.append((escape(r.source), "-", f"error: {escape(r.error)}"))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}" for row in rows)


def format_json(readings: Sequence[Reading]) -> str:
    """A JSON array with one object per file (`Reading.to_dict`), one object per line; strict ASCII JSON."""
    if not readings:
        return "[]"
    return "[\n" + ",\n".join(json.dumps(r.to_dict(), allow_nan=False) for r in readings) + "\n]"
