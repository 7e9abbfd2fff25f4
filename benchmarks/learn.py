"""Learn mode end to end: from 100 collected drawings to the server answering with the learned model.

The drawings are not MNIST's: 10 of each digit drawn from the UCI handwritten digits that scikit-learn
ships (`load_digits`, as `benchmarks/finetune.py` draws them), saved as the collect folder a person
would fill (DIR/0/ … DIR/9/). A real server runs (`mnistlab serve BASE --collect DIR --port 0`, in a
child process); the benchmark asks it to learn (POST /api/learn) and times it, start to finish, until
GET /api/model says that the learned model answers. Meanwhile it asks /healthz every 20 ms and
/api/predict every 100 ms, and reports their latencies, idle first, then while the server learns.

Printed: the seconds, the error on the held-out drawings before and after (the job's own figures),
the error on the other 1,697 UCI digits before and after (a larger sample of the same "writer"),
MNIST's test accuracy before and after, and the latencies' p50/p99/max.

    python benchmarks/learn.py                      # pretrained:cnn, seed 0
    python benchmarks/learn.py runs/demo --seeds 3
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import mnistlab
from finetune import error_on, pick, write_folder
from mnistlab.prediction import predict
from outside_mnist import uci_digits

HEALTH_EVERY, PREDICT_EVERY = 0.02, 0.1  # seconds between the probes' requests
IDLE_SECONDS = 3.0  # latencies measured before learning, for comparison


class Prober(threading.Thread):
    """Sends one request every `every` seconds on its own keep-alive connection and keeps each latency (ms)."""

    def __init__(self, port: int, method: str, path: str, body: bytes | None, every: float):
        super().__init__(daemon=True)
        self.port, self.method, self.path, self.body, self.every = port, method, path, body, every
        self.samples: list[tuple[float, float]] = []  # (when, milliseconds)
        self.failures = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "image/png"} if self.body else {}
        while not self.stopping.wait(self.every):
            started = time.perf_counter()
            try:
                connection.request(self.method, self.path, body=self.body, headers=headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                ok = False
            if ok:
                self.samples.append((started, (time.perf_counter() - started) * 1000))
            else:
                self.failures += 1

    def between(self, start: float, end: float) -> list[float]:
        return [ms for when, ms in self.samples if start <= when < end]


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "—"
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"{statistics.median(ordered):.1f} / {p99:.1f} / {ordered[-1]:.1f} ({len(ordered)})"


def job_cpu_seconds(folder: Path) -> float:
    """The learning job's CPU seconds so far (user + system, all threads), from /proc; 0 when unknown."""
    try:
        pid = json.loads((folder / "learn-status.json").read_text())["pid"]
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, ValueError, KeyError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    connection.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def start_server(base: str, collect: Path) -> tuple[subprocess.Popen, int]:
    server = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", base, "--collect", str(collect),
                               "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not found:
        server.kill()
        sys.exit(f"the server did not start: {line!r}")
    return server, int(found.group(1))


def measure(base: str, images: list, labels: np.ndarray, pixels: torch.Tensor, per_digit: int, seed: int) -> dict:
    picked = pick(labels, per_digit, seed)
    others = np.setdiff1d(np.arange(len(labels)), picked)
    png = io.BytesIO()
    images[int(others[0])].save(png, format="PNG")
    with tempfile.TemporaryDirectory() as tmp:
        collect = Path(tmp, "mine")
        write_folder(images, labels, picked, collect)
        server, port = start_server(base, collect)
        try:
            probes = [Prober(port, "GET", "/healthz", None, HEALTH_EVERY),
                      Prober(port, "POST", "/api/predict", png.getvalue(), PREDICT_EVERY)]
            for probe in probes:
                probe.start()
            time.sleep(IDLE_SECONDS)
            started = time.perf_counter()
            status, state = call(port, "POST", "/api/learn")
            if status != 202:
                sys.exit(f"POST /api/learn answered {status}: {state}")
            cpu = 0.0
            while state["state"] == "running":
                time.sleep(0.2)
                cpu = max(cpu, job_cpu_seconds(Path(tmp, "mine-learned")))
                state = call(port, "GET", "/api/learn")[1]
            if state["state"] != "done":
                sys.exit(f"learning failed: {state['message']}")
            while call(port, "GET", "/api/model")[1]["use"] != "learned":
                time.sleep(0.05)
            seconds = time.perf_counter() - started
            time.sleep(0.5)
            for probe in probes:
                probe.stopping.set()
                probe.join()
        finally:
            server.terminate()
            server.wait(10)
        run = Path(tmp, "mine-learned", state["run"])
        return {"seconds": seconds, "state": state, "cpu": cpu,
                "other_before": error_on(base, pixels[others], labels[others]),
                "other_after": error_on(run, pixels[others], labels[others]),
                "health_idle": probes[0].between(0, started), "health_learning": probes[0].between(started, 1e18),
                "predict_idle": probes[1].between(0, started), "predict_learning": probes[1].between(started, 1e18),
                "failures": sum(p.failures for p in probes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", nargs="?", default="pretrained:cnn", help="the model served (default: pretrained:cnn)")
    parser.add_argument("--seeds", type=int, default=1, help="draws of the 100 drawings (default: 1)")
    parser.add_argument("--per-digit", type=int, default=10, help="drawings of each digit (default: 10)")
    args = parser.parse_args()
    images, labels = uci_digits()
    base = mnistlab.load_model(args.base)
    pixels = torch.from_numpy(np.stack([p.image for p in predict(base, images, batch_size=512, progress=False)]))
    print(f"machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
          f"torch {torch.__version__}, load {os.getloadavg()[0]:.1f}; base {args.base}; {args.per_digit} UCI digits "
          f"a digit collected\n")
    for seed in range(args.seeds):
        r = measure(args.base, images, labels, pixels, args.per_digit, seed)
        s = r["state"]
        print(f"seed {seed}: {r['seconds']:.1f} s from POST /api/learn to the learned model answering "
              f"(the job's own: {s['seconds']:.1f} s, {r['cpu']:.1f} CPU s); {s['trained']} drawings trained on, "
              f"{s['held_out']} held out; load {os.getloadavg()[0]:.1f} at the end")
        print(f"  held-out drawings' error: {1 - s['before']:.1%} → {1 - s['after']:.1%}; other UCI digits' error: "
              f"{r['other_before']:.1%} → {r['other_after']:.1%}; MNIST test accuracy: {s['mnist']['before']:.2%} → "
              f"{s['mnist']['after']:.2%} ({(s['mnist']['after'] - s['mnist']['before']) * 100:+.2f} points)")
        print("  latency ms, p50 / p99 / max (requests):")
        print(f"    /healthz      idle {percentiles(r['health_idle'])}; learning {percentiles(r['health_learning'])}")
        print(f"    /api/predict  idle {percentiles(r['predict_idle'])}; learning {percentiles(r['predict_learning'])}")
        print(f"  failed requests: {r['failures']}", flush=True)


if __name__ == "__main__":
    main()
