"""Who may talk to the server, as ASGI middleware around the app (the outermost ring of the app).

- The Host header must name this server: a page on another site that rebinds its DNS name to
  127.0.0.1 cannot reach the server through it.
- A request that changes state must come from this server's own page (Origin, Sec-Fetch-Site);
  `--allow-origin` opens only the routes that read (/api/predict, /api/read) to the sites it names, with CORS.
- HEAD is answered wherever GET is, without a body.
- Every response carries `nosniff`, a Content-Security-Policy and `no-referrer`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .responses import API_CSP, security_headers, send_error, send_whole

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")  # the Host names a server on loopback answers to
# The page loads nothing but its own files, is never framed, and sends its requests only here.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What `--allow-origin` opens to other sites: reading, never writing.
CORS_PATHS = frozenset({"/api/predict", "/api/read"})


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

    def allows_host(self, name: str, scope: Scope) -> bool:
        if "*" in self.hosts or name in self.hosts:
            return True
        server = scope.get("server")  # the address the connection came in on: asking for it by IP is no rebinding
        return bool(server) and name == str(server[0]).lower() and _is_ip(name)

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.origins or origin.rstrip("/").lower() in self.origins


def host_header_name(host: str) -> str | None:
    """The name in a Host header ("example.org:8000" → "example.org", "[::1]:80" → "::1"), or None if malformed."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        return name if bracket and (not rest or re.fullmatch(r":\d{1,5}", rest)) else None
    name, _, port = host.partition(":")
    if not name or (port and not port.isdigit()) or host.count(":") > 1:
        return None
    return name


class PolicyMiddleware:
    """Refuse a wrong Host (400) or another site's write (403), answer HEAD as GET without a body, answer
    CORS preflights for `--allow-origin`, and put the security headers on every response."""

    def __init__(self, app: ASGIApp, policy: Policy, docs_csp: str):
        self.app, self.policy, self.docs_csp = app, policy, docs_csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path, method = scope["path"], scope["method"]
        extra = security_headers(self.docs_csp if path == "/docs" else PAGE_CSP if path == "/" else API_CSP)
        refusal = self._refusal(scope, headers, method, path)
        origin = headers.get(b"origin", b"").decode("latin-1")
        cors = bool(origin) and path in CORS_PATHS and self.policy.allows_origin(origin)
        if cors:
            extra += [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if refusal is None and method == "OPTIONS" and cors:  # a preflight from a site `--allow-origin` names
            extra += [(b"access-control-allow-methods", b"POST"), (b"access-control-allow-headers", b"content-type"),
                      (b"access-control-max-age", b"600")]
            await send_whole(send, 204, b"", extra)
            return
        if refusal is not None:
            await send_error(send, *refusal, extra)
            return
        head = method == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes], method: str, path: str) -> tuple[int, str] | None:
        """(status, detail) for a request to refuse before the app sees it, else None."""
        host = headers.get(b"host")
        if host is None:
            return 400, "a Host header is required"
        host_text = host.decode("latin-1")
        name = host_header_name(host_text)
        if name is None or not self.policy.allows_host(name, scope):
            return 400, (f"Host {host_text[:100]!r} does not name this server; "
                         "start it with --allowed-host NAME to answer to that name")
        if method in SAFE_METHODS:
            return None
        origin = headers.get(b"origin")
        origin_text = origin.decode("latin-1") if origin is not None else None
        site = headers.get(b"sec-fetch-site", b"").lower()
        same_origin = origin_text is None or origin_text.lower() in (f"http://{host_text.lower()}",
                                                                     f"https://{host_text.lower()}")
        if same_origin and site in (b"", b"same-origin", b"none"):
            return None
        if path in CORS_PATHS and origin_text is not None and self.policy.allows_origin(origin_text):
            return None
        return 403, (f"{method} {path} is taken only from this server's own page (the request came from "
                     f"{origin_text[:100] if origin_text else 'another site'})")


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
