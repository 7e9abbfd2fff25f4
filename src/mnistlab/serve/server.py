"""One server process: the listening socket, uvicorn's configuration, and running the app until Ctrl-C."""

from __future__ import annotations

import errno
import gc
import ipaddress
import socket
import sys
from typing import Any

from ..errors import PortInUseError, ServeError
from .protocol import ConnectionCounts, HttpLimits, balanced_server, bounded_protocol

DEFAULT_LIMITS = HttpLimits()


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one).

    Raises:
        PortInUseError: another program listens on that port.
        ServeError: the host cannot be resolved or listened on.
    """
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
        if e.errno == errno.EADDRINUSE:
            raise PortInUseError(f"cannot listen on {host}:{port}: the port is in use") from None
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


def url(sock: socket.socket) -> str:
    """The http:// address a browser reaches the listening `sock` at."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def server_config(app: Any, limits: HttpLimits = DEFAULT_LIMITS) -> Any:
    """The uvicorn.Config `serve` runs `app` with: `bounded_protocol(limits)`, no access log, no Server header."""
    import uvicorn

    return uvicorn.Config(app, log_level="warning", access_log=False, server_header=False,
                          http=bounded_protocol(limits), timeout_keep_alive=limits.keep_alive_timeout,
                          timeout_graceful_shutdown=3)


def serve(app: Any, sock: socket.socket, limits: HttpLimits = DEFAULT_LIMITS,
          counts: ConnectionCounts | None = None) -> None:
    """Run `app` on a bound socket until Ctrl-C, within `limits`; with `counts`, as one of the processes of
    `serve_workers`, taking a new connection only when no other process holds fewer."""
    import uvicorn

    # The app already runs one inference per core at a time: more torch threads would only fight for the cores.
    # (An ONNX model's session was made with one thread; torch is then not loaded.)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    # The model, torch and the app live as long as the server: out of the collector's sight, its full
    # collections do not scan them again.
    gc.freeze()
    config = server_config(app, limits)
    if counts is None or sys.platform == "win32":  # Windows' Proactor loop has no add_reader for accepting
        uvicorn.Server(config).run(sockets=[sock])
    else:
        balanced_server(config, sock, counts).run()
