"""A run folder's name and contents: what `mnistlab train` and `mnistlab finetune` both write.

A run is the checkpoint (`mnistlab.checkpoints.checkpoint_files`) and metrics.json, written into a
staging folder (`mnistlab._outputs.StagedFolder`) that is published whole. Both commands write it
here, so a fine-tuned model's folder reads exactly as a trained one's.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from ._io import json_text
from ._outputs import StagedFolder
from .checkpoints import checkpoint_files
from .errors import OutputError
from .pretrained import PREFIX, is_pretrained_name
from .records import METRICS_FILE, RUNS_DIR, provenance


def default_run_dir(model_name: str) -> Path:
    """runs/<date>-<time>-<model>, with -2, -3... when a run of that name already exists."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = RUNS_DIR / f"{stamp}-{model_name}", 1
    while path.exists():
        n += 1
        path = RUNS_DIR / f"{stamp}-{model_name}-{n}"
    return path


def check_run_name(path: str | os.PathLike) -> None:
    """`OutputError` for a run folder that a later command would read as a shipped model (`pretrained:NAME`).

    `pretrained:` is reserved: `mnistlab evaluate pretrained:cnn-mine`, run inside the folder that holds
    `pretrained:cnn-mine`, would look for a shipped model named `cnn-mine`. Both the whole argument and
    its last component are checked, as either may be typed later.
    """
    text = os.fspath(path)
    if is_pretrained_name(text) or Path(text).name.startswith(PREFIX):
        raise OutputError(f"{text}: a run folder's name may not start with {PREFIX!r}, which names the models "
                          "that ship with mnistlab; choose another name")


def write_run(staging: StagedFolder, model: nn.Module, *, model_name: str, model_args: dict, mean: float, std: float,
              dataset: dict, epochs: list[dict], config: dict, train_config: dict, device: str, wall_seconds: float,
              train_seconds: float, eval_seconds: float, time_to_target: float | None, command: str | None = None,
              finetune: dict | None = None, calibration: dict | None = None, reject: dict | None = None) -> None:
    """The checkpoint (weights, config.json) and metrics.json, into the staging folder.

    `epochs` are metrics.json's rows, one per evaluation (the last one is the checkpoint's `metrics`);
    `config` is metrics.json's record of the settings, `train_config` the checkpoint's; `command`, the
    command line that asked for the run; `finetune`, the record of a fine-tune (`records.FINETUNE`);
    `calibration`, how the confidence was calibrated (`records.CALIBRATION`), in both files; `reject`,
    the "not a digit" thresholds (`records.REJECT`).
    """
    files = checkpoint_files(model, model_name, model_args, mean=mean, std=std, dataset=dataset,
                             metrics=epochs[-1], train_config=train_config, command=command, finetune=finetune,
                             calibration=calibration, reject=reject)
    files[METRICS_FILE] = json_text({
        **provenance(torch.__version__),
        "device": device,
        "wall_seconds": wall_seconds,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "time_to_target": time_to_target,
        "config": config,
        "dataset": dataset,
        "epochs": epochs,
        **({"calibration": calibration} if calibration is not None else {}),
    })
    for name, content in files.items():
        staging.write(name, content)
