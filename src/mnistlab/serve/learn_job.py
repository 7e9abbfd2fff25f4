"""A learning job: the served model fine-tuned (`mnistlab.finetune`) on the collected drawings, in a process
of its own, so that the server goes on answering while it learns.

The server starts a Python process that runs `main(SPEC)` (`start_job`); the job runs at a lower
priority (`JOB_NICENESS`) with few torch threads. Everything about it lives in the learn folder
(`serve --learn-out`), so that every process of `--workers N`, and a restarted server, sees the same:

    .learn.lock        held (flock) for the job's whole life: one job at a time across processes; a job
                       killed with -9 lets go of it as it dies
    learn-status.json  the job's state, progress and result, replaced whole as it goes (`read_status`)
    .learn.cancel      asks the job to stop (DELETE /api/learn); it looks for it at every step
    .learn.log         what the job printed, for a failure that even its status could not record
    serving.json       which model answers: {"use": "learned" | "original", "run": NAME, "base_sha256": ...}
    NAME/              each learned model: an ordinary run folder, published whole by `finetune`

Nothing here imports torch: the job's process imports `mnistlab.finetune` itself (`run_job`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ApiError

try:
    import fcntl  # the learn folder's lock (flock): Linux, macOS and the other Unixes
except ImportError:  # Windows: the server runs, without learning
    fcntl = None

WANTED_PER_DIGIT = 10  # drawings of each digit the page asks for
LEARN_MIN_PER_DIGIT = 5  # drawings of each digit needed to start learning: 3 or more to train on, 1 or 2 held out
MAX_DRAWINGS = 1_000  # a collect folder with more is refused: learning reads every drawing first
# Adam's learning rate of a job, above `finetune`'s default: learn mode trains on 70% of a small folder, and the
# higher rate cut the writer's other drawings' error further at the same cost and MNIST accuracy
# (docs/benchmarks.md, "Learn mode").
LEARN_LR = 1e-3
LEARN_SECONDS = 300  # a job's time limit, well above what learning takes: a stuck job ends here
KILL_GRACE_SECONDS = 10  # after its limit, a job that has not stopped itself is killed
JOB_NICENESS = 10  # the job yields the CPU to the server's requests (os.nice)
STATUS_EVERY_SECONDS = 0.25  # how often a job rewrites its status while it learns
LOCK_WAIT_SECONDS = 0.2  # a status read holds the lock a moment: a start tries this long before answering 409
MAX_STATUS_BYTES = 64 << 10  # learn-status.json and serving.json are small: a larger one is not ours
MAX_SKIPPED_LISTED = 20  # drawings that could not be read, listed in the status (the count is always whole)

LOCK_FILE, STATUS_FILE, CANCEL_FILE, LOG_FILE = ".learn.lock", "learn-status.json", ".learn.cancel", ".learn.log"
CHOICE_FILE = "serving.json"
# The job's process runs `main` (not `-m` this module, which its package has already imported: runpy would warn).
JOB_COMMAND = "import sys; from mnistlab.serve.learn_job import main; sys.exit(main(sys.argv[1:]))"
IDLE = {"state": "idle", "progress": 0.0, "message": "no learning yet", "before": None, "after": None,
        "mnist": None, "run": None, "trained": None, "held_out": None, "skipped": [], "seconds": None}


@dataclass(frozen=True)
class JobSpec:
    """What a job learns from and where it writes; passed to the job's process as JSON."""

    base: str  # the served model, as `load_model` takes it
    images: str  # the collect folder
    folder: str  # the learn folder
    run: str  # the new run folder's name, inside `folder`
    seconds: float = LEARN_SECONDS
    lr: float = LEARN_LR
    threads: int = 1  # torch threads of the job
    data_dir: str | None = None  # the base's dataset files (default: as `mnistlab finetune` finds them)
    server_pid: int = 0  # the job stops when this process is gone


def can_learn() -> bool:
    """Whether this system has the file lock that keeps learning to one job at a time."""
    return fcntl is not None


