"""From an upload to the model's answer: decode, bring to 28×28, classify in batches.

The image is decoded and preprocessed in a pool of one thread per CPU core (`Predictor.pool`); the
images that are ready together are classified in one forward pass (`Batcher`). The threads share
the model without a lock: in eval mode under `torch.inference_mode` a forward pass only reads the
weights. Nothing here imports torch, so serving an ONNX file runs without it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..classifier import Classifier
from ..config import PredictOptions, default
from ..decoding import gray_mode, load_image
from ..errors import ApiError, ImageError, NoDigitError
from ..ink import WORKING_SIZE
from ..prediction import Prediction
from ..preprocessing import preprocess_array
from ..rejection import Threshold, threshold_for

MAX_UPLOAD_PIXELS = 12_000_000  # a 12 MP photo; larger is refused from the header (a 2 MB upload rarely holds more)
TOP_K = default(PredictOptions, "top_k")  # the likeliest classes each answer lists, as `predict` lists them
# A small image (a drawing, a scanned digit: up to WORKING_SIZE on its long side) is box-averaged to about this
# size before preprocessing: half the work for a 280-px drawing, still 7× the 20-px digit box, and it reads the
# same (docs/serving.md, "Throughput"). A larger image (a photo, where the digit may be small) keeps its size.
SERVE_SIZE = 160


def serving_size(image: Image.Image) -> Image.Image:
    """`image` box-averaged by the whole factor that brings a small image's long side to SERVE_SIZE or under."""
    long = max(image.size)
    factor = math.ceil(long / SERVE_SIZE)
    if factor < 2 or long > WORKING_SIZE or min(image.size) // factor < 28:
        return image
    if image.mode in ("RGB", "RGBA", "LA"):  # to gray first, as `to_grayscale` would: fewer bands to average
        image = gray_mode(image)
    if image.mode not in ("L", "LA"):  # reduce() takes 8-bit bands; other modes go as they are
        return image
    return image.reduce(factor)


def model_summary(model: Classifier) -> dict:
    """The run's (or file's) name, model and recorded test accuracy (None when the config has no usable one)."""
    metrics = model.config.get("metrics")
    accuracy = metrics.get("test_acc") if isinstance(metrics, dict) else None
    usable = isinstance(accuracy, int | float) and not isinstance(accuracy, bool) and 0 <= accuracy <= 1
    return {"name": model.path.resolve().name, "architecture": str(model.model_name),
            "test_accuracy": float(accuracy) if usable else None}


class Batcher:
    """Classify 28×28 images that become ready together in one forward pass.

    While one batch runs in the pool, the images that arrive wait, and go as the next batch: under
    load the batches grow by themselves, and a lone request waits for nobody. Each event loop has
    its own queue (a server has one; a test client may run one per thread).
    """

    def __init__(self, model: Classifier, pool: ThreadPoolExecutor):
        self.model, self.pool = model, pool
        self.queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()

    async def classify(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (28, 28) → the model's probabilities (classes,)."""
        loop = asyncio.get_running_loop()
        queue = self.queues.setdefault(loop, _Queue())
        future = loop.create_future()
        queue.waiting.append((pixels, future))
        if not queue.running:
            queue.running = True
            loop.create_task(self._drain(queue))
        return await future

    async def _drain(self, queue: _Queue) -> None:
        loop = asyncio.get_running_loop()
        try:
            while queue.waiting:
                batch, queue.waiting = queue.waiting, []
                try:
                    rows = await loop.run_in_executor(self.pool, self.model.probabilities,
                                                      np.stack([p for p, _ in batch]))
                except Exception as e:  # every request of the batch gets the failure (a 500)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                for (_, future), row in zip(batch, rows, strict=True):
                    if not future.done():
                        future.set_result(row)
        finally:
            queue.running = False


@dataclass
class _Queue:
    waiting: list[tuple[np.ndarray, asyncio.Future]] = field(default_factory=list)
    running: bool = False


@dataclass
class Predictor:
    """The loaded model, the threads that decode and preprocess (one per core), and the batcher."""

    model: Classifier
    pool: ThreadPoolExecutor
    summary: dict  # `model_summary`, sent with every answer
    reject: str = "off"  # how readily a mark is "not a digit" (`mnistlab.rejection`): `serve --reject`
    batcher: Batcher = field(init=False)
    threshold: Threshold = field(init=False)  # answers scoring under it are "not a digit"
    classes: tuple[str, ...] = field(init=False)
    layout: str = field(init=False)

    def __post_init__(self) -> None:
        self.threshold = threshold_for(self.model, self.reject)
        self.batcher = Batcher(self.model, self.pool)
        self.classes = tuple(self.model.classes)
        self.layout = self.model.layout

    async def answer(self, data: bytes, preprocessed: bool = False) -> tuple[Image.Image, dict]:
        """Decode and preprocess in the pool, classify in a batch: (the decoded image, the API's answer).

        Raises:
            ApiError: 400 for anything `load_image` refuses, 422 when no digit is found (or a mark too small).
        """
        loop = asyncio.get_running_loop()
        image, pixels = await loop.run_in_executor(self.pool, self.prepare, data)
        probabilities = await self.batcher.classify(pixels)
        return image, self.respond(pixels, probabilities, preprocessed)

    def prepare(self, data: bytes) -> tuple[Image.Image, np.ndarray]:
        """The upload decoded, and its 28×28 float32 pixels, or an ApiError (400, 422)."""
        try:
            image = load_image(data, MAX_UPLOAD_PIXELS, name="upload")
        except ImageError as e:
            raise ApiError(400, str(e)) from None
        try:
            return image, self.pixels(image)
        except NoDigitError as e:
            raise ApiError(422, str(e)) from None
        except ImageError as e:  # pixels Pillow decoded but that cannot be read as gray
            raise ApiError(400, f"upload: {e}") from None

    def pixels(self, image: Image.Image) -> np.ndarray:
        """An upload's 28×28 float32 pixels, as `mnistlab predict` finds them, with marks too small to be a digit
        refused: on the drawing page they are a stroke just begun ("draw it larger")."""
        return preprocess_array(serving_size(image), name="", layout=self.layout, refuse_small_marks=True)

    def respond(self, pixels: np.ndarray, probabilities: np.ndarray, preprocessed: bool) -> dict:
        """The API's answer: `mnistlab predict --json`'s (less the file name), the image the model was given
        when asked for, and the model. A mark refused as not a digit is an answer too: label and class null,
        `reason` "not a digit" (null otherwise)."""
        not_a_digit = bool(self.threshold.refuses(probabilities[None])[0])
        prediction = Prediction("upload", image=pixels).set_output(probabilities, self.classes, TOP_K, not_a_digit)
        if not (prediction.ok or prediction.not_a_digit):
            raise ApiError(422, prediction.error)
        answer = prediction.to_dict()
        del answer["file"]
        answer.pop("error", None)  # a refusal is an answer, not an error: `reason` says it
        answer.setdefault("reason", None)
        answer["preprocessed"] = _png_base64(prediction.pixels()) if preprocessed else None
        answer["model"] = self.summary
        return answer

    def warm_up(self) -> None:
        """Classify one drawn stroke, so that the first request finds every module imported and warm."""
        image = Image.new("L", (56, 56))
        image.paste(255, (26, 8, 31, 48))
        self.model.probabilities(self.pixels(image)[None])


def _png_base64(pixels: np.ndarray) -> str:
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    return base64.b64encode(png.getvalue()).decode("ascii")
