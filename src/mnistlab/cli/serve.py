"""`mnistlab serve`: the drawing page and the prediction API (needs the `serve` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import ServeOptions, default
from ..errors import MnistlabError
from ..pretrained import PREFIX
from ._args import bounded, span

RUNS_DIR = Path("runs")
DEFAULT_PRETRAINED = "cnn"  # served when no run is named and ./runs holds none


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="draw digits in the browser; a prediction API",
        description="Serve a web page to draw a digit on and watch the model read it, and a JSON API "
                    "(POST /api/predict; docs at /docs). Needs the serve extra: pip install 'mnistlab[serve]'.")
    serve.add_argument("run", nargs="?", metavar="RUN",
                       help=f"the run folder to serve, pretrained:NAME (`mnistlab models`), or an exported .onnx "
                            f"file (run by onnxruntime, without PyTorch) (default: the newest run folder under "
                            f"./{RUNS_DIR}; with none there, {PREFIX}{DEFAULT_PRETRAINED})")
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


def newest_run(runs: Path = RUNS_DIR) -> Path | None:
    """The run folder under `runs` whose config.json was written last; None if there is none."""
    configs = [p for p in runs.glob("*/config.json") if p.is_file()] if runs.is_dir() else []
    return max(configs, key=lambda p: p.stat().st_mtime).parent if configs else None


def cmd_serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        from ..serving import bind, create_app, is_loopback, serve, url
    except ImportError as e:
        raise MnistlabError(f"mnistlab serve needs the serve extra ({e.name} is missing): "
                            "pip install 'mnistlab[serve]'") from None

    run = args.run or newest_run()
    if run is None:  # nothing trained yet: the pretrained cnn, so that a newcomer can draw at once
        from ..pretrained import describe

        run = f"{PREFIX}{DEFAULT_PRETRAINED}"
        print(f"mnistlab: no run folder under ./{RUNS_DIR}, so serving the pretrained weights {run} "
              f"({describe(DEFAULT_PRETRAINED).test_acc:.2%} on MNIST's test set); train your own with "
              f"`mnistlab train --out {RUNS_DIR}/demo`, or name one: mnistlab serve RUN", file=sys.stderr, flush=True)
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