def write_json(path: Path, record: dict) -> None:
    """Replace `path` with `record` as JSON, whole: written beside it, then renamed."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(record, out)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict | None:
    """A small JSON object written by `write_json`, or None when it is missing, too large or not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as file:
            data = file.read(MAX_STATUS_BYTES + 1)
        record = json.loads(data) if len(data) <= MAX_STATUS_BYTES else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def job_running(folder: Path) -> bool:
    """Whether a job holds the learn folder's lock now (in this process or any other)."""
    try:
        fd = _open_lock(folder)
    except FileNotFoundError:  # the folder is made by the first job
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing lets go of a lock taken just now
    return False


def read_status(folder: Path) -> dict:
    """The last job's status (`IDLE` before the first); a job that died without saying so is reported failed."""
    record = read_json(folder / STATUS_FILE)
    if record is None:
        return dict(IDLE)
    status = {**IDLE, **{k: v for k, v in record.items() if k in IDLE}}
    if status["state"] == "running" and not job_running(folder):
        status.update(state="failed", message="learning stopped unexpectedly; the model in use is unchanged")
    return status


def start_job(spec: JobSpec) -> dict:
    """Start learning in a new process and return its first status; the server is not kept waiting.

    Raises:
        ApiError: 409 while another job runs (in any process of the server).
    """
    folder = Path(spec.folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ApiError(500, f"learning could not start: {folder.name}: {disk_words(e)}") from None
    lock = _take_lock(folder)
    try:
        (folder / CANCEL_FILE).unlink(missing_ok=True)
        remove_leftovers(folder)
        status = {**IDLE, "state": "running", "message": "starting", "run": spec.run, "started": time.time()}
        write_json(folder / STATUS_FILE, status)
        with open(folder / LOG_FILE, "wb") as log:
            # The lock's descriptor goes with the job: the lock is held as long as either process lives.
            process = subprocess.Popen([sys.executable, "-c", JOB_COMMAND, json.dumps(vars(spec))],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(lock,))
    except OSError as e:
        os.close(lock)
        raise ApiError(500, f"learning could not start: {disk_words(e)}") from None
    threading.Thread(target=_watch, args=(process, lock, spec), daemon=True, name="mnistlab-learn-watch").start()
    return read_status(folder)


def cancel_job(folder: Path) -> None:
    """Ask the running job to stop (it does within a step), or 409 when none runs."""
    if not job_running(folder):
        raise ApiError(409, "no learning is running")
    (folder / CANCEL_FILE).touch()


def remove_leftovers(folder: Path) -> None:
    """Remove what a killed job left: its run's staging folder (`.NAME.tmp-…`) and half-written status files."""
    for entry in folder.iterdir():
        if not entry.name.startswith(".") or ".tmp" not in entry.name:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def disk_words(error: BaseException) -> str:
    """An error in words, saying so plainly when the disk is full."""
    text = str(error)
    if getattr(error, "errno", None) == errno.ENOSPC or os.strerror(errno.ENOSPC) in text:
        return f"the disk is full ({text})"
    return text


def _open_lock(folder: Path) -> int:
    return os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def _take_lock(folder: Path) -> int:
    """The learn folder's lock, held by a new descriptor, or ApiError 409 while a job holds it."""
    fd = _open_lock(folder)
    give_up = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > give_up:
                os.close(fd)
                raise ApiError(409, "a learning job is already running; wait for it, or cancel it "
                                    "(DELETE /api/learn)") from None
            time.sleep(0.01)


def _watch(process: subprocess.Popen, lock: int, spec: JobSpec) -> None:
    """Wait for the job; kill it past its limit; record a failure it could not record; then let go of the lock."""
    folder = Path(spec.folder)
    try:
        timed_out = False
        try:
            process.wait(spec.seconds + KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            timed_out = True
        status = read_json(folder / STATUS_FILE) or {}
        if status.get("state") == "running":
            why = (f"learning took longer than its limit of {spec.seconds:g} s and was stopped" if timed_out
                   else f"learning stopped unexpectedly (exit code {process.returncode})")
            try:
                write_json(folder / STATUS_FILE, {**IDLE, **status, "state": "failed",
                                                  "message": f"{why}; the model in use is unchanged"})
            except OSError:  # a full disk: `read_status` says that it stopped, from the lock
                pass
        remove_leftovers(folder)
    finally:
        os.close(lock)


# --- the job's own process ----------------------------------------------------------------------------------------


class Stopped(Exception):
    """The job was cancelled, ran out of time, or lost its server."""


class StatusWriter:
    """The job's status, rewritten whole at most every `STATUS_EVERY_SECONDS` (and at once when it ends)."""

    def __init__(self, spec: JobSpec):
        self.spec, self.folder = spec, Path(spec.folder)
        self.started = time.monotonic()
        self.status = {**IDLE, "state": "running", "message": "starting", "run": spec.run, "started": time.time(),
                       "pid": os.getpid()}
        self.written = 0.0

    def progress(self, share: float, what: str) -> None:
        """`finetune`'s on_progress: stop if asked to, else record how far it is."""
        if (self.folder / CANCEL_FILE).exists():
            raise Stopped("learning was cancelled")
        if time.monotonic() - self.started > self.spec.seconds:
            raise Stopped(f"learning took longer than its limit of {self.spec.seconds:g} s and was stopped")
        if self.spec.server_pid and os.getppid() != self.spec.server_pid:
            raise Stopped("the server stopped")
        self.status.update(progress=round(min(max(share, 0.0), 1.0), 4), message=what)
        if time.monotonic() - self.written >= STATUS_EVERY_SECONDS:
            self.write()

    def write(self, **changes: object) -> None:
        self.status.update(changes, seconds=round(time.monotonic() - self.started, 3))
        write_json(self.folder / STATUS_FILE, self.status)
        self.written = time.monotonic()


def run_job(spec: JobSpec) -> int:
    """Learn, in this process: the run folder and then serving.json are written, or nothing is; the
    status says which, in one line. Returns the exit code."""
    writer = StatusWriter(spec)
    skipped: list[dict] = []
    try:
        from ..config import FinetuneConfig
        from ..finetune import finetune

        folder = Path(spec.folder)

        def unreadable(image, why: str) -> None:
            skipped.append({"file": f"{image.label}/{image.path.name}", "reason": why})

        config = FinetuneConfig(base=spec.base, images=spec.images, out=str(folder / spec.run), device="cpu",
                                lr=spec.lr, data_dir=spec.data_dir, progress=False)
        result = finetune(config, on_unreadable=unreadable, on_progress=writer.progress)
        write_json(folder / CHOICE_FILE, {"use": "learned", "run": spec.run,
                                          "base_sha256": result.record["base_sha256"]})
    except Stopped as e:
        return _failed(writer, f"{e}; the model in use is unchanged", skipped)
    except KeyboardInterrupt:
        return _failed(writer, "the server stopped; the model in use is unchanged", skipped)
    except MemoryError:
        return _failed(writer, "learning ran out of memory; the model in use is unchanged", skipped)
    except Exception as e:  # noqa: BLE001 — every failure becomes the status's one line, never a traceback
        line = " ".join(disk_words(e).split())
        return _failed(writer, f"learning failed: {line[:500]}; the model in use is unchanged", skipped)
    before, after = result.before, result.after
    unread = f" ({len(skipped)} could not be read and were left out)" if skipped else ""
    writer.write(state="done", progress=1.0, before=before.held_out, after=after.held_out,
                 mnist={"before": before.test, "after": after.test}, trained=result.trained,
                 held_out=result.held_out, skipped=skipped[:MAX_SKIPPED_LISTED],
                 message=f"learned from {result.trained} drawings{unread}; now answering with {spec.run}")
    return 0


def _failed(writer: StatusWriter, message: str, skipped: list[dict]) -> int:
    try:
        writer.write(state="failed", message=message, skipped=skipped[:MAX_SKIPPED_LISTED])
    except OSError:  # a full disk: the server reports the job as stopped (`_watch`, `read_status`)
        print(message, file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    """The job's process: at a low priority, with `threads` torch threads, so that the server keeps answering."""
    spec = JobSpec(**json.loads(argv[0]))
    os.nice(JOB_NICENESS)
    import torch

    torch.set_num_threads(spec.threads)
    return run_job(spec)
