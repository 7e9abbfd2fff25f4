"""`mnistlab serve`: the drawing page and the prediction API (needs the `serve` extra)."""

from __future__ import annotations

import argparse
import os
import re
import sys

from ..config import ServeOptions, default
from ..errors import MnistlabError, PortInUseError
from ..pretrained import PREFIX
from ._args import bounded, span

DEFAULT_PRETRAINED = "cnn"  # served when no run is named: the best model, with nothing to train first


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="draw digits in the browser; a prediction API",
        description="Serve a web page to draw a digit on and watch the model read it, and a JSON API "
                    "(POST /api/predict; docs at /docs). Needs the serve extra: pip install 'mnistlab[serve]'.")
    serve.add_argument("run", nargs="?", metavar="RUN",
                       help=f"the run folder to serve, pretrained:NAME (`mnistlab models`), or an exported .onnx "
                            f"file (run by onnxruntime, without PyTorch) (default: {PREFIX}{DEFAULT_PRETRAINED})")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on; anything but loopback exposes the server (default: 127.0.0.1)")
    port = default(ServeOptions, "port")
    serve.add_argument("--port", type=bounded(ServeOptions, "port"), default=port, metavar="N",
                       help=f"port to listen on, 0 for any free one (default: {port})")
    serve.add_argument("--collect", metavar="DIR",
                       help="offer 'this is a N' buttons that save the drawing as DIR/N/<new name>.png")
    serve.add_argument("--learn-out", metavar="DIR",
                       help="with --collect: where the models learned from the drawings go, as run folders "
                            "(default: beside the collect folder, DIR-learned)")
    workers = default(ServeOptions, "workers")
    serve.add_argument("--workers", type=bounded(ServeOptions, "workers"), default=workers, metavar="N",
                       help=f"server processes on the one port, each with its own copy of the model, "
                            f"{span(ServeOptions, 'workers')} (default: {workers})")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME", type=host_name,
                       help="a name the Host header may give besides loopback's and --host's, e.g. a proxy's "
                            "public name; repeatable (default: none)")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="URL", type=origin,
                       help="another site (e.g. https://example.org, or * for any) whose pages may ask for "
                            "predictions; never for --collect; repeatable (default: none)")
    serve.add_argument("--max-upload-mb", type=bounded(ServeOptions, "max_upload_mb"),
                       default=default(ServeOptions, "max_upload_mb"), metavar="MB",
                       help=f"largest request body, in MiB, {span(ServeOptions, 'max_upload_mb')} "
                            f"(default: {default(ServeOptions, 'max_upload_mb'):g})")
    serve.set_defaults(handler=cmd_serve)


def host_name(text: str) -> str:
    """An --allowed-host value: a host name or IP address (no port, no scheme), or * for any."""
    if text == "*" or re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[?[0-9A-Fa-f:.]+\]?", text):
        return text.lower()
    raise argparse.ArgumentTypeError(f"expected a host name or address such as digits.example.org (no scheme, "
                                     f"no port), or *, got {text!r}")


def origin(text: str) -> str:
    """An --allow-origin value: a scheme and host (and port), as a browser's Origin header gives it, or *."""
    text = text.rstrip("/")
    if text == "*" or re.fullmatch(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](?::\d{1,5})?",
                                   text):
        return text.lower()
    raise argparse.ArgumentTypeError(f"expected an origin such as https://example.org (scheme and host, no path), "
                                     f"or *, got {text!r}")


def cmd_serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        from ..serve import bind, check_uvicorn, create_app, is_loopback, serve, serve_workers, url

        check_uvicorn()
    except ImportError as e:
        raise MnistlabError(f"mnistlab serve needs the serve extra ({e.name} is missing): "
                            "pip install 'mnistlab[serve]'") from None

    run = args.run
    if run is None:  # the shipped cnn, so that a newcomer draws on the best model at once
        from ..pretrained import describe

        run = f"{PREFIX}{DEFAULT_PRETRAINED}"
        print(f"mnistlab: serving the pretrained weights {run} ({describe(DEFAULT_PRETRAINED).test_acc:.2%} on "
              f"MNIST's test set); to serve a run of your own, name it: mnistlab serve runs/NAME",
              file=sys.stderr, flush=True)
    if args.learn_out and not args.collect:
        parser.error("--learn-out needs --collect DIR: the server learns from the drawings it collects")
    cores = len(os.sched_getaffinity(0))
    settings = {"collect_dir": args.collect, "learn_out": args.learn_out,
                "max_upload_bytes": ServeOptions(max_upload_mb=args.max_upload_mb).max_upload_bytes,
                "threads": max(1, cores // args.workers), "allowed_hosts": args.allowed_host,
                "allow_origins": args.allow_origin, "listen": args.host, "run_name": os.fspath(run)}
    app = create_app(run, **settings)
    try:
        sock = bind(args.host, args.port)
    except PortInUseError as e:  # a usage error: the flag names a port that another program holds
        print(f"mnistlab: error: {e}; pass --port 0 for a free port, or another --port", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(f"mnistlab: warning: listening on {args.host}, not loopback: anyone who can reach this machine "
              "can use the server" + (" and write into the --collect folder" if args.collect else ""),
              file=sys.stderr)
    collecting = f"; saving labelled drawings into {args.collect}" if args.collect else ""
    if args.collect and app.state.learn_folder is not None:
        collecting += f", learned models into {app.state.learn_folder}"
    processes = f", {args.workers} processes" if args.workers > 1 else ""
    print(f"serving {run} at {url(sock)}  (API docs at {url(sock)}docs{collecting}{processes}; Ctrl-C stops)",
          flush=True)
    if args.workers > 1:
        serve_workers(app, sock, args.workers, run, settings)
    else:
        serve(app, sock)
    return 0
