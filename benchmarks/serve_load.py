"""Load test for `mnistlab serve`: latency, throughput, wrong status codes and memory, on loopback only.

It starts `mnistlab serve RUN --port 0` in a subprocess on 127.0.0.1 and measures, in order:

1. start-up: seconds from starting the command to the first answered POST /api/predict;
2. latency of one 280×280 PNG drawing at a time (no concurrency): p50 and p99;
3. drawings only over 16 connections, in rounds (default 3: a shared machine's neighbours change
   any one): the server's CPU time per prediction (the primary figure: it holds on a shared
   machine, where throughput does not), predictions/s, p50/p99 latency, and the fastest and
   slowest connection's median latency (far apart when one process holds most connections);
4. a bounded mixed run (default 3,000 requests, 16 concurrent connections; it stops by itself):
   80% good 280×280 PNG drawings, 20% every kind of bad request (not an image, truncated, a
   decompression bomb, empty, a wrong content type, a blank drawing, bodies over the limit with
   and without Content-Length, wrong method, wrong path...). It prints throughput, p50/p99
   latency, the server's resident memory before and after, and every status code that was not
   the one expected.

The client is a small HTTP/1.1 client on asyncio streams (keep-alive connections), so that it
takes as little of the machine's CPU from the server as it can; on a 2-core machine it still
takes some. Without RUN it uses runs/demo, else trains a small MLP (1 epoch, 10,000 images).

    python benchmarks/serve_load.py runs/demo
    python benchmarks/serve_load.py runs/demo --requests 10000 --concurrency 32
    python benchmarks/serve_load.py runs/demo --workers 2     # two server processes on the port

The server's CPU time is read from /proc for the server and its worker processes together; the
machine's load average is printed before and after, since other jobs change every timing but that.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HOST = "127.0.0.1"
LIMIT = 2 * 1024 * 1024  # the server's default upload limit
GOOD_SHARE = 0.8
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Case:
    kind: str
    expected: int  # the status code the server must answer
    method: str = "POST"
    path: str = "/api/predict"
    content_type: str | None = "image/png"
    body: bytes = b""
    chunked: bool = False  # send the body with Transfer-Encoding: chunked (no Content-Length)
    declared: int | None = None  # a Content-Length to claim, of which only the first CHUNK bytes are sent


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def drawings(n: int) -> list[bytes]:
    """MNIST test digits as a canvas sends them: dark ink on white, 280×280 RGBA PNG."""
    from mnistlab.data import load_mnist

    digits = load_mnist().test.images[:n].numpy()
    return [png(Image.fromarray(255 - d).resize((280, 280), Image.Resampling.BILINEAR).convert("RGBA"))
            for d in digits]


def header_only_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"junk" * 8) + chunk(b"IEND", b"")


def multipart(field: str, data: bytes) -> tuple[str, bytes]:
    boundary = "mnistlab-load-test"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def bad_cases(good: bytes) -> list[Case]:
    form_type, form_body = multipart("image", good)
    file_type, file_body = multipart("file", good)
    return [
        Case("not-an-image", 400, body=b"this is not a picture " * 10),
        Case("truncated", 400, body=good[: len(good) // 2]),
        Case("bomb-header", 400, body=header_only_png(100_000, 100_000)),
        Case("bomb-pixels", 400, body=png(Image.new("L", (4000, 4000)))),  # 16 MP of zeros: a few KB
        Case("empty", 400, body=b""),
        Case("multipart-no-file", 400, content_type=form_type, body=form_body),
        Case("wrong-type", 415, content_type="text/plain", body=b"7"),
        Case("blank", 422, body=png(Image.new("RGBA", (280, 280), "white"))),
        Case("over-limit-declared", 413, body=b"\0" * CHUNK, declared=3 * LIMIT),
        Case("over-limit-chunked", 413, body=b"\0" * (LIMIT + 2 * CHUNK), chunked=True),
        Case("wrong-method", 405, method="GET", content_type=None),
        Case("wrong-path", 404, path="/api/nothing"),
        Case("good-multipart", 200, content_type=file_type, body=file_body),
    ]


def request_mix(n: int, goods: list[bytes], seed: int, good_share: float = GOOD_SHARE) -> list[Case]:
    rng = np.random.default_rng(seed)
    bad = bad_cases(goods[0])
    return [Case("good", 200, body=goods[rng.integers(len(goods))]) if rng.random() < good_share
            else bad[rng.integers(len(bad))] for _ in range(n)]


class Connection:
    """One keep-alive HTTP/1.1 connection; reopened after the server closes it."""

    def __init__(self, port: int):
        self.port, self.reader, self.writer = port, None, None

    async def send(self, case: Case) -> int:
        """The status code of the answer to `case` (0: the connection failed)."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
            head = [f"{case.method} {case.path} HTTP/1.1", f"Host: {HOST}"]
            if case.content_type:
                head.append(f"Content-Type: {case.content_type}")
            if case.chunked:
                head.append("Transfer-Encoding: chunked")
            elif case.method == "POST":
                head.append(f"Content-Length: {case.declared or len(case.body)}")
            self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
            if case.chunked:
                await self._send_chunks(case.body)
            else:
                self.writer.write(case.body)
                await self.writer.drain()
            status, close = await self._read_response()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            self.close()
            return 0
        if close or case.declared or case.chunked:  # the server stops reading an over-limit body
            self.close()
        return status

    async def _send_chunks(self, body: bytes) -> None:
        try:
            for start in range(0, len(body), CHUNK):
                piece = body[start:start + CHUNK]
                self.writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await self.writer.drain()
            self.writer.write(b"0\r\n\r\n")
            await self.writer.drain()
        except ConnectionError:  # the server answered 413 and closed while we were still sending
            pass

    async def _read_response(self) -> tuple[int, bool]:
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length, close = 0, False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        await self.reader.readexactly(length)
        return status, close

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_load(port: int, cases: list[Case], concurrency: int) -> tuple[float, list[tuple[Case, int, float, int]]]:
    """Send `cases` over `concurrency` connections; (wall seconds, [(case, status, seconds, connection number)])."""
    queue: asyncio.Queue[Case] = asyncio.Queue()
    for case in cases:
        queue.put_nowait(case)
    results: list[tuple[Case, int, float, int]] = []

    async def worker(number: int) -> None:
        connection = Connection(port)
        while not queue.empty():
            case = queue.get_nowait()
            start = time.perf_counter()
            status = await connection.send(case)
            results.append((case, status, time.perf_counter() - start, number))
        connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(number) for number in range(concurrency)))
    return time.perf_counter() - start, results


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the worker processes of `--workers`)."""
    found = [pid]
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            found += process_tree(int(child))
    return found


def rss_mb(pid: int) -> float:
    total = 0.0
    for p in process_tree(pid):
        status = Path(f"/proc/{p}/status").read_text()
        total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the server (all its processes) has used: what requests cost, however busy the
    machine is."""
    total = 0
    for p in process_tree(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def settle(pid: int, quiet: float = 0.05, longest: float = 60.0) -> None:
    """Wait until the server's processes use under `quiet` of a core (all workers loaded), at most `longest` s."""
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        start = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - start < quiet * 0.5:
            return


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def percentiles(seconds: list[float]) -> str:
    p50, p99 = np.percentile(np.array(seconds) * 1000, [50, 99])
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"


@dataclass(frozen=True)
class Round:
    """One drawings-only run over --concurrency connections."""

    cpu_ms: float  # server CPU per prediction
    rate: float  # predictions/s
    p50: float
    p99: float
    answered: int
    connection_medians: tuple[float, float]  # the fastest and slowest connection's median latency, ms: the balance

    def line(self) -> str:
        fastest, slowest = self.connection_medians
        return (f"SERVER CPU PER PREDICTION {self.cpu_ms:.2f} ms | {self.rate:.0f} predictions/s | p50 {self.p50:.1f} "
                f"ms, p99 {self.p99:.1f} ms | connections' median latency {fastest:.1f}-{slowest:.1f} ms")


def drawings_round(server: subprocess.Popen, port: int, goods: list[bytes], n: int, concurrency: int) -> Round:
    cpu_start = cpu_seconds(server.pid)
    wall, drawn = asyncio.run(run_load(port, [Case("good", 200, body=goods[i % len(goods)]) for i in range(n)],
                                       concurrency))
    cpu_ms = (cpu_seconds(server.pid) - cpu_start) / n * 1000
    answered = [(s, number) for _, status, s, number in drawn if status == 200]
    p50, p99 = np.percentile(np.array([s for s, _ in answered]) * 1000, [50, 99])
    medians = [np.median([s for s, number in answered if number == k]) * 1000 for k in range(concurrency)
               if any(number == k for _, number in answered)]
    return Round(cpu_ms, len(answered) / wall, p50, p99, len(answered), (min(medians), max(medians)))


def start_server(run: Path, workers: int = 1) -> tuple[subprocess.Popen, int, float]:
    """`mnistlab serve RUN --port 0`: (process, port, seconds to the first answered prediction)."""
    started = time.perf_counter()
    more = ["--workers", str(workers)] if workers > 1 else []
    server = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", str(run), "--host", HOST, "--port", "0",
                               *more], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    match = re.search(rf"http://{re.escape(HOST)}:(\d+)/", line)
    if not match:
        server.kill()
        sys.exit(f"serve_load: the server did not start: {line!r}")
    port = int(match.group(1))
    good = drawings(1)[0]
    status = asyncio.run(Connection(port).send(Case("good", 200, body=good)))
    return server, port, (time.perf_counter() - started) if status == 200 else float("nan")


