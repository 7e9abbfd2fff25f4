"""Uploads: the request body limit (ASGI middleware), and reading an image out of a request."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import ServeOptions
from ..errors import ApiError
from .responses import send_error

MAX_UPLOAD_BYTES = ServeOptions().max_upload_bytes  # default request body limit (`--max-upload-mb`)
# The raw-body content types /api/predict takes; the bytes decide the format (load_image), not the type.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/gif", "image/webp", "image/tiff",
               "application/octet-stream")
_CLOSE = [(b"connection", b"close")]  # the rest of a refused body is not read: the connection cannot go on


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: answer 413 to a body over `limit` bytes without reading the rest of it.

    A declared Content-Length over the limit is refused before a byte of the body is read; a
    chunked body (no Content-Length) or one longer than declared is counted as it arrives and
    refused as soon as it passes the limit, so no request holds more than `limit` bytes.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope["headers"] if k == b"content-length"]
        if declared and not (len(declared) == 1 and declared[0].isdigit()):
            await send_error(send, 400, "malformed Content-Length header", _CLOSE)
            return
        if declared and int(declared[0]) > self.limit:
            await send_error(send, 413, self._message(), _CLOSE)
            return
        received, started = 0, False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _BodyTooLarge:
            if started:
                raise
            await send_error(send, 413, self._message(), _CLOSE)

    def _message(self) -> str:
        return f"the upload is over the limit of {self.limit:,} bytes"


async def read_upload(request: Request) -> bytes:
    """The image bytes of a request: the multipart field `file`, or the raw body of an image type.

    Raises:
        ApiError: 400 for a multipart body without a `file` or an empty upload, 415 for another content type.
    """
    media = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "a multipart upload needs the image in a file field named 'file'")
            data = await upload.read()
    elif media in IMAGE_TYPES:
        data = await request.body()
    else:
        raise ApiError(415, f"content type {media!r} is not an image; send image/png, image/jpeg... "
                            "or multipart/form-data with a 'file' field")
    if not data:
        raise ApiError(400, "the upload is empty")
    return data
