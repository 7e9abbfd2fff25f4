"""`mnistlab serve`: a page to draw a digit on and a JSON prediction API, over one model.

    GET  /               the drawing page (static files in mnistlab/static: no build step, no CDN)
    POST /api/predict    an image (multipart field `file`, or the raw body) → the model's answer
    POST /api/collect    with a collect folder: save a labelled drawing as DIR/<digit>/<new name>.png
    GET  /api/collected  with a collect folder: how many drawings of each class it holds, and what to run on them
    GET  /api/model      the model's name, config and metrics
    GET  /healthz        liveness
    GET  /docs           OpenAPI documentation

Every request is checked at the edge, before any work, in three rings:

1. `BoundedHttpProtocol` (the HTTP parser's connection): the request line, the header block and
   the number of headers are capped (431/414 JSON), headers and bodies must arrive in time (408),
   idle keep-alive connections close, and a connection over the cap is answered 503 at
   once. A malformed request (a bad Content-Length, TLS bytes) gets a JSON 400, not text, and
   a client refused while still sending reads its answer before the connection closes.
2. `Guard` (ASGI): the Host header must name this server (DNS rebinding), a request that changes
   state must come from this server's own page (Origin, Sec-Fetch-Site), HEAD is answered wherever
   GET is, and every response carries `nosniff` and a Content-Security-Policy.
3. `BodyLimit`, the content type, then `decoding.load_image`, which decodes only the image
   formats mnistlab reads and refuses a decompression bomb from its header.

Every error is a JSON `{"detail": "..."}` with its status; no response carries a stack trace.

Inference: the image is decoded and brought to 28×28 in a pool of one thread per CPU core
(`Predictor.pool`), then requests that are ready together are classified in one forward pass
(`Batcher`); the torch (or onnxruntime) intra-op threads are set to 1, so that 16 clients keep
the cores busy without oversubscribing them. The threads share the model without a lock: in
eval mode under `torch.inference_mode` a forward pass only reads the weights.

With `--workers N` (`serve_workers`), N processes serve one socket, each taking a new connection
only when no other holds fewer (`ConnectionShare`).

The model is a checkpoint (PyTorch) or an exported ONNX file (onnxruntime; `mnistlab.classifier`):
this module does not import torch, so serving an ONNX file runs without it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gc
import hashlib
import io
import ipaddress
import json
import math
import multiprocessing
import os
import re
import shlex
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
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
from .decoding import IMAGE_SUFFIXES, gray_mode, load_image
from .errors import ApiError, ImageError, LabelledError, NoDigitError, ServeError
from .labelled import DIGITS, check_collect_folder, save_labelled
from .loading import load_model
from .preprocessing import WORKING_SIZE, preprocess_array

STATIC_DIR = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = ServeOptions().max_upload_bytes  # default request body limit (`--max-upload-mb`)
MAX_UPLOAD_PIXELS = 12_000_000  # a 12 MP photo; larger is refused from the header (a 2 MB upload rarely holds more)
TOP_K = 3
# The raw-body content types /api/predict takes; the bytes decide the format (load_image), not the type.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/gif", "image/webp", "image/tiff",
               "application/octet-stream")
DOCS_ASSETS = "/docs-assets"  # Swagger UI's files, for /docs
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")  # the Host names a server on loopback answers to

# --- HTTP bounds (per connection, enforced by `BoundedHttpProtocol`) ---


@dataclass(frozen=True)
class HttpLimits:
    """What one client may send, and how slowly (`serve`; tests shorten the timeouts)."""

    max_url_bytes: int = 8 * 1024  # the request target; a longer one gets 414
    max_head_bytes: int = 32 * 1024  # the request line and all headers together; more gets 431
    max_headers: int = 64  # header fields; more gets 431 (a browser sends about 15)
    header_timeout: float = 10.0  # seconds from a request's first byte (or the connection's opening) to its blank line
    body_timeout: float = 30.0  # seconds for the whole body, once the headers are in (2 MB at 0.5 Mbit/s)
    keep_alive_timeout: int = 5  # seconds an idle keep-alive connection stays open
    max_connections: int = 512  # open connections per server process; one more is answered 503 and closed
    linger: float = 2.0  # seconds a client refused while still sending may go on, so that it reads the answer


# A small image (a drawing, a scanned digit: up to WORKING_SIZE on its long side) is box-averaged to about
# SERVE_SIZE before preprocessing: a 280×280 drawing to 140×140, half the preprocessing time, still 7× the 20-px
# digit box, and reads the same (98-99% the same labels, the same accuracy; docs/serving.md, "Throughput").
# A larger image (a photo, where the digit may be small) is taken at the library's own working size.
SERVE_SIZE = 160

# The page loads nothing but its own files, is never framed, and sends its requests only here.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"  # JSON and files: nothing to run or load
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CORS_PATHS = frozenset({"/api/predict"})  # what `--allow-origin` opens to other sites: reading, never writing


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
    preprocessed: str | None = Field(
        description="the 28×28 image the model was given, PNG, base64: with `?preprocessed=true`, else null")
    model: ModelSummary


class ModelInfo(ModelSummary):
    parameters: int
    classes: list[str] = Field(description="the name of each class, in label order")
    config: dict = Field(description="the checkpoint's config.json, or the exported file's metadata "
                                     "(local absolute paths reduced to their last name)")
    collect: bool = Field(description="whether POST /api/collect saves labelled drawings")
    max_upload_bytes: int


class CollectResponse(BaseModel):
    label: int
    file: str = Field(description="the saved file, relative to the collect folder")


class CollectedResponse(BaseModel):
    counts: list[int] = Field(description="drawings saved under each class, in label order")
    total: int
    commands: list[str] = Field(description="the commands that use the folder: finetune, evaluate")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, in one line")


def _error(description: str) -> dict:
    return {"model": ErrorResponse, "description": description}


EDGE_ERRORS = {
    400: _error("a Host header that does not name this server, or a malformed request"),
    403: _error("a request from another site's page that this server does not take"),
}
UPLOAD_ERRORS = {
    **EDGE_ERRORS,
    400: _error("not an image, an unsupported format, truncated, empty, a decompression bomb (refused from "
                "its header), a malformed multipart body, or a Host header that does not name this server"),
    413: _error("the body is over the upload limit (refused as it arrives)"),
    415: _error("a content type other than an image or multipart/form-data"),
    422: _error("no digit found: the image is blank, or its mark too small or faint to be a digit (\"draw it "
                "larger\")"),
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    **{kind: _BINARY for kind in IMAGE_TYPES},
}}}


def json_bytes(status: int, detail: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole HTTP/1.1 response `{"detail": ...}` that closes the connection, for the protocol's own refusals."""
    body = json.dumps({"detail": detail}).encode()
    reason = _REASONS.get(status, b"Error")
    head = [b"HTTP/1.1 %d %s" % (status, reason), b"content-type: application/json",
            b"content-length: %d" % len(body), b"connection: close", b"x-content-type-options: nosniff",
            b"content-security-policy: " + API_CSP.encode(), b"referrer-policy: no-referrer",
            *(b"%s: %s" % pair for pair in extra)]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 414: b"URI Too Long",
            431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