def default_run(folder: Path) -> Path:
    if Path("runs/demo/config.json").is_file():
        return Path("runs/demo")
    from mnistlab.training import TrainConfig, train_run

    print("no RUN and no runs/demo: training a small MLP (1 epoch, 10,000 images)")
    config = TrainConfig(epochs=1, train_limit=10_000, device="cpu", out=str(folder / "run"), progress=False)
    return train_run(config).dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="the run folder to serve (default: runs/demo)")
    parser.add_argument("--requests", type=int, default=3000, help="requests in the mixed run (default: 3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections at once (default: 16)")
    parser.add_argument("--single", type=int, default=300, help="one-at-a-time requests for latency (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix (default: 0)")
    parser.add_argument("--drawings", type=int, default=2000,
                        help="requests in the drawings-only run over --concurrency connections (default: 2000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="drawings-only runs, one after another; the one of median p99 is the result (default: 3)")
    parser.add_argument("--workers", type=int, default=1, help="`mnistlab serve --workers N` (default: 1)")
    parser.add_argument("--good-share", type=float, default=GOOD_SHARE,
                        help=f"share of good drawings in the mixed run; 1 = drawings only (default: {GOOD_SHARE})")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else default_run(Path(tmp))
        import torch

        print(f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
              f"Python {platform.python_version()}, torch {torch.__version__}; serving {run} "
              f"with {args.workers} process(es); {load_average()}")
        goods = drawings(200)
        server, port, startup = start_server(run, args.workers)
        try:
            print(f"start-up: first prediction answered {startup:.2f} s after starting `mnistlab serve`")
            settle(server.pid)  # other worker processes may still be loading their model
            asyncio.run(run_load(port, [Case("good", 200, body=g) for g in goods[:64]], args.concurrency))
            cpu_start = cpu_seconds(server.pid)
            _, single = asyncio.run(run_load(port, [Case("good", 200, body=goods[i % len(goods)])
                                                    for i in range(args.single)], concurrency=1))
            cpu_single = (cpu_seconds(server.pid) - cpu_start) / args.single
            print(f"one 280×280 PNG at a time ({args.single} requests): "
                  f"{percentiles([s for _, _, s, _ in single])}; server CPU {cpu_single * 1000:.2f} ms per request")
            rounds = [drawings_round(server, port, goods, args.drawings, args.concurrency) for _ in range(args.rounds)]
            before, cpu_start = rss_mb(server.pid), cpu_seconds(server.pid)
            mix = request_mix(args.requests, goods, args.seed, args.good_share)
            wall, results = asyncio.run(run_load(port, mix, args.concurrency))
            after, cpu_mixed = rss_mb(server.pid), cpu_seconds(server.pid) - cpu_start
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(timeout=10)

    good = [s for case, status, s, _ in results if case.kind == "good" and status == 200]
    wrong = Counter((case.kind, case.expected, status) for case, status, _, _ in results if status != case.expected)
    kinds = Counter(case.kind for case, _, _, _ in results)
    print(f"mixed run: {len(results):,} requests, {args.concurrency} concurrent, {wall:.1f} s: "
          f"{len(results) / wall:.0f} requests/s, {len(good) / wall:.0f} predictions/s")
    print(f"  good drawings ({len(good):,}): {percentiles(good)}")
    print(f"  server CPU: {cpu_mixed:.1f} s, {cpu_mixed / len(results) * 1000:.1f} ms per request; "
          f"{cpu_mixed / wall:.2f} of {len(os.sched_getaffinity(0))} cores busy on average")
    print(f"  bad requests: {', '.join(f'{k} {n}' for k, n in sorted(kinds.items()) if k != 'good')}")
    print(f"  server memory (RSS): {before:.0f} MB before, {after:.0f} MB after ({after - before:+.1f} MB)")
    print(f"  wrong status codes: {sum(wrong.values())}"
          + "".join(f"\n    {kind}: expected {expected}, got {status} ×{n}" for (kind, expected, status), n in
                    sorted(wrong.items())))
    print(f"  server still running at the end: {'yes' if alive else 'NO'}")
    print(f"drawings only, {args.concurrency} connections, {args.rounds} round(s) of {args.drawings} 280×280 PNGs "
          f"({', '.join(str(r.answered) for r in rounds)} answered 200): {load_average()}")
    for number, one in enumerate(rounds, 1):
        print(f"  round {number}: {one.line()}")
    print(f"  the round of median p99: {sorted(rounds, key=lambda r: r.p99)[len(rounds) // 2].line()}")


if __name__ == "__main__":
    main()
