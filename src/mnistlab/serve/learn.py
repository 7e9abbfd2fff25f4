"""Learn mode: learn the served model from the collected drawings, and choose which model answers.

    GET    /api/learn   the learning job's state (`api.LearnState`): {"state": "idle" | "running" | "done" |
                        "failed", "progress": 0..1, "message", "before", "after", "mnist": {"before", "after"},
                        "run", "trained", "held_out", "skipped", "seconds", "limit_seconds"}
    POST   /api/learn   start learning: 202 with the state; 409 while a job runs; 422 when a digit has too few
                        drawings (naming which) or the folder holds too many
    DELETE /api/learn   cancel the running job: 202 with the state; 409 when none runs
    POST   /api/model   {"use": "learned" | "original"}: which model answers, in every server process;
                        200 with GET /api/model's answer; 409 before anything was learned

Without a collect folder, or for an exported model (which cannot learn), these answer 404 and say why.
The job runs in a process of its own (`learn_job`); which model answers is `choice`'s. Learned runs go
into the learn folder (`--learn-out`, by default the collect folder's name with `-learned`, beside it).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..errors import ApiError, MnistlabError, ServeError
from ..labelled import DIGITS
from .api import EDGE_ERRORS, LearnState, ModelInfo, ModelUse, error
from .choice import ModelChoice
from .collect import collected_counts, suggested_run_name
from .learn_job import (
    LEARN_MIN_PER_DIGIT,
    LEARN_SECONDS,
    MAX_DRAWINGS,
    JobSpec,
    cancel_job,
    job_running,
    read_status,
    remove_leftovers,
    start_job,
)

LEARNED_SUFFIX = "-learned"  # the default learn folder: the collect folder's name and this, beside it


@dataclass(frozen=True)
class LearnSettings:
    """Where learned runs go, and a job's bounds."""

    folder: Path  # the learn folder (`--learn-out`)
    seconds: float = LEARN_SECONDS  # a job's time limit
    threads: int | None = None  # a job's torch threads (default: `job_threads()`)
    data_dir: str | None = None  # the base's dataset files (default: as `mnistlab finetune` finds them)