# --- ring 1: the HTTP connection ----------------------------------------------------------------------

def bounded_protocol(limits: HttpLimits) -> type:
    """uvicorn's httptools protocol with bounds on what a client may send (see the module's docstring).

    Built in a function so that importing this module needs no uvicorn (the app alone runs under any server).
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class _Refused(Exception):
        def __init__(self, status: int, detail: str):
            self.status, self.detail = status, detail

    class BoundedHttpProtocol(HttpToolsProtocol):
        """Counts what arrives before a request's headers end, and times each phase of a request.

        The byte count is taken before the parser sees the data, so a 32 MB header costs this
        server at most `max_head_bytes` plus one read (64-256 KB) before the connection is refused.
        """

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(LingeringTransport(transport, self._still_sending, limits.linger))
            self._head = 0  # bytes of the current request's line and headers so far
            self._in_head = True
            self._header_count = 0
            self._url_bytes = 0
            self._timer: asyncio.TimerHandle | None = None
            if len(self.connections) > limits.max_connections:
                self._refuse(503, f"the server is at its limit of {limits.max_connections} connections; try again")
                return
            self._arm(limits.header_timeout, "the request's headers did not arrive in time")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return
            if self._in_head:
                self._head += len(data)
            super().data_received(data)  # a parser error, or a callback's refusal, ends in send_400_response
            if self._in_head and self._head > limits.max_head_bytes and not self.transport.is_closing():
                self._refuse(431, f"the request's headers are over the limit of {limits.max_head_bytes:,} bytes")

        def send_400_response(self, msg: str) -> None:
            refused = self._refused_by_callback()
            if refused is not None:
                self._refuse(refused.status, refused.detail)
            else:
                self._refuse(400, "malformed HTTP request (bad request line, header or Content-Length; "
                                  "TLS to a plain-HTTP port?)")

        def _still_sending(self) -> bool:
            """The client may still be sending this request: its headers, or its body, are not all in."""
            return (self._in_head and self._head > 0) or (self.cycle is not None and self.cycle.more_body)

        def _refused_by_callback(self) -> Any:
            error = getattr(self, "_last_refusal", None)
            self._last_refusal = None
            return error

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._in_head:  # the next request on a kept-alive connection
                self._in_head, self._head, self._header_count, self._url_bytes = True, 0, 0, 0
            self._arm(limits.header_timeout, "the request's headers did not arrive in time")

        def on_url(self, url: bytes) -> None:
            self._url_bytes += len(url)
            if self._url_bytes > limits.max_url_bytes:
                self._last_refusal = _Refused(414, f"the URL is over the limit of {limits.max_url_bytes:,} bytes")
                raise self._last_refusal
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_count += 1
            if self._header_count > limits.max_headers:
                self._last_refusal = _Refused(431, f"more than {limits.max_headers} header fields")
                raise self._last_refusal
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._arm(limits.body_timeout, "the request's body did not arrive in time")
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _arm(self, seconds: float, why: str) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._expire, why)

        def _disarm(self) -> None:
            if getattr(self, "_timer", None) is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self, why: str) -> None:
            self._timer = None
            answering = self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
            if answering:  # the response is under way: all that can be done is to stop
                self.transport.close()
            else:
                self._refuse(408, why)

        def _refuse(self, status: int, detail: str) -> None:
            """Answer with a JSON error and close, unless a response is already under way on this request."""
            self._disarm()
            if self.cycle is not None and not self.cycle.response_complete:
                if self.cycle.response_started:
                    self.transport.close()
                    return
                self.cycle.disconnected = True  # the app's own answer, if it comes, is dropped
                self.cycle.message_event.set()
            if not self.transport.is_closing():
                self.transport.write(json_bytes(status, detail))
                self.transport.close()

    return BoundedHttpProtocol


class LingeringTransport:
    """A connection's transport whose close() lets a client that is still sending read its answer first.

    Closed with unread data in it, a socket answers the client with a reset, which can reach it before
    the 413 or 431 it was sent. So when the client may still be sending, the answer goes out and the
    write side is shut (FIN), and what still arrives is read and dropped until the client closes, for at
    most `seconds` (nginx's lingering close).
    """

    def __init__(self, transport: asyncio.Transport, still_sending: Callable[[], bool], seconds: float):
        self._transport, self._still_sending, self._seconds = transport, still_sending, seconds
        self.lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        if self.lingering:
            return
        if self._transport.is_closing() or not self._still_sending() or not self._transport.can_write_eof():
            self._transport.close()
            return
        self.lingering = True
        self._transport.write_eof()
        self._transport.resume_reading()
        asyncio.get_running_loop().call_later(self._seconds, self._transport.close)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()


# --- ring 2: host, origin, HEAD, security headers ----------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """Who may talk to the server: the names it answers to, and the other sites that may ask for predictions."""

    hosts: frozenset[str] = frozenset(LOOPBACK_NAMES)  # lower-case host names or IP literals; "*" takes any
    origins: frozenset[str] = frozenset()  # e.g. "https://example.org"; "*" lets any site ask for predictions

    @classmethod
    def make(cls, hosts: Iterable[str] = (), origins: Iterable[str] = (), listen: str | None = None) -> Policy:
        """Loopback names, the address listened on (unless it is every interface), and `hosts`."""
        names = set(LOOPBACK_NAMES) | {h.lower().strip("[]") for h in hosts}
        if listen and listen not in ("0.0.0.0", "::", ""):
            names.add(listen.lower().strip("[]"))
        return cls(frozenset(names), frozenset(o.rstrip("/").lower() for o in origins))


def host_name(host: str) -> str | None:
    """The name in a Host header ("example.org:8000" → "example.org", "[::1]:80" → "::1"), or None if malformed."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        return name if bracket and (not rest or re.fullmatch(r":\d{1,5}", rest)) else None
    name, _, port = host.partition(":")
    if not name or (port and not port.isdigit()) or host.count(":") > 1:
        return None
    return name


class Guard:
    """ASGI middleware, outermost: refuse a wrong Host (400) or another site's write (403), answer HEAD as
    GET without a body, answer CORS preflights for `--allow-origin`, and put the security headers on every
    response."""

    def __init__(self, app: ASGIApp, policy: Policy, docs_csp: str):
        self.app, self.policy, self.docs_csp = app, policy, docs_csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path, method = scope["path"], scope["method"]
        csp = self.docs_csp if path == "/docs" else PAGE_CSP if path == "/" else API_CSP
        extra = [(b"x-content-type-options", b"nosniff"), (b"content-security-policy", csp.encode()),
                 (b"referrer-policy", b"no-referrer")]
        refusal = self._check(scope, headers, method, path)
        origin = headers.get(b"origin", b"").decode("latin-1")
        cors = bool(origin) and path in CORS_PATHS and self._origin_allowed(origin)
        if cors:
            extra += [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if refusal is None and method == "OPTIONS" and cors:  # a preflight from a site `--allow-origin` names
            extra += [(b"access-control-allow-methods", b"POST"), (b"access-control-allow-headers", b"content-type"),
                      (b"access-control-max-age", b"600")]
            await _send_whole(send, 204, b"", extra)
            return
        if refusal is not None:
            status, detail = refusal
            await _send_whole(send, status, json.dumps({"detail": detail}).encode(),
                              [(b"content-type", b"application/json"), *extra])
            return
        head = method == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, guarded_send)

    def _check(self, scope: Scope, headers: dict[bytes, bytes], method: str, path: str) -> tuple[int, str] | None:
        """(status, detail) for a request to refuse before the app sees it, else None."""
        host = headers.get(b"host")
        if host is None:
            return 400, "a Host header is required"
        name = host_name(host.decode("latin-1"))
        if name is None or not self._host_allowed(name, scope):
            return 400, (f"Host {host.decode('latin-1')[:100]!r} does not name this server; "
                         "start it with --allowed-host NAME to answer to that name")
        if method in SAFE_METHODS:
            return None
        origin = headers.get(b"origin")
        site = headers.get(b"sec-fetch-site", b"").lower()
        same_origin = (origin is None or origin.decode("latin-1").lower() == f"http://{host.decode('latin-1').lower()}"
                       or origin.decode("latin-1").lower() == f"https://{host.decode('latin-1').lower()}")
        if same_origin and site in (b"", b"same-origin", b"none"):
            return None
        if path in CORS_PATHS and origin is not None and self._origin_allowed(origin.decode("latin-1")):
            return None
        return 403, (f"{method} {path} is taken only from this server's own page (the request came from "
                     f"{origin.decode('latin-1')[:100] if origin else 'another site'})")

    def _host_allowed(self, name: str, scope: Scope) -> bool:
        if "*" in self.policy.hosts or name in self.policy.hosts:
            return True
        server = scope.get("server")  # the address the connection came in on: asking for it by IP is no rebinding
        return bool(server) and name == str(server[0]).lower() and _is_ip(name)

    def _origin_allowed(self, origin: str) -> bool:
        return "*" in self.policy.origins or origin.rstrip("/").lower() in self.policy.origins


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (the first of a repeated one)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        found.setdefault(name, value)
    return found


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


async def _send_whole(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


# --- ring 3: the request body limit --------------------------------------------------------------------

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


# --- from an upload to 28×28 -------------------------------------------------------------------------

def serving_size(image: Image.Image) -> Image.Image:
    """`image` box-averaged by the whole factor that brings a small image's long side to SERVE_SIZE or under."""
    long = max(image.size)
    factor = math.ceil(long / SERVE_SIZE)
    if factor < 2 or long > WORKING_SIZE or min(image.size) // factor < 28:
        return image
    if image.mode in ("RGB", "RGBA", "LA"):  # to gray first, as `to_grayscale` would: fewer bands to average
        image = gray_mode(image)
    if image.mode not in ("L", "LA"):  # reduce() takes 8-bit bands; other modes go as they are
        return image
    return image.reduce(factor)


# --- inference -----------------------------------------------------------------------------------------

def model_summary(model: Classifier) -> dict:
    """The run's (or file's) name, model and recorded test accuracy (None when the config has no usable one)."""
    metrics = model.config.get("metrics")
    accuracy = metrics.get("test_acc") if isinstance(metrics, dict) else None
    usable = isinstance(accuracy, int | float) and not isinstance(accuracy, bool) and 0 <= accuracy <= 1
    return {"name": model.path.resolve().name, "architecture": str(model.model_name),
            "test_accuracy": float(accuracy) if usable else None}


def without_local_paths(value: Any) -> Any:
    """`value` (a config) with every absolute path reduced to its last name: what a client may see."""
    if isinstance(value, dict):
        return {k: without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_local_paths(v) for v in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", value)):
        return Path(value.replace("\\", "/")).name
    return value


class Batcher:
    """Classify 28×28 images that become ready together in one forward pass.

    While one batch runs in the pool, the images that arrive wait, and go as the next batch: under
    load the batches grow by themselves, and a lone request waits for nobody. Each event loop has
    its own queue (a server has one; a test client may run one per thread).
    """

    def __init__(self, model: Classifier, pool: ThreadPoolExecutor):
        self.model, self.pool = model, pool
        self.queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()

    async def classify(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (28, 28) → the model's probabilities (classes,)."""
        loop = asyncio.get_running_loop()
        queue = self.queues.setdefault(loop, _Queue())
        future = loop.create_future()
        queue.waiting.append((pixels, future))
        if not queue.running:
            queue.running = True
            loop.create_task(self._drain(queue))
        return await future

    async def _drain(self, queue: _Queue) -> None:
        loop = asyncio.get_running_loop()
        try:
            while queue.waiting:
                batch, queue.waiting = queue.waiting, []
                try:
                    rows = await loop.run_in_executor(self.pool, self.model.probabilities,
                                                      np.stack([p for p, _ in batch]))
                except Exception as e:  # every request of the batch gets the failure (a 500)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                for (_, future), row in zip(batch, rows, strict=True):
                    if not future.done():
                        future.set_result(row)
        finally:
            queue.running = False


@dataclass
class _Queue:
    waiting: list[tuple[np.ndarray, asyncio.Future]] = field(default_factory=list)
    running: bool = False


@dataclass
class Predictor:
    """The loaded model, the threads that decode and preprocess (one per core), and the batcher."""

    model: Classifier
    pool: ThreadPoolExecutor
    summary: dict  # `model_summary`, sent with every answer
    batcher: Batcher = field(init=False)

    def __post_init__(self) -> None:
        self.batcher = Batcher(self.model, self.pool)
        self.classes = tuple(self.model.classes)
        self.layout = self.model.layout

    async def answer(self, data: bytes, preprocessed: bool = False) -> tuple[Image.Image, dict]:
        """Decode and preprocess in the pool, classify in a batch: (the decoded image, the API's answer).

        Raises:
            ApiError: 400 for anything `load_image` refuses, 422 when no digit is found (or a mark too small).
        """
        loop = asyncio.get_running_loop()
        image, pixels = await loop.run_in_executor(self.pool, self.prepare, data)
        probabilities = await self.batcher.classify(pixels)
        return image, self.respond(pixels, probabilities, preprocessed)

    def prepare(self, data: bytes) -> tuple[Image.Image, np.ndarray]:
        """The upload decoded, and its 28×28 float32 pixels, or an ApiError (400, 422)."""
        try:
            image = load_image(data, MAX_UPLOAD_PIXELS, name="upload")
        except ImageError as e:
            raise ApiError(400, str(e)) from None
        try:
            return image, self.pixels(image)
        except NoDigitError as e:
            raise ApiError(422, str(e)) from None
        except ImageError as e:  # pixels Pillow decoded but that cannot be read as gray
            raise ApiError(400, f"upload: {e}") from None

    def pixels(self, image: Image.Image) -> np.ndarray:
        """An upload's 28×28 float32 pixels, as `mnistlab predict` finds them, with marks too small to be a digit
        refused: on the drawing page they are a stroke just begun ("draw it larger")."""
        return preprocess_array(serving_size(image), name="", layout=self.layout, refuse_small_marks=True)

    def respond(self, pixels: np.ndarray, probabilities: np.ndarray, preprocessed: bool) -> dict:
        """The API's answer, as `mnistlab predict --json` gives it (less the file name), and the model."""
        if not np.isfinite(probabilities).all():
            raise ApiError(422, "the model's output is not a number (NaN or infinity): are its weights or "
                                "normalisation broken?")
        order = np.argsort(-probabilities, kind="stable")
        names, values = self.classes, probabilities.tolist()
        label = int(order[0])
        seen = None
        if preprocessed:
            png = io.BytesIO()
            Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)).save(png, format="PNG")
            seen = base64.b64encode(png.getvalue()).decode("ascii")
        return {"label": label, "class": names[label], "confidence": round(values[label], 6),
                "top_k": [{"label": int(k), "class": names[k], "probability": round(values[k], 6)}
                          for k in order[:TOP_K]],
                "probabilities": [round(p, 6) for p in values], "preprocessed": seen, "model": self.summary}


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


def _swagger_ui_folder() -> Path | None:
    """Swagger UI's script and style as installed with the serve extra (swagger-ui-bundle-v2), if they are."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # FastAPI's own /docs then, which loads them from a CDN
        return None
    folder = Path(swagger_ui_path)
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _docs_page(app: FastAPI, assets: str) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=app.openapi_url, title="mnistlab API",
                               swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                               swagger_css_url=f"{assets}/swagger-ui.css",
                               swagger_favicon_url=f"{assets}/favicon-32x32.png")


def docs_csp(html: bytes, sources: str = "'self'") -> str:
    """The CSP of /docs: Swagger UI's files from `sources`, and its one inline script by its hash."""
    scripts = re.findall(rb"<script>(.*?)</script>", html, re.DOTALL)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts)
    return (f"default-src 'none'; script-src {sources} {hashes}; style-src {sources} 'unsafe-inline'; "
            f"img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'")


def _add_docs(app: FastAPI, swagger: Path | None) -> str:
    """/docs as FastAPI draws it, with Swagger UI's files served from here when the serve extra has them
    (no network needed); returns its Content-Security-Policy."""
    if swagger is None:
        cdn = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
        page = _docs_page(app, cdn)
        sources = "https://cdn.jsdelivr.net"
    else:
        app.mount(DOCS_ASSETS, StaticFiles(directory=swagger), name="docs-assets")
        page = _docs_page(app, DOCS_ASSETS)
        sources = "'self'"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page.body)

    return docs_csp(page.body, sources)


