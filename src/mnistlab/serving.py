"""`mnistlab serve`: a page to draw a digit on and a JSON prediction API, over one model.

    GET  /               the drawing page (static files in mnistlab/static: no build step, no CDN)
    POST /api/predict    an image (multipart field `file`, or the raw body) → the model's answer
    POST /api/collect    with a collect folder: save a labelled drawing as DIR/<digit>/<new name>.png
    GET  /api/model      the model's name, config and metrics
    GET  /healthz        liveness
    GET  /docs           OpenAPI documentation

Every upload is checked once, at the edge, before any work: its size while it arrives
(`BodyLimit`), its content type, then `decoding.load_image`, which decodes only the
image formats mnistlab reads and refuses a decompression bomb from its header. Past that,
inference is the model's `predict`, the same code as `mnistlab predict`. Every error is a JSON
`{"detail": "..."}` with its status; no response carries a stack trace.

The model is a checkpoint (PyTorch) or an exported ONNX file (onnxruntime; `mnistlab.classifier`):
this module does not import torch, so serving an ONNX file runs without it.

Concurrency: the event loop hands each image to a pool of one thread per CPU core
(`Predictor.pool`), so at most that many inferences run at once and the rest queue; with torch's
(or onnxruntime's) intra-op threads set to 1 (`serve`, `create_app`), 16 clients keep the cores busy
without oversubscribing them (nor spawning a thread, and a malloc arena, per waiting request).
The threads share the model without a lock: in eval mode under `torch.inference_mode`, a forward
pass only reads the weights, which PyTorch supports from several threads at once (as onnxruntime
does for `InferenceSession.run`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._io import finite_or_null
from .classifier import Classifier
from .config import ServeOptions
from .decoding import load_image
from .errors import ApiError, ImageError, LabelledError, ServeError
from .labelled import check_collect_folder, save_labelled
from .loading import load_model
from .prediction import predict

STATIC_DIR = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = ServeOptions().max_upload_bytes  # default request body limit (`--max-upload-mb`)
MAX_UPLOAD_PIXELS = 12_000_000  # a 12 MP photo; larger is refused from the header (a 2 MB upload rarely holds more)
TOP_K = 3
# The raw-body content types /api/predict takes; the bytes decide the format (load_image), not the type.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/gif", "image/webp", "image/tiff",
               "application/octet-stream")
DOCS_ASSETS = "/docs-assets"  # Swagger UI's files, for /docs
PAGE_HEADERS = {  # the page loads nothing but its own files, and is never framed
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# --- the API's documented shapes ---------------------------------------------------------------------

class TopK(BaseModel):
    label: int = Field(ge=0, le=9)
    class_name: str = Field(alias="class", description="the class's name")
    probability: float


class ModelSummary(BaseModel):
    name: str = Field(description="the run folder's name")
    architecture: str = Field(description="the registered model name, e.g. mlp")
    test_accuracy: float | None = Field(description="accuracy on the test set recorded at training")


class PredictResponse(BaseModel):
    label: int = Field(ge=0, le=9, description="the predicted class's index (for MNIST, the digit)")
    class_name: str = Field(alias="class", description="the predicted class's name (\"7\", \"Trouser\")")
    confidence: float = Field(description="its probability")
    probabilities: list[float] = Field(min_length=10, max_length=10, description="softmax over the classes")
    top_k: list[TopK] = Field(description=f"the {TOP_K} likeliest classes, best first")
    preprocessed: str = Field(description="the 28×28 image the model was given: PNG, base64")
    model: ModelSummary


class ModelInfo(ModelSummary):
    parameters: int
    classes: list[str] = Field(description="the name of each class, in label order")
    config: dict = Field(description="the checkpoint's config.json, or the exported file's metadata")
    collect: bool = Field(description="whether POST /api/collect saves labelled drawings")
    max_upload_bytes: int


class CollectResponse(BaseModel):
    label: int
    file: str = Field(description="the saved file, relative to the collect folder")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, in one line")


def _error(description: str) -> dict:
    return {"model": ErrorResponse, "description": description}


UPLOAD_ERRORS = {
    400: _error("not an image, an unsupported format, truncated, empty, a decompression bomb (refused from "
                "its header), or a malformed multipart body"),
    413: _error("the body is over the upload limit (refused as it arrives)"),
    415: _error("a content type other than an image or multipart/form-data"),
    422: _error("no digit found: the image is blank or its marks too faint or small"),
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    **{kind: _BINARY for kind in IMAGE_TYPES},
}}}


# --- the request body limit ----------------------------------------------------------------------------

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
            await _send_json(send, 400, "malformed Content-Length header")
            return
        if declared and int(declared[0]) > self.limit:
            await _send_json(send, 413, self._message())
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
            await _send_json(send, 413, self._message())

    def _message(self) -> str:
        return f"the upload is over the limit of {self.limit:,} bytes"


async def _send_json(send: Send, status: int, detail: str) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


# --- inference -----------------------------------------------------------------------------------------

def model_summary(model: Classifier) -> dict:
    """The run's (or file's) name, model and recorded test accuracy (None when the config has no usable one)."""
    metrics = model.config.get("metrics")
    accuracy = metrics.get("test_acc") if isinstance(metrics, dict) else None
    usable = isinstance(accuracy, int | float) and not isinstance(accuracy, bool) and 0 <= accuracy <= 1
    return {"name": model.path.resolve().name, "architecture": str(model.model_name),
            "test_accuracy": float(accuracy) if usable else None}


@dataclass
class Predictor:
    """The loaded model and the threads that run inferences (one per core)."""

    model: Classifier
    pool: ThreadPoolExecutor
    summary: dict  # `model_summary`, sent with every answer

    async def answer(self, data: bytes) -> tuple[Image.Image, dict]:
        """`read` in the pool, awaited without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.read, data)

    def read(self, data: bytes) -> tuple[Image.Image, dict]:
        """Decode an upload and classify it: (the decoded image, the API's answer).

        Raises:
            ApiError: 400 for anything `load_image` refuses, 422 when no digit is found.
        """
        try:
            image = load_image(data, MAX_UPLOAD_PIXELS, name="upload")
        except ImageError as e:
            raise ApiError(400, str(e)) from None
        [prediction] = predict(self.model, image, top_k=TOP_K)
        if not prediction.ok:  # the image decoded, so what remains is "no digit found"
            raise ApiError(422, prediction.error)
        png = io.BytesIO()
        Image.fromarray(prediction.pixels()).save(png, format="PNG")
        answer = prediction.to_dict()  # as `mnistlab predict --json` gives it, less the file name
        del answer["file"]
        return image, {**answer, "preprocessed": base64.b64encode(png.getvalue()).decode("ascii"),
                       "model": self.summary}


