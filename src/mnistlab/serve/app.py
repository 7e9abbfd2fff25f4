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
from .api import EDGE_ERRORS, UPLOAD_BODY, UPLOAD_ERRORS, ModelInfo, PredictResponse
from .choice import ModelChoice, weights_sha256
from .collect import add_collect_routes
from .docs import add_docs
from .inference import Predictor, model_summary
from .learn import LearnSettings, add_learn_routes, check_learn_folder, default_learn_folder
from .learn_job import LEARN_SECONDS, can_learn
from .policy import Policy, PolicyMiddleware
from .read import add_read_route
from .uploads import MAX_UPLOAD_BYTES, BodyLimit, read_upload

STATIC_DIR = Path(__file__).parent.parent / "static"


def create_app(run: str | Path | Classifier, *, collect_dir: str | Path | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, threads: int | None = None,
               allowed_hosts: Iterable[str] = (), allow_origins: Iterable[str] = (),
               listen: str | None = None, run_name: str | None = None, learn_out: str | Path | None = None,
               learn_seconds: float = LEARN_SECONDS, learn_threads: int | None = None,
               learn_data_dir: str | None = None,
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
        learn_out: with a collect folder, where learned runs go (default: beside it, `DIR-learned`); learning
            needs a checkpoint (not an exported file).
        learn_seconds, learn_threads, learn_data_dir: a learning job's time limit, torch threads (default: the
            cores but one) and dataset folder (default: as `mnistlab finetune` finds it).
        reject: "off", "normal" or "strict": how readily a drawing is answered "not a digit" (`mnistlab.rejection`).
    """
    check_value(PredictOptions, "reject", reject)
    if max_upload_bytes < 1:
        raise ServeError(f"the upload limit must be at least 1 byte, got {max_upload_bytes}")
    # One onnxruntime thread per inference, as for torch in `serve`: the pool runs one inference per core.
    model = load_model(run, device="cpu", threads=1) if isinstance(run, str | os.PathLike) else run
    pool = ThreadPoolExecutor(threads or len(os.sched_getaffinity(0)), thread_name_prefix="mnistlab-predict")

    def warm_predictor(classifier: Classifier) -> Predictor:
        predictor = Predictor(classifier, pool, model_summary(classifier), reject)
        predictor.warm_up()
        return predictor

    predictor = warm_predictor(model)
    collect = check_collect_folder(collect_dir) if collect_dir is not None else None
    base_sha256 = weights_sha256(model)
    learning = None
    if collect is not None and base_sha256 is not None and can_learn():
        learning = LearnSettings(check_learn_folder(learn_out or default_learn_folder(collect_dir)), learn_seconds,
                                 learn_threads, learn_data_dir)
    models = ModelChoice(predictor, learning.folder if learning else None,
                         lambda path: warm_predictor(load_model(path, device="cpu", threads=1)), base_sha256)
    models.refresh()
    app = FastAPI(title="mnistlab", summary="Read handwritten digits with an MNIST model.",
                  description=f"Serving the model `{predictor.summary['name']}` ({model.model_name}).",
                  docs_url=None, redoc_url=None)
    app.state.learn_folder = learning.folder if learning else None  # what `mnistlab serve` says at start
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

    def model_info() -> dict:
        served = models.current
        return {**served.summary, "parameters": served.model.parameter_count, "classes": list(served.classes),
                "config": without_local_paths(finite_or_null(served.model.config)), "collect": collect_dir is not None,
                "max_upload_bytes": max_upload_bytes, "learn": learning is not None, **models.describe()}

    @app.get("/api/model", response_model=ModelInfo, responses=EDGE_ERRORS, summary="The model being served")
    async def served_model() -> dict:
        """The model that answers now; `use` says whether it is the original or the learned one."""
        await models.predictor()
        return model_info()

    @app.post("/api/predict", response_model=None, openapi_extra=UPLOAD_BODY, summary="Read the digit in an image",
              responses={200: {"model": PredictResponse, "description": "the model's answer"}, **UPLOAD_ERRORS})
    async def predict(request: Request, preprocessed: bool = Query(
            False, description="also send the 28×28 image the model was given (base64 PNG)")) -> Response:
        """The image as multipart/form-data (field `file`) or as the raw body (PNG, JPEG, BMP, GIF,
        WebP or TIFF). It is brought to MNIST's convention first, as `mnistlab predict` does."""
        data = await read_upload(request)
        predictor = await models.predictor()
        _, answer = await predictor.answer(data, preprocessed)
        return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")

    shown = run_name or (os.fspath(run) if isinstance(run, str | os.PathLike) else model.path.name)
    if collect is not None:
        add_collect_routes(app, models, collect, collect_dir, shown)
    unavailable = ("learning needs a collect folder: start the server with --collect DIR" if collect is None else
                   "an exported model cannot learn: serve the run folder it was exported from" if base_sha256 is None
                   else "learning needs Linux or macOS (a file lock keeps it to one job at a time)")
    add_learn_routes(app, models, learning, collect, os.fspath(run) if isinstance(run, str | os.PathLike)
                     else os.fspath(model.path), shown, unavailable, model_info)
    add_read_route(app, models)
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