def _warm_up(predictor: Predictor) -> None:
    """Classify one drawn stroke, so that the first request finds every module imported and warm."""
    image = Image.new("L", (56, 56))
    image.paste(255, (26, 8, 31, 48))
    predictor.model.probabilities(predictor.pixels(image)[None])


# --- the app -------------------------------------------------------------------------------------------

def create_app(run: str | Path | Classifier, *, collect_dir: str | Path | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, threads: int | None = None,
               allowed_hosts: Iterable[str] = (), allow_origins: Iterable[str] = (),
               listen: str | None = None, run_name: str | None = None) -> FastAPI:
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
    """
    if max_upload_bytes < 1:
        raise ServeError(f"the upload limit must be at least 1 byte, got {max_upload_bytes}")
    # One onnxruntime thread per inference, as for torch in `serve`: the pool runs one inference per core.
    model = load_model(run, device="cpu", threads=1) if isinstance(run, str | os.PathLike) else run
    pool = ThreadPoolExecutor(threads or len(os.sched_getaffinity(0)), thread_name_prefix="mnistlab-predict")
    predictor = Predictor(model, pool, model_summary(model))
    _warm_up(predictor)
    swagger = _swagger_ui_folder()
    app = FastAPI(title="mnistlab", summary="Read handwritten digits with an MNIST model.",
                  description=f"Serving the model `{predictor.summary['name']}` ({model.model_name}).",
                  docs_url=None, redoc_url=None)
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    csp = _add_docs(app, swagger)
    app.add_middleware(BodyLimit, limit=max_upload_bytes)
    app.add_middleware(Guard, policy=Policy.make(allowed_hosts, allow_origins, listen), docs_csp=csp)

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
        _add_collect(app, predictor, check_collect_folder(collect_dir), collect_dir,
                     run_name or (os.fspath(run) if isinstance(run, str | os.PathLike) else model.path.name))
    return app


def _add_collect(app: FastAPI, predictor: Predictor, folder: Path, shown: str | os.PathLike, run_name: str) -> None:
    """POST /api/collect and GET /api/collected, for a server started with a collect folder."""
    classes = len(predictor.classes)
    images = shlex.quote(os.fspath(shown))
    model = shlex.quote(run_name)
    mine = shlex.quote(f"{Path(run_name).name.removesuffix('.onnx') or 'model'}-mine")
    commands = [f"mnistlab finetune {model} --images {images} --out runs/{mine.strip(chr(39))}",
                f"mnistlab evaluate {model} --images {images}"]

    @app.post("/api/collect", response_model=CollectResponse, status_code=201, openapi_extra=UPLOAD_BODY,
              responses={**UPLOAD_ERRORS, 422: _error("no digit found, or not exactly one `label` that is a class "
                                                      "number written plainly"),
                         500: _error("the collect folder cannot be written")},
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
        return JSONResponse({"detail": problems.replace("\n", " ")}, status_code=422)

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
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(app: FastAPI, sock: socket.socket, limits: HttpLimits = HttpLimits(),
          share: ConnectionShare | None = None) -> None:
    """Run `app` on a bound socket until Ctrl-C, with `bounded_protocol`'s limits; with a `share`, as one of the
    processes of `serve_workers`. One torch thread per inference: the app already runs one inference per core at
    a time, and more threads would only fight for the same cores. (An ONNX model's session was made with one
    thread; torch is then not loaded.)"""
    import uvicorn

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    # The model, torch and the app are hundreds of thousands of objects that live as long as the server: out
    # of the collector's sight, its full collections do not scan them again. (The load benchmark showed no
    # difference beyond its noise; it costs nothing.)
    gc.freeze()
    config = server_config(app, limits)
    if share is None or sys.platform == "win32":  # Windows' Proactor loop has no add_reader for `_accept`
        uvicorn.Server(config).run(sockets=[sock])
    else:
        balanced_server(config, sock, share).run()


def server_config(app: FastAPI, limits: HttpLimits = HttpLimits()) -> Any:
    """The uvicorn.Config `serve` runs `app` with: `bounded_protocol(limits)`, no access log, no Server header."""
    import uvicorn

    return uvicorn.Config(app, log_level="warning", access_log=False, server_header=False,
                          http=bounded_protocol(limits), timeout_keep_alive=limits.keep_alive_timeout,
                          timeout_graceful_shutdown=3)


# A process of `serve_workers` that holds more connections than another leaves a new one to it, for at most
# this long (the other may be busy, or waiting for its GIL), checking again every ACCEPT_RECHECK seconds. At 5 ms,
# a burst of 16 connections under load still split 11/5 at times; at 25 ms, 8/8 or 9/7.
ACCEPT_PATIENCE, ACCEPT_RECHECK = 0.025, 0.001
NOT_SERVING = 2**31 - 1  # a process's count until it serves: no other process waits for it


@dataclass(frozen=True)
class ConnectionShare:
    """How many connections each process of `serve_workers` holds, in memory they share: so that a process takes
    a new connection off the common socket only when no other holds fewer.

    Left to the kernel, the process that is awake takes every connection waiting: in the load benchmark
    one of two held 14 of 16 keep-alive connections, and their answers waited twice as long.
    """

    counts: Any  # a multiprocessing RawArray("i"), one slot a process
    slot: int  # this process's

    @classmethod
    def create(cls, processes: int) -> list[ConnectionShare]:
        counts = multiprocessing.get_context("spawn").RawArray("i", [NOT_SERVING] * processes)
        return [cls(counts, slot) for slot in range(processes)]

    def publish(self, connections: int) -> None:
        self.counts[self.slot] = connections

    @property
    def serving(self) -> bool:
        """Whether this slot's process has served (and not ended cleanly) since it was started."""
        return self.counts[self.slot] != NOT_SERVING

    def fewer_elsewhere(self, connections: int) -> bool:
        """True when another process that is serving holds fewer than `connections`."""
        return any(count < connections for slot, count in enumerate(self.counts) if slot != self.slot)


