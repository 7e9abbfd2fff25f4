"""What `predict`, `evaluate` and `serve` run: a `Classifier`, whatever kind of model stands behind it.

Two kinds exist: a checkpoint (`mnistlab.Checkpoint`, PyTorch) and an exported ONNX file
(`mnistlab.OnnxModel`, onnxruntime); `mnistlab.load_model` loads either. This module imports
nothing of mnistlab's, so that both kinds and every caller can name the protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Classifier(Protocol):
    """A model that reads preprocessed 28×28 images, with what `serve` shows about it.

    `mnistlab.predict(model, images)` classifies image files or in-memory images with any of them.
    """

    path: Path  # the run folder, or the exported file

    @property
    def classes(self) -> tuple[str, ...]:
        """The name of each class, in label order."""

    @property
    def layout(self) -> str:
        """How `predict` places an image in 28×28, as the model's dataset does ("digit" or "fill")."""

    @property
    def model_name(self) -> str:
        """The registered architecture, e.g. "mlp"."""

    @property
    def config(self) -> dict:
        """What the model records about itself (a checkpoint's config.json; an export's metadata)."""

    @property
    def metrics(self) -> dict:
        """The evaluation recorded at training (may be empty)."""

    @property
    def parameter_count(self) -> int:
        """The number of weights."""

    @property
    def temperature(self) -> float:
        """What the logits are divided by before the softmax: its calibration (1: none recorded)."""

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (N, 28, 28) pixels in [0, 1], white on black → float32 (N, classes) calibrated probabilities,
        softmax(logits / temperature): the top one is the probability that the answer is right.

        A row is NaN where the model's output is not finite.
        """


class Recorded:
    """What a model says of itself, read off its record: a checkpoint's config.json, an export's metadata."""

    config: dict

    @property
    def model_name(self) -> str:
        return self.config["model"]["name"]

    @property
    def metrics(self) -> dict:
        return self.config.get("metrics", {})

    @property
    def temperature(self) -> float:
        """The "calibration" record's temperature (checked when the record was read); 1 when there is none."""
        return self.config.get("calibration", {}).get("temperature", 1.0)
