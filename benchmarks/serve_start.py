"""How soon does `mnistlab serve` answer its first prediction with the pretrained model?

The target: within 3 s of starting. With no run named, `mnistlab serve --port 0` serves
`pretrained:cnn`; the clock runs from starting the command to the first answered
POST /api/predict of a drawing (an MNIST test digit as a canvas sends it: dark on white,
280×280 PNG). Each try is a fresh process. For a noisy machine, the same run also times a
baseline: a bare `python -c "import torch"`, and prints the load average.

    python benchmarks/serve_start.py
    python benchmarks/serve_start.py --tries 5 --run pretrained:cnn_small
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from PIL import Image

HOST = "127.0.0.1"


def drawing() -> bytes:
    """MNIST's first test digit (a 7) as the drawing page sends it."""
    from mnistlab.data import load_mnist

    digit = load_mnist().test.images[0].numpy()
    buffer = io.BytesIO()
    Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BILINEAR).convert("RGBA").save(buffer, "PNG")
    return buffer.getvalue()


def first_prediction(body: bytes, run: str | None, folder: str) -> tuple[float, dict]:
    """Start `mnistlab serve [RUN] --port 0` in `folder`; (seconds to the first answered prediction, its JSON)."""
    import json

    command = [sys.executable, "-m", "mnistlab", "serve", *([run] if run else []), "--host", HOST, "--port", "0"]
    started = time.perf_counter()
    server = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()  # "serving RUN at http://127.0.0.1:PORT/ ...", once it listens
        match = re.search(rf"http://{re.escape(HOST)}:(\d+)/", line)
        if not match:
            sys.exit(f"serve_start: the server did not start: {line!r}")
        request = urllib.request.Request(f"http://{HOST}:{match.group(1)}/api/predict", data=body,
                                         headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        return time.perf_counter() - started, answer
    finally:
        server.terminate()
        server.wait(timeout=30)


def import_torch_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=3, help="fresh server processes to time (default: 3)")
    parser.add_argument("--run", help="what to serve (default: nothing named: "
                                      "mnistlab's own choice, pretrained:cnn)")
    args = parser.parse_args()
    body = drawing()
    print(f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
          f"Python {platform.python_version()}; load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        seconds, baselines = [], []
        for _ in range(args.tries):
            baselines.append(import_torch_seconds())
            took, answer = first_prediction(body, args.run, folder)
            seconds.append(took)
            print(f"  first prediction after {took:.2f} s: {answer.get('label')!r} "
                  f"(baseline `import torch`: {baselines[-1]:.2f} s)", flush=True)
    median, base = statistics.median(seconds), statistics.median(baselines)
    print(f"median {median:.2f} s to the first prediction ({min(seconds):.2f}-{max(seconds):.2f}); "
          f"`import torch` alone {base:.2f} s: {median / base:.1f}× that; load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