def job_threads() -> int:
    """A job's torch threads: every core this process may use but one, which stays the server's. A fine-tune's
    small batches gain little from more, and on a busy machine threads that wait for each other waste it
    (docs/benchmarks.md, "Learn mode")."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


def default_learn_folder(collect_dir: str | os.PathLike) -> Path:
    """Where learned runs go by default: beside the collect folder, `mine` → `mine-learned`."""
    collect = Path(collect_dir)
    return collect.with_name(f"{collect.resolve().name}{LEARNED_SUFFIX}")


def check_learn_folder(folder: str | os.PathLike) -> Path:
    """Make sure that learned runs can be saved in `folder` (made at the first job), and tidy what a killed job left.

    Raises:
        ServeError: `folder` is a symlink or not a folder, or it (or the folder it would be made in) cannot be
            written in.
    """
    folder = Path(folder)
    try:
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise ServeError(f"{folder}: is not a folder; give another --learn-out")
        nearest = next(p for p in (folder, *folder.parents) if p.exists())
        probe = nearest / f".probe-{secrets.token_hex(4)}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        probe.unlink()
        if folder.is_dir() and not job_running(folder):
            remove_leftovers(folder)
    except OSError as e:
        raise ServeError(f"{folder}: cannot save learned models there ({e.strerror or e})") from None
    return folder


def add_learn_routes(app: FastAPI, models: ModelChoice, settings: LearnSettings | None, collect: Path | None,
                     base: str, run_name: str, unavailable: str | None,
                     model_info: Callable[[], dict]) -> None:
    """The learn routes and POST /api/model. `base` is the served model as the job loads it, `run_name` as people
    name it; `unavailable` says why this server cannot learn (None: it can); `model_info` is GET /api/model's answer."""
    not_here = {404: error("this server does not learn: no collect folder, or an exported model")}

    def ready() -> LearnSettings:
        if settings is None or collect is None:
            raise ApiError(404, unavailable or "this server does not learn")
        return settings

    def state() -> dict:
        return {**read_status(ready().folder), "limit_seconds": ready().seconds}

    @app.get("/api/learn", response_model=LearnState, responses={**EDGE_ERRORS, **not_here},
             summary="The learning job's state")
    async def learn_state() -> dict:
        return await run_in_threadpool(state)

    @app.post("/api/learn", response_model=LearnState, status_code=202,
              responses={**EDGE_ERRORS, **not_here, 409: error("a learning job is already running"),
                         422: error("a digit has too few drawings (the digits are named), or there are too many"),
                         500: error("the job could not be started (a full disk)")},
              summary="Learn the collected drawings")
    async def learn() -> dict:
        """Fine-tune the model that the server was started with on the collected drawings, in a process of its
        own: the server goes on answering. Poll GET /api/learn; when it is done, the learned model answers."""
        learning = ready()
        counts = await run_in_threadpool(collected_counts, collect, len(DIGITS))
        check_counts(counts)
        if await run_in_threadpool(job_running, learning.folder):
            raise ApiError(409, "a learning job is already running; wait for it, or cancel it (DELETE /api/learn)")
        spec = JobSpec(base=base, images=os.fspath(collect), folder=os.fspath(learning.folder),
                       run=new_run_name(learning.folder, run_name), seconds=learning.seconds,
                       threads=learning.threads or job_threads(), data_dir=learning.data_dir,
                       server_pid=os.getpid())
        await run_in_threadpool(start_job, spec)
        return await run_in_threadpool(state)

    @app.delete("/api/learn", response_model=LearnState, status_code=202,
                responses={**EDGE_ERRORS, **not_here, 409: error("no learning job is running")},
                summary="Cancel the learning job")
    async def cancel() -> dict:
        """The job stops within a step; the model that answers is unchanged and nothing is saved."""
        await run_in_threadpool(cancel_job, ready().folder)
        return {**(await run_in_threadpool(state)), "message": "cancelling"}

    @app.post("/api/model", response_model=ModelInfo,
              responses={**EDGE_ERRORS, **not_here, 409: error("nothing was learned yet"),
                         422: error("`use` is neither \"learned\" nor \"original\"")},
              summary="Choose the model that answers: learned or original")
    async def choose(choice: ModelUse) -> JSONResponse:
        """Every process of the server answers with the chosen model from the next request on, and a
        restarted server comes back with it."""
        ready()
        try:
            await run_in_threadpool(models.choose, choice.use)
        except MnistlabError as e:
            raise ApiError(409, str(e)) from None
        except OSError as e:
            raise ApiError(500, f"the choice could not be saved ({e.strerror or e})") from None
        return JSONResponse(model_info())


def check_counts(counts: list[int]) -> None:
    """422 naming the digits with fewer than `LEARN_MIN_PER_DIGIT` drawings, or when there are over `MAX_DRAWINGS`."""
    short = [f"{digit} has {count}" for digit, count in enumerate(counts) if count < LEARN_MIN_PER_DIGIT]
    if short:
        raise ApiError(422, f"too few drawings to learn from: {', '.join(short)}; each digit needs at least "
                            f"{LEARN_MIN_PER_DIGIT}")
    if sum(counts) > MAX_DRAWINGS:
        raise ApiError(422, f"the collect folder holds {sum(counts):,} drawings; learning takes at most "
                            f"{MAX_DRAWINGS:,}: remove some")


def new_run_name(folder: Path, run_name: str) -> str:
    """`<model>-mine-<date>-<time>` (`cnn-mine-20250101-120000`), with -2, -3... when that is taken."""
    stem = f"{suggested_run_name(run_name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    name, n = stem, 1
    while (folder / name).exists() or (folder / name).is_symlink():
        n += 1
        name = f"{stem}-{n}"
    return name