def balanced_server(config: Any, sock: socket.socket, share: ConnectionShare) -> Any:
    """A uvicorn.Server that accepts the connections of `sock` itself, as `share` says (`ConnectionShare`)."""
    import uvicorn

    class BalancedServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=[])  # the app's lifespan, and no listener: `_accept` takes the connections
            loop = asyncio.get_running_loop()
            self._protocol = functools.partial(self.config.http_protocol_class, config=self.config,
                                               server_state=self.server_state, app_state=self.lifespan.state)
            self._waiting_since = self._waited_at = -math.inf  # when this process began to leave a connection
            self._connecting: set[asyncio.Task] = set()  # accepted, not yet among the server's connections
            # Published as each connection opens and closes: a count left from connections closed since would let
            # another process take a whole burst.
            self.server_state.connections = _Published(lambda: share.publish(self._held()))
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept)
            share.publish(0)

        def _accept(self) -> None:
            loop = asyncio.get_running_loop()
            mine, now = self._held(), loop.time()
            if now - self._waited_at > ACCEPT_PATIENCE:  # not the connection it left a moment ago: a new wait
                self._waiting_since = now
            if share.fewer_elsewhere(mine) and now - self._waiting_since < ACCEPT_PATIENCE:
                self._waited_at = now
                self._pause(ACCEPT_RECHECK)
                return
            try:
                connection, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):  # another process took it
                return
            except OSError:  # out of file descriptors or buffers: let the backlog wait, as asyncio does
                self._pause(1.0)
                return
            task = loop.create_task(loop.connect_accepted_socket(self._protocol, connection))
            self._connecting.add(task)
            task.add_done_callback(self._connected)
            share.publish(self._held())

        def _connected(self, task: asyncio.Task) -> None:
            self._connecting.discard(task)
            share.publish(self._held())
            if not task.cancelled():
                task.exception()  # a client gone before its transport was made: nothing to serve, nothing to log

        def _held(self) -> int:
            return len(self.server_state.connections) + len(self._connecting)

        def _pause(self, seconds: float) -> None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(sock.fileno())
            loop.call_later(seconds, self._resume)

        def _resume(self) -> None:
            if not self.should_exit:
                asyncio.get_running_loop().add_reader(sock.fileno(), self._accept)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            share.publish(NOT_SERVING)
            await super().shutdown(sockets)

    return BalancedServer(config)


