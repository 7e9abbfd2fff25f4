"""`--workers N`: N processes serve one socket, each taking a new connection only when no other holds
fewer, and a worker that dies is replaced.

Left to the kernel, the process that is awake takes every connection waiting, and the others' cores
idle while its answers queue; so the processes share their connection counts (`ConnectionShare`).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .app import create_app
from .server import serve

NOT_SERVING = 2**31 - 1  # a process's count until it serves: no other process waits for it
WORKER_CHECK_SECONDS = 0.5  # how often `serve_workers` looks for a worker that died


@dataclass(frozen=True)
class ConnectionShare:
    """How many connections each process of `serve_workers` holds, in memory they share: one slot a process."""

    counts: Any  # a multiprocessing RawArray("i"), one slot a process
    slot: int  # this process's

    @classmethod
    def create(cls, processes: int) -> list[ConnectionShare]:
        counts = multiprocessing.get_context("spawn").RawArray("i", [NOT_SERVING] * processes)
        return [cls(counts, slot) for slot in range(processes)]

    def publish(self, connections: int) -> None:
        self.counts[self.slot] = connections

    def withdraw(self) -> None:
        """This slot's process no longer serves: no other waits for it."""
        self.counts[self.slot] = NOT_SERVING

    @property
    def serving(self) -> bool:
        """Whether this slot's process has served (and not ended cleanly) since it was started."""
        return self.counts[self.slot] != NOT_SERVING

    def fewer_elsewhere(self, connections: int) -> bool:
        """True when another process that is serving holds fewer than `connections`."""
        return any(count < connections for slot, count in enumerate(self.counts) if slot != self.slot)


def serve_workers(app: Any, sock: socket.socket, workers: int, run: str | os.PathLike, settings: dict) -> None:
    """Serve `app` here and in `workers - 1` more processes, all on `sock`, each taking new connections as
    `ConnectionShare` says.

    Each worker loads the model itself (`create_app(run, **settings)`) and keeps no state between
    requests but the collect folder, where every file has a new, unique name. A worker that dies (killed,
    or crashed in native code) is replaced; one that ends cleanly (SIGTERM) is not. Ctrl-C (or SIGTERM to
    this process) stops them all.
    """
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch threads copied by fork
    shares = ConnectionShare.create(workers)

    def start(slot: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(sock, os.fspath(run), settings, shares[slot]),
                                  name=f"mnistlab-serve-{slot}")
        process.start()
        return process

    others = {slot: start(slot) for slot in range(1, workers)}
    stopping = threading.Event()
    keeper = threading.Thread(target=replace_dead_workers, args=(others, start, shares, stopping), daemon=True)
    keeper.start()
    try:
        serve(app, sock, counts=shares[0])
    finally:
        stopping.set()
        keeper.join()
        for process in others.values():
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests under way, then exits
        for process in others.values():
            process.join(10)


def replace_dead_workers(workers: dict[int, Any], start: Callable[[int], Any], shares: list[ConnectionShare],
                         stopping: threading.Event) -> None:
    """Until `stopping`, start a new worker in the place of one that ended with an error or a signal."""
    while not stopping.wait(WORKER_CHECK_SECONDS):
        for slot, process in list(workers.items()):
            if process.is_alive() or process.exitcode == 0 or stopping.is_set():
                continue
            served = shares[slot].serving
            shares[slot].withdraw()  # its connections went with it
            if not served:  # it failed before it served, and would again: the others go on without it
                print(f"mnistlab: warning: server process {process.pid} failed to start (exit code "
                      f"{process.exitcode}); serving with one process fewer", file=sys.stderr, flush=True)
                del workers[slot]
                continue
            print(f"mnistlab: warning: server process {process.pid} ended (exit code {process.exitcode}); "
                  "starting another", file=sys.stderr, flush=True)
            workers[slot] = start(slot)


def _worker(sock: socket.socket, run: str, settings: dict, share: ConnectionShare) -> None:
    try:
        serve(create_app(run, **settings), sock, counts=share)
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal's group: the parent reports it
        pass
