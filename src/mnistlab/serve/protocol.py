"""The HTTP connection: bounds on what a client may send, and how a worker process accepts connections.

This is the one module that builds on uvicorn's internals (everything else uses its public API):
`HttpToolsProtocol`'s parser callbacks, `cycle`, `connections` and `send_400_response`, and
`Server.startup(sockets=)`, `server_state.connections`, `config.http_protocol_class` and
`lifespan.state`. It was checked against uvicorn 0.55.x (`KNOWN_UVICORN`); on any other version
`check_uvicorn` refuses to start, in one line, rather than serve with bounds that may not hold.

Why not uvicorn's public settings: `timeout_keep_alive` gives the same guarantee and is used
(`HttpLimits.keep_alive_timeout`). The others do not: `h11_max_incomplete_event_size` bounds only
the h11 parser's header block and answers a plain-text 400, not a JSON 431/414; `limit_concurrency`
answers a plain-text 503 (past the app's security headers) only once a request's headers are in,
so a connection that sends nothing still holds its place; nothing public times out a request whose
headers or body trickle in (slowloris), or lets a refused client read its answer before the
connection closes.

uvicorn is imported inside the functions, so that the app alone runs under any ASGI server.
"""

from __future__ import annotations

import asyncio
import functools
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ServeError
from .responses import closing_error_bytes

KNOWN_UVICORN = ("0.55",)  # the minor releases whose internals this module was read against
# A worker that holds more connections than another leaves a new one to it for at most this long (the other
# may be busy, or waiting for its GIL), checking again every ACCEPT_RECHECK seconds; much shorter, and a
# burst of connections under load still lands mostly on one process.
ACCEPT_PATIENCE, ACCEPT_RECHECK = 0.025, 0.001


def check_uvicorn(version: str | None = None) -> None:
    """Refuse, with a ServeError, a uvicorn (the installed one by default) that this module was not checked on."""
    if version is None:
        import uvicorn

        version = uvicorn.__version__
    if ".".join(version.split(".")[:2]) not in KNOWN_UVICORN:
        known = ", ".join(f"{minor}.x" for minor in KNOWN_UVICORN)
        raise ServeError(f"mnistlab serve builds on uvicorn's internals, checked against uvicorn {known}, and "
                         f"uvicorn {version[:40]} is installed: pip install 'uvicorn>={KNOWN_UVICORN[0]},"
                         f"<{_next_minor(KNOWN_UVICORN[-1])}'")


def _next_minor(minor: str) -> str:
    major, number = minor.split(".")
    return f"{major}.{int(number) + 1}"


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


def bounded_protocol(limits: HttpLimits) -> type:
    """uvicorn's httptools protocol with `limits` on what a client may send.

    The request line, the header block and the number of headers are capped (414/431), headers and
    bodies must arrive in time (408), and a connection over the cap is answered 503 at once. A
    malformed request (a bad Content-Length, TLS bytes) gets a JSON 400, not text, and a client
    refused while still sending reads its answer before the connection closes (`LingeringTransport`).
    """
    check_uvicorn()
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

        def _refused_by_callback(self) -> _Refused | None:
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
                self.transport.write(closing_error_bytes(status, detail))
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


class ConnectionCounts(Protocol):
    """What a worker process shares with the others: how many connections it holds (`workers.ConnectionShare`)."""

    def publish(self, connections: int) -> None: ...

    def fewer_elsewhere(self, connections: int) -> bool: ...

    def withdraw(self) -> None: ...


def balanced_server(config: Any, sock: socket.socket, counts: ConnectionCounts) -> Any:
    """A uvicorn.Server that accepts the connections of `sock` itself, taking a new one only when no other
    process holds fewer (`counts`)."""
    check_uvicorn()
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
            self.server_state.connections = _Published(lambda: counts.publish(self._held()))
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept)
            counts.publish(0)

        def _accept(self) -> None:
            loop = asyncio.get_running_loop()
            mine, now = self._held(), loop.time()
            if now - self._waited_at > ACCEPT_PATIENCE:  # not the connection it left a moment ago: a new wait
                self._waiting_since = now
            if counts.fewer_elsewhere(mine) and now - self._waiting_since < ACCEPT_PATIENCE:
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
            counts.publish(self._held())

        def _connected(self, task: asyncio.Task) -> None:
            self._connecting.discard(task)
            counts.publish(self._held())
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
            counts.withdraw()
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