class _Published(set):
    """A set that calls `publish` after each change."""

    def __init__(self, publish: Callable[[], None]):
        super().__init__()
        self._publish = publish

    def add(self, item: Any) -> None:
        super().add(item)
        self._publish()

    def discard(self, item: Any) -> None:
        super().discard(item)
        self._publish()


def serve_workers(app: FastAPI, sock: socket.socket, workers: int, run: str | os.PathLike, settings: dict) -> None:
    """Serve `app` here and in `workers - 1` more processes, all on `sock`, each taking new connections as
    `ConnectionShare` says.

    Each worker loads the model itself (`create_app(run, **settings)`) and keeps no state between
    requests but the collect folder, where every file has a new, unique name. A worker that dies (killed,
    or crashed in native code) is replaced; one that ends cleanly (SIGTERM) is not. Ctrl-C (or SIGTERM to
    this process) stops them all.
    """
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch threads copied by fork
    shares = ConnectionShare.create(workers)

    def start(slot: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(sock, os.fspath(run), settings, shares[slot]),
                                  name=f"mnistlab-serve-{slot}")
        process.start()
        return process

    others = {slot: start(slot) for slot in range(1, workers)}
    stopping = threading.Event()
    keeper = threading.Thread(target=_replace_dead_workers, args=(others, start, shares, stopping), daemon=True)
    keeper.start()
    try:
        serve(app, sock, share=shares[0])
    finally:
        stopping.set()
        keeper.join()
        for process in others.values():
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests under way, then exits
        for process in others.values():
            process.join(10)


