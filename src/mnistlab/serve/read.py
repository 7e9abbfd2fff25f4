"""POST /api/read: the handwritten number in an upload, answered as `mnistlab read --json` answers a file.

The upload goes through /api/predict's rings (body limit, content type, `load_image`'s formats and bomb
limit); the whole reading (segmentation, the crops' one forward pass) then runs in the predictor's pool,
one reading per thread, so that at most one reading per core is under way and the event loop stays free.
`mnistlab.reading` bounds the work of one picture (its working size, its number of marks and pieces).
"""

from __future__ import annotations

import asyncio
import json

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ..decoding import load_image
from ..errors import ApiError, ImageError, ModelError
from ..reading import read
from .api import UPLOAD_BODY, UPLOAD_ERRORS, ReadResponse, error
from .choice import ModelChoice
from .inference import MAX_UPLOAD_PIXELS, Predictor
from .uploads import read_upload

READ_ERRORS = {
    **UPLOAD_ERRORS,
    422: error("no number found: the image is blank, holds only specks, or too many marks to be a number; "
               "or the model served is not a digit model"),
}


def add_read_route(app: FastAPI, models: ModelChoice) -> None:
    """POST /api/read over the model that answers now (original or learned) and its pool."""

    @app.post("/api/read", response_model=None, openapi_extra=UPLOAD_BODY, summary="Read the number in an image",
              responses={200: {"model": ReadResponse, "description": "the number read, digit by digit"},
                         **READ_ERRORS})
    async def read_number(request: Request) -> Response:
        """The image as multipart/form-data (field `file`) or as the raw body (PNG, JPEG, BMP, GIF, WebP or
        TIFF): every digit found, left to right, each brought to MNIST's convention as `mnistlab read` does; a
        mark that does not look like a digit (`mnistlab serve --reject`) is left out."""
        data = await read_upload(request)
        predictor = await models.predictor()
        answer = await asyncio.get_running_loop().run_in_executor(predictor.pool, read_upload_number,
                                                                  predictor, data)
        return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")


def read_upload_number(predictor: Predictor, data: bytes) -> dict:
    """An upload's bytes → the API's answer (`Reading.to_dict` less the file, with the model), or an ApiError:
    400 for what `load_image` refuses, 422 when no number is read."""
    try:
        image = load_image(data, MAX_UPLOAD_PIXELS, name="upload")
    except ImageError as e:
        raise ApiError(400, str(e)) from None
    try:
        reading = read(predictor.model, image, reject=predictor.reject)[0]
    except ModelError as e:
        raise ApiError(422, str(e)) from None
    if not reading.ok:
        raise ApiError(422, f"upload: {reading.error}")
    answer = reading.to_dict()
    del answer["file"]
    answer["model"] = predictor.summary
    return answer
