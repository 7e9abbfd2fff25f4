"""--collect: save labelled drawings into a folder (`DIR/<digit>/<new name>.png`), count them, and say
what to run on them."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from ..decoding import IMAGE_SUFFIXES
from ..errors import ApiError, LabelledError
from ..labelled import DIGITS, save_labelled
from ..pretrained import PREFIX
from .api import EDGE_ERRORS, UPLOAD_BODY, UPLOAD_ERRORS, CollectedResponse, CollectResponse, error
from .inference import Predictor
from .uploads import read_upload


def add_collect_routes(app: FastAPI, predictor: Predictor, folder: Path, shown: str | os.PathLike,
                       run_name: str) -> None:
    """POST /api/collect and GET /api/collected, over `folder` (already checked), shown to people as `shown`."""
    classes = len(predictor.classes)
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
        image, _ = await predictor.answer(data)  # only an image with a digit is kept
        try:
            path = await run_in_threadpool(save_labelled, folder, number, image)
        except LabelledError as e:  # the folder, not the request, is at fault: a symlink, no permission
            raise ApiError(500, f"the drawing could not be saved: {e}") from None
        return {"label": number, "file": f"{number}/{path.name}"}

    @app.get("/api/collected", response_model=CollectedResponse, responses=EDGE_ERRORS,
             summary="How many drawings the collect folder holds")
    async def collected() -> dict:
        counts = await run_in_threadpool(collected_counts, folder, min(classes, len(DIGITS)))
        return {"counts": counts, "total": sum(counts), "commands": commands}


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