WORKER_CHECK_SECONDS = 0.5  # how often `serve_workers` looks for a worker that died


def _replace_dead_workers(workers: dict[int, Any], start: Callable[[int], Any], shares: list[ConnectionShare],
                          stopping: threading.Event) -> None:
    """Until `stopping`, start a new worker in the place of one that ended with an error or a signal."""
    while not stopping.wait(WORKER_CHECK_SECONDS):
        for slot, process in list(workers.items()):
            if process.is_alive() or process.exitcode == 0 or stopping.is_set():
                continue
            served = shares[slot].serving
            shares[slot].publish(NOT_SERVING)  # its connections went with it
            if not served:  # it failed before it served, and would again: the others go on without it
                print(f"mnistlab: warning: server process {process.pid} failed to start (exit code "
                      f"{process.exitcode}); serving with one process fewer", file=sys.stderr, flush=True)
                del workers[slot]
                continue
            print(f"mnistlab: warning: server process {process.pid} ended (exit code {process.exitcode}); "
                  "starting another", file=sys.stderr, flush=True)
            workers[slot] = start(slot)


def _worker(sock: socket.socket, run: str, settings: dict, share: ConnectionShare) -> None:
    try:
        serve(create_app(run, **settings), sock, share=share)
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal's group: the parent reports it
        pass
