"""--collect: save labelled drawings into a folder (`DIR/<digit>/<new name>.png`), count them, say what to
run on them, and take one back (undo).

    POST   /api/collect?label=D       save a drawing → {"label", "file", "read_as", "confidence", "counts"}
    GET    /api/collected             {"counts", "total", "commands", "wanted", "minimum", "short"}
    DELETE /api/collect[?file=D/NAME] remove that drawing (default: the newest one the server saved)
                                      → {"file", "label", "counts"}
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from pathlib import Path

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from ..decoding import IMAGE_SUFFIXES
from ..errors import ApiError, LabelledError
from ..labelled import DIGITS, save_labelled
from ..pretrained import PREFIX
from .api import (
    EDGE_ERRORS,
    UPLOAD_BODY,
    UPLOAD_ERRORS,
    CollectedResponse,
    CollectResponse,
    RemovedResponse,
    error,
)
from .choice import ModelChoice
from .learn_job import LEARN_MIN_PER_DIGIT, WANTED_PER_DIGIT
from .uploads import read_upload

SAVED_NAME = re.compile(r"\d{8}-\d{6}-[0-9a-f]{8}\.png")  # how `save_labelled` names a drawing


def add_collect_routes(app: FastAPI, models: ModelChoice, folder: Path, shown: str | os.PathLike,
                       run_name: str) -> None:
    """POST and DELETE /api/collect and GET /api/collected, over `folder` (already checked), shown to people
    as `shown`; `models` reads each drawing."""
    classes = len(models.original.classes)
    digits = min(classes, len(DIGITS))
    commands = suggested_commands(run_name, shown)

    @app.post("/api/collect", response_model=CollectResponse, status_code=201, openapi_extra=UPLOAD_BODY,
              responses={**UPLOAD_ERRORS, 422: error("no digit found, or not exactly one `label` that is a class "
                                                     "number written plainly"),
                         500: error("the collect folder cannot be written")},
              summary="Save a labelled drawing")
    async def collect(request: Request, label: str = Query(
            pattern=r"^(0|[1-9][0-9]*)$", description=f"the class drawn: one of 0-{classes - 1}, written plainly"),
                      ) -> dict:
        """Save the image as `<collect folder>/<label>/<new name>.png` (the server names the file)."""
        number = strict_label(request, classes)
        data = await read_upload(request)
        predictor = await models.predictor()
        image, answer = await predictor.answer(data)  # only an image with a digit is kept
        try:
            path = await run_in_threadpool(save_labelled, folder, number, image)
        except LabelledError as e:  # the folder, not the request, is at fault: a symlink, no permission
            raise ApiError(500, f"the drawing could not be saved: {e}") from None
        counts = await run_in_threadpool(collected_counts, folder, digits)
        return {"label": number, "file": f"{number}/{path.name}", "read_as": answer["label"],
                "confidence": answer["confidence"], "counts": counts}

    @app.delete("/api/collect", response_model=RemovedResponse,
                responses={**EDGE_ERRORS, 404: error("no such drawing (or none saved by the server)"),
                           422: error("`file` is not a drawing's name as POST /api/collect gave it"),
                           500: error("the drawing could not be removed")},
                summary="Remove a saved drawing (undo)")
    async def uncollect(file: str | None = Query(
            None, description="the drawing to remove, as POST /api/collect named it "
                              "(`3/20250101-120000-0a1b2c3d.png`); default: the newest drawing the server saved")
                        ) -> dict:
        label, name = parse_saved(file) if file is not None else await run_in_threadpool(newest_saved, folder)
        await run_in_threadpool(remove_saved, folder, label, name)
        counts = await run_in_threadpool(collected_counts, folder, digits)
        return {"file": f"{label}/{name}", "label": label, "counts": counts}

    @app.get("/api/collected", response_model=CollectedResponse, responses=EDGE_ERRORS,
             summary="How many drawings the collect folder holds")
    async def collected() -> dict:
        counts = await run_in_threadpool(collected_counts, folder, digits)
        return {"counts": counts, "total": sum(counts), "commands": commands, "wanted": WANTED_PER_DIGIT,
                "minimum": LEARN_MIN_PER_DIGIT, "short": [d for d, n in enumerate(counts) if n < LEARN_MIN_PER_DIGIT]}


def parse_saved(file: str) -> tuple[int, str]:
    """(digit, name) of a drawing as POST /api/collect named it, `D/YYYYmmdd-HHMMSS-xxxxxxxx.png`, or 422."""
    label, slash, name = file.partition("/")
    if not slash or label not in [str(d) for d in DIGITS] or not SAVED_NAME.fullmatch(name):
        raise ApiError(422, f"query file: expected a drawing as POST /api/collect named it, such as "
                            f"3/20250101-120000-0a1b2c3d.png, got {file[:60]!r}")
    return int(label), name


def newest_saved(folder: Path) -> tuple[int, str]:
    """(digit, name) of the drawing the server saved last (by modification time), or 404."""
    newest: tuple[int, int, str] | None = None
    for label in DIGITS:
        try:
            with os.scandir(folder / str(label)) as entries:
                for entry in entries:
                    if SAVED_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                        stamp = entry.stat(follow_symlinks=False).st_mtime_ns
                        if newest is None or stamp > newest[0]:
                            newest = (stamp, label, entry.name)
        except OSError:  # not made yet: nothing saved there
            continue
    if newest is None:
        raise ApiError(404, "no drawing to remove: the collect folder holds none that the server saved")
    return newest[1], newest[2]


def remove_saved(folder: Path, label: int, name: str) -> None:
    """Remove `folder/label/name`, never through a symlink: 404 when it is not there (or not a regular file)."""
    try:
        digit_dir = os.open(folder / str(label), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        raise ApiError(404, f"no drawing {label}/{name} in the collect folder") from None
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=digit_dir, follow_symlinks=False).st_mode):
            raise FileNotFoundError
        os.unlink(name, dir_fd=digit_dir)
    except FileNotFoundError:
        raise ApiError(404, f"no drawing {label}/{name} in the collect folder") from None
    except OSError as e:
        raise ApiError(500, f"the drawing {label}/{name} could not be removed ({e.strerror})") from None
    finally:
        os.close(digit_dir)


def suggested_commands(run_name: str, folder: str | os.PathLike) -> list[str]:
    """The finetune and evaluate commands that use the collected drawings, ready to paste into a shell."""
    model, images = shlex.quote(run_name), shlex.quote(os.fspath(folder))
    return [f"mnistlab finetune {model} --images {images} --out runs/{suggested_run_name(run_name)}",
            f"mnistlab evaluate {model} --images {images}"]


def suggested_run_name(run_name: str) -> str:
    """`<model>-mine`, a folder name that every command reads as a run: pretrained:cnn → cnn-mine,
    runs/demo → demo-mine, runs/demo/model.onnx → model-mine. Only letters, digits, '.', '_' and '-'."""
    stem = Path(run_name.removeprefix(PREFIX)).name.removesuffix(".onnx")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-")
    return f"{stem or 'model'}-mine"


def strict_label(request: Request, classes: int) -> int:
    """The one `label` query parameter, written exactly as a class number ("3"; not " 3", "+3", "03"), or 422."""
    given = request.query_params.getlist("label")
    if len(given) != 1:
        raise ApiError(422, f"query label: give exactly one label, got {len(given)}")
    text = given[0]
    if not re.fullmatch(r"0|[1-9][0-9]{0,3}", text) or int(text) >= classes:
        raise ApiError(422, f"query label: expected one of the class numbers 0-{classes - 1}, written plainly, "
                            f"got {text[:20]!r}")
    return int(text)


def collected_counts(folder: Path, classes: int) -> list[int]:
    """How many image files each class's folder holds (regular files with an image suffix)."""
    counts = []
    for label in range(classes):
        try:
            with os.scandir(folder / str(label)) as entries:
                counts.append(sum(1 for e in entries if e.is_file(follow_symlinks=False)
                                  and Path(e.name).suffix.lower() in IMAGE_SUFFIXES))
        except OSError:  # not made yet (or unreadable): nothing collected there
            counts.append(0)
    return counts
