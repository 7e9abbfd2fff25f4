"""`mnistlab serve`: a page to draw a digit on and a JSON prediction API, over one model.

    GET  /               the drawing page (static files in mnistlab/static: no build step, no CDN)
    POST /api/predict    an image (multipart field `file`, or the raw body) → the model's answer
    POST /api/collect    with a collect folder: save a labelled drawing as DIR/<digit>/<new name>.png
    DELETE /api/collect  with a collect folder: remove a saved drawing (undo)
    GET  /api/collected  with a collect folder: how many drawings of each class it holds, and what to run on them
    GET, POST, DELETE /api/learn   with a collect folder: learn the drawings' handwriting in the background (`learn`)
    GET  /api/model      the model that answers (original or learned): its name, config and metrics
    POST /api/model      choose the original or the learned model, in every worker
    GET  /healthz        liveness
    GET  /docs           OpenAPI documentation

Every request is checked at the edge, before any work, in three rings, and every error is a JSON
`{"detail": "..."}` with its status (`responses`); no response carries a stack trace:

1. `protocol`: the HTTP connection's bounds (sizes, timeouts, connections), the one module built on
   uvicorn's internals.
2. `policy`: the Host, Origin and Sec-Fetch-Site checks, CORS, HEAD and the security headers.
3. `uploads`: the body limit, the content type; then `decoding.load_image` (in `inference`) decodes
   only the formats mnistlab reads and refuses a decompression bomb from its header.

The modules, top first: `workers` (several processes on one socket) → `app` (`create_app`: routes,
page, error handlers; `learn`, `collect`, `docs`, `api` and `choice` below it) and `server` (bind, run
one process) → `inference` (decode, preprocess, batch), `policy`, `uploads`, `protocol`, `learn_job` (the
learning job's process and files) → `responses`.

The model is a checkpoint (PyTorch) or an exported ONNX file (onnxruntime; `mnistlab.classifier`):
nothing here imports torch, so serving an ONNX file runs without it.
"""

from .app import STATIC_DIR, create_app, without_local_paths
from .inference import MAX_UPLOAD_PIXELS, Batcher, Predictor, serving_size
from .policy import Policy, PolicyMiddleware
from .protocol import HttpLimits, check_uvicorn
from .server import bind, is_loopback, serve, server_config, url
from .uploads import MAX_UPLOAD_BYTES, BodyLimit
from .workers import ConnectionShare, serve_workers

__all__ = [
    "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "STATIC_DIR", "Batcher", "BodyLimit", "ConnectionShare", "HttpLimits",
    "Policy", "PolicyMiddleware", "Predictor", "bind", "check_uvicorn", "create_app", "is_loopback",
    "serve", "serve_workers", "server_config", "serving_size", "url", "without_local_paths",
]
