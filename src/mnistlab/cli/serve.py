"""`mnistlab serve`: the drawing page and the prediction API (needs the `serve` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import ServeOptions, default
from ..errors import MnistlabError
from ._args import bounded, span

RUNS_DIR = Path("runs")


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="draw digits in the browser; a prediction API",
        description="Serve a web page to draw a digit on and watch the model read it, and a JSON API "
                    "(POST /api/predict; docs at /docs). Needs the serve extra: pip install 'mnistlab[serve]'.")
    serve.add_argument("run", nargs="?", metavar="RUN",
                       help=f"the run folder to serve, or an exported .onnx file (run by onnxruntime, without "
                            f"PyTorch) (default: the newest run folder under ./{RUNS_DIR})")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on; anything but loopback exposes the server (default: 127.0.0.1)")
    port = default(ServeOptions, "port")
    serve.add_argument("--port", type=bounded(ServeOptions, "port"), default=port, metavar="N",
                       help=f"port to listen on, 0 for any free one (default: {port})")
    serve.add_argument("--collect", metavar="DIR",
                       help="offer 'this is a N' buttons that save the drawing as DIR/N/<new name>.png")
    serve.add_argument("--max-upload-mb", type=bounded(ServeOptions, "max_upload_mb"),
                       default=default(ServeOptions, "max_upload_mb"), metavar="MB",
                       help=f"largest request body, in MiB, {span(ServeOptions, 'max_upload_mb')} "
                            f"(default: {default(ServeOptions, 'max_upload_mb'):g})")
    serve.set_defaults(handler=cmd_serve)


def newest_run(runs: Path = RUNS_DIR) -> Path:
    """The run folder under `runs` whose config.json was written last."""
    configs = [p for p in runs.glob("*/config.json") if p.is_file()] if runs.is_dir() else []
    if not configs:
        raise MnistlabError(f"no run folder under ./{runs}; train one with `mnistlab train --out {runs}/demo` "
                            "(or `make demo`), or name one: mnistlab serve RUN")
    return max(configs, key=lambda p: p.stat().st_mtime).parent


def cmd_serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        from ..serving import bind, create_app, is_loopback, serve, url
    except ImportError as e:
        raise MnistlabError(f"mnistlab serve needs the serve extra ({e.name} is missing): "
                            "pip install 'mnistlab[serve]'") from None

    run = Path(args.run) if args.run else newest_run()
    limit = ServeOptions(max_upload_mb=args.max_upload_mb).max_upload_bytes
    app = create_app(run, collect_dir=args.collect, max_upload_bytes=limit)
    sock = bind(args.host, args.port)
    if not is_loopback(args.host):
        print(f"mnistlab: warning: listening on {args.host}, not loopback: anyone who can reach this machine "
              "can use the server" + (" and write into the --collect folder" if args.collect else ""),
              file=sys.stderr)
    collecting = f"; saving labelled drawings into {args.collect}" if args.collect else ""
    print(f"serving {run} at {url(sock)}  (API docs at {url(sock)}docs{collecting}; Ctrl-C stops)", flush=True)
    serve(app, sock)
    return 0
