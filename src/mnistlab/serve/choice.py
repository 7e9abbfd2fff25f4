"""Which model answers: the one the server was started with (the original) or the model it learned.

The choice is the learn folder's serving.json (`learn_job.CHOICE_FILE`), not this process's memory:
a learning job writes it when it is done, POST /api/model rewrites it, and every process of
`--workers N` looks at it (one stat) before each answer, loading the learned run when it changed.
So all processes answer with the same model after a switch, and a restarted server comes back with
the model that was chosen, provided the learned run was learned from the model being served.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from .._io import file_sha256
from ..classifier import Classifier
from ..errors import MnistlabError
from ..records import WEIGHTS_FILE
from .inference import Predictor
from .learn_job import CHOICE_FILE, read_json, write_json

USES = ("original", "learned")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # what a learned run's folder may be called


def weights_sha256(model: Classifier) -> str | None:
    """The digest of a checkpoint's weights, which a learned run records as its base; None for an exported file."""
    weights = model.path / WEIGHTS_FILE
    try:
        return file_sha256(weights) if model.path.is_dir() else None
    except OSError:
        return None


@dataclass
class ModelChoice:
    """The original predictor, the learned one (once there is one), and which of them answers."""

    original: Predictor
    folder: Path | None  # the learn folder; None: the server does not learn, the original always answers
    load: Callable[[Path], Predictor]  # a warm predictor of a learned run folder
    base_sha256: str | None = None  # the original's weights: a learned run of another base is not taken
    learned: Predictor | None = None
    use: str = "original"
    problem: str | None = None  # why the learned run named in serving.json is not served
    _seen: tuple | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def current(self) -> Predictor:
        return self.learned if self.use == "learned" and self.learned is not None else self.original

    async def predictor(self) -> Predictor:
        """The predictor that answers now, after a look at serving.json (loading a learned run that is new)."""
        if self.folder is not None and self._signature() != self._seen:
            await run_in_threadpool(self.refresh)
        return self.current

    def refresh(self) -> None:
        """Read serving.json again and load the learned run it names, if that is not the one loaded."""
        if self.folder is None:
            return
        with self._lock:
            signature = self._signature()
            if signature == self._seen:
                return
            record = read_json(self.folder / CHOICE_FILE) or {}
            run, use = record.get("run"), record.get("use")
            usable = (isinstance(run, str) and RUN_NAME.fullmatch(run) is not None and use in USES
                      and (self.base_sha256 is None or record.get("base_sha256") == self.base_sha256))
            if not usable:
                self.learned, self.use, self.problem = None, "original", None
            elif self.learned is None or self.learned.summary["name"] != run:
                self._load(run)
            if self.learned is not None:
                self.use = use
            self._seen = signature

    def choose(self, use: str) -> None:
        """Make `use` ("original" or "learned") the model that answers, in every process; a learned run must exist."""
        self.refresh()
        if self.learned is None:
            raise MnistlabError("there is no learned model yet: teach it first (POST /api/learn)"
                                + (f"; {self.problem}" if self.problem else ""))
        write_json(self.folder / CHOICE_FILE, {"use": use, "run": self.learned.summary["name"],
                                               "base_sha256": self.base_sha256})
        self.refresh()

    def describe(self) -> dict:
        """{"use", "original", "learned"}: which model answers, and the names of both (None: none learned)."""
        return {"use": self.use if self.learned is not None else "original",
                "original": self.original.summary["name"],
                "learned": self.learned.summary["name"] if self.learned is not None else None}

    def _load(self, run: str) -> None:
        path = self.folder / run
        try:
            if path.is_symlink() or not path.is_dir():
                raise MnistlabError(f"the learned run {run} is not a folder in the learn folder")
            self.learned, self.problem = self.load(path), None
        except (MnistlabError, OSError) as e:  # deleted or spoilt by hand: the original answers, and says why
            self.learned, self.use, self.problem = None, "original", f"the learned run could not be loaded: {e}"

    def _signature(self) -> tuple | None:
        try:
            info = os.stat(self.folder / CHOICE_FILE, follow_symlinks=False)
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size