async def read_upload(request: Request) -> bytes:
    """The image bytes of a request: the multipart field `file`, or the raw body of an image type."""
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


def _swagger_ui_folder() -> Path | None:
    """Swagger UI's script and style as installed with the serve extra (swagger-ui-bundle-v2), if they are."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # FastAPI's own /docs then, which loads them from a CDN
        return None
    folder = Path(swagger_ui_path)
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _add_offline_docs(app: FastAPI, swagger: Path) -> None:
    """/docs as FastAPI draws it, but every file it loads served from here: it works with no network."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="mnistlab API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")


def _warm_up(predictor: Predictor) -> None:
    """Classify one drawn stroke, so that the first request finds every module imported and warm."""
    image = Image.new("L", (56, 56))
    image.paste(255, (26, 8, 31, 48))
    predict(predictor.model, image)


# --- the app -------------------------------------------------------------------------------------------

def create_app(run: str | Path | Classifier, *, collect_dir: str | Path | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, workers: int | None = None) -> FastAPI:
    """The web app over one model (a run folder, an exported .onnx file, or a loaded model), loaded once.

    Args:
        run: the run folder or .onnx file to serve (`mnistlab.load_model`), or a loaded `Checkpoint`
            or `OnnxModel`.
        collect_dir: where POST /api/collect saves labelled drawings; None leaves that route out.
        max_upload_bytes: the request body limit.
        workers: inferences at once (default: the CPU cores this process may use).
    """
    if max_upload_bytes < 1:
        raise ServeError(f"the upload limit must be at least 1 byte, got {max_upload_bytes}")
    # One onnxruntime thread per inference, as for torch in `serve`: the pool runs one inference per core.
    model = load_model(run, device="cpu", threads=1) if isinstance(run, str | os.PathLike) else run
    threads = workers or len(os.sched_getaffinity(0))
    predictor = Predictor(model, ThreadPoolExecutor(threads, thread_name_prefix="mnistlab-predict"),
                          model_summary(model))
    _warm_up(predictor)
    swagger = _swagger_ui_folder()
    app = FastAPI(title="mnistlab", summary="Read handwritten digits with an MNIST model.",
                  description=f"Serving the model `{predictor.summary['name']}` ({model.model_name}).",
                  docs_url=None if swagger else "/docs", redoc_url=None)
    app.add_middleware(BodyLimit, limit=max_upload_bytes)
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if swagger:
        _add_offline_docs(app, swagger)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    info = {**predictor.summary, "parameters": model.parameter_count, "classes": list(model.classes),
            "config": finite_or_null(model.config), "collect": collect_dir is not None,
            "max_upload_bytes": max_upload_bytes}

    @app.get("/api/model", response_model=ModelInfo, summary="The model being served")
    def model_info() -> dict:
        return info

    @app.post("/api/predict", response_model=PredictResponse, responses=UPLOAD_ERRORS, openapi_extra=UPLOAD_BODY,
              summary="Read the digit in an image")
    async def predict(request: Request) -> dict:
        """The image as multipart/form-data (field `file`) or as the raw body (PNG, JPEG, BMP, GIF,
        WebP or TIFF). It is brought to MNIST's convention first, as `mnistlab predict` does."""
        data = await read_upload(request)
        _, answer = await predictor.answer(data)
        return answer

    if collect_dir is not None:
        folder = check_collect_folder(collect_dir)

        @app.post("/api/collect", response_model=CollectResponse, status_code=201, openapi_extra=UPLOAD_BODY,
                  responses={**UPLOAD_ERRORS, 422: _error("no digit found, or `label` is not a digit 0-9"),
                             500: _error("the collect folder cannot be written")},
                  summary="Save a labelled drawing")
        async def collect(request: Request, label: int = Query(ge=0, le=9, description="the digit drawn")) -> dict:
            """Save the image as `<collect folder>/<label>/<new name>.png` (the server names the file)."""
            data = await read_upload(request)
            image, _ = await predictor.answer(data)  # only an image with a digit is kept
            try:
                path = await run_in_threadpool(save_labelled, folder, label, image)
            except LabelledError as e:  # the folder, not the request, is at fault: a symlink, no permission
                raise ApiError(500, f"the drawing could not be saved: {e}") from None
            return {"label": label, "file": f"{label}/{path.name}"}

    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as `{"detail": "one line"}`; never a stack trace."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{' '.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "internal server error"}, status_code=500)


# --- running it ----------------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or a one-line ServeError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as e:
        raise ServeError(f"cannot listen on {host}:{port} ({getattr(e, 'strerror', None) or e})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Run `app` on a bound socket until Ctrl-C. One torch thread per inference: the app already
    runs one inference per core at a time, and more threads would only fight for the same cores.
    (An ONNX model's session was made with one thread; torch is then not loaded, and stays so.)"""
    import uvicorn

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False,
                            timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])
