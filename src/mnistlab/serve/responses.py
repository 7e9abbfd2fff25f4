"""The one shape of a refusal, `{"detail": "one line"}`, and the headers every response carries.

The three rings that refuse a request (the HTTP protocol, the request policy, the body limit) and the
app's error handlers all answer in this shape, so a client reads every error the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import Send

# JSON and files: nothing to run or load, and never framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'"

Headers = list[tuple[bytes, bytes]]

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 414: b"URI Too Long",
            431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


def detail_body(detail: str) -> bytes:
    """The JSON body of an error."""
    return json.dumps({"detail": detail}).encode()


def security_headers(csp: str) -> Headers:
    """What every response carries: no content sniffing, `csp`, and no Referer to other sites."""
    return [(b"x-content-type-options", b"nosniff"), (b"content-security-policy", csp.encode()),
            (b"referrer-policy", b"no-referrer")]


def closing_error_bytes(status: int, detail: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, for the protocol's own refusals
    (made before there is a request for the app to answer)."""
    body = detail_body(detail)
    head = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error")), b"content-type: application/json",
            b"content-length: %d" % len(body), b"connection: close",
            *(b"%s: %s" % pair for pair in (*security_headers(API_CSP), *extra))]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def send_whole(send: Send, status: int, body: bytes, headers: Headers) -> None:
    """Send a whole ASGI response: `body`, with its length and `headers`."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send `{"detail": detail}` with `status` as a whole ASGI response."""
    await send_whole(send, status, detail_body(detail), [(b"content-type", b"application/json"), *headers])
