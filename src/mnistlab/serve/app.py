"""The web app over one model: the page, the routes, and every error as `{"detail": "one line"}`."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._io import finite_or_null
from ..classifier import Classifier
from ..config import PredictOptions, check_value
from ..errors import ApiError, ServeError
from ..labelled import check_collect_folder
from ..model_loading import load_model
from ..rejection import threshold_for
from .api import EDGE_ERRORS, UPLOAD_BODY, UPLOAD_ERRORS, ModelInfo, PredictResponse
from .collect import add_collect_routes
from .docs import add_docs
from .inference import Predictor, model_summary
from .policy import Policy, PolicyMiddleware
from .uploads import MAX_UPLOAD_BYTES, BodyLimit, read_upload

STATIC_DIR = Path(__file__).parent.parent / "static"


def create_app(run: str | Path | Classifier, *, collect_dir: str | Path | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, threads: int | None = None,
               allowed_hosts: Iterable[str] = (), allow_origins: Iterable[str] = (),
               listen: str | None = None, run_name: str | None = None,
               reject: str = PredictOptions.reject) -> FastAPI:
    """The web app over one model (a run folder, an exported .onnx file, or a loaded model), loaded once.

    Args:
        run: the run folder or .onnx file to serve (`mnistlab.load_model`), or a loaded `Checkpoint`
            or `OnnxModel`.
        collect_dir: where POST /api/collect saves labelled drawings; None leaves that route out.
        max_upload_bytes: the request body limit.
        threads: images decoded and preprocessed at once (default: the CPU cores this process may use).
        allowed_hosts: names the Host header may give besides loopback's (a proxy's name); "*" takes any.
        allow_origins: other sites (e.g. "https://example.org") whose pages may ask for predictions; "*": any.
            Writes (/api/collect) are taken only from this server's own page, whatever this says.
        listen: the address the server listens on, which the Host header may also give.
        run_name: how the page's suggested commands name the model (default: `run` as given).
        reject: "off", "normal" or "strict": how readily a drawing is answered "not a digit" (`mnistlab.rejection`).
    """
    check_value(PredictOptions, "reject", reject)
    if max_upload_bytes < 1:
        raise ServeError(f"the upload limit must be at least 1 byte, got {max_upload_bytes}")
    # One onnxruntime thread per inference, as for torch in `serve`: the pool runs one inference per core.
    model = load_model(run, device="cpu", threads=1) if isinstance(run, str | os.PathLike) else run
    pool = ThreadPoolExecutor(threads or len(os.sched_getaffinity(0)), thread_name_prefix="mnistlab-predict")
    predictor = Predictor(model, pool, model_summary(model), threshold_for(model, reject))
    predictor.warm_up()
    app = FastAPI(title="mnistlab", summary="Read handwritten digits with an MNIST model.",
                  description=f"Serving the model `{predictor.summary['name']}` ({model.model_name}).",
                  docs_url=None, redoc_url=None)
    add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    docs_csp = add_docs(app)
    app.add_middleware(BodyLimit, limit=max_upload_bytes)
    app.add_middleware(PolicyMiddleware, policy=Policy.make(allowed_hosts, allow_origins, listen), docs_csp=docs_csp)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    info = {**predictor.summary, "parameters": model.parameter_count, "classes": list(predictor.classes),
            "config": without_local_paths(finite_or_null(model.config)), "collect": collect_dir is not None,
            "max_upload_bytes": max_upload_bytes}

    @app.get("/api/model", response_model=ModelInfo, responses=EDGE_ERRORS, summary="The model being served")
    def model_info() -> dict:
        return info

    @app.post("/api/predict", response_model=None, openapi_extra=UPLOAD_BODY, summary="Read the digit in an image",
              responses={200: {"model": PredictResponse, "description": "the model's answer"}, **UPLOAD_ERRORS})
    async def predict(request: Request, preprocessed: bool = Query(
            False, description="also send the 28×28 image the model was given (base64 PNG)")) -> Response:
        """The image as multipart/form-data (field `file`) or as the raw body (PNG, JPEG, BMP, GIF,
        WebP or TIFF). It is brought to MNIST's convention first, as `mnistlab predict` does."""
        data = await read_upload(request)
        _, answer = await predictor.answer(data, preprocessed)
        return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")

    if collect_dir is not None:
        add_collect_routes(app, predictor, check_collect_folder(collect_dir), collect_dir,
                           run_name or (os.fspath(run) if isinstance(run, str | os.PathLike) else model.path.name))
    return app


def without_local_paths(value: Any) -> Any:
    """`value` (a config) with every absolute path reduced to its last name: what a client may see."""
    if isinstance(value, dict):
        return {k: without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_local_paths(v) for v in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", value)):
        return Path(value.replace("\\", "/")).name
    return value


def add_error_handlers(app: FastAPI) -> None:
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
        return JSONResponse({"detail": problems.replace("\n", " ")}, status_code=422)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "internal server error"}, status_code=500)
