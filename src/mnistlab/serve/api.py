"""The API's documented shapes: what each route answers, and the errors it may give (the OpenAPI at /docs)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from ..limits import NUM_CLASSES
from ..validation import Range
from .inference import TOP_K
from .learn_job import LEARN_MIN_PER_DIGIT, LEARN_SECONDS, WANTED_PER_DIGIT
from .uploads import IMAGE_TYPES

# A class index: the same declaration that checks labels elsewhere describes it in the OpenAPI schema.
ClassIndex = Annotated[int, WithJsonSchema(Range(0, NUM_CLASSES - 1, integer=True).json_schema())]


class TopK(BaseModel):
    label: ClassIndex
    class_name: str = Field(alias="class", description="the class's name")
    probability: float


class ServedModel(BaseModel):
    name: str = Field(description="the run folder's name")
    architecture: str = Field(description="the registered model name, e.g. mlp")
    test_accuracy: float | None = Field(description="accuracy on the test set recorded at training")


class PredictResponse(BaseModel):
    label: ClassIndex | None = Field(description="the predicted class's index (for MNIST, the digit); null when the "
                                                 "mark is not a digit (`reason`)")
    class_name: str | None = Field(alias="class", description="the predicted class's name (\"7\", \"Trouser\"); "
                                                                "null when the mark is not a digit")
    reason: str | None = Field(description="\"not a digit\" when the server's reject rule refused the mark "
                                           "(`mnistlab serve --reject`); null for an answer")
    confidence: float = Field(description="its probability; for a mark that is not a digit, the likeliest class's")
    probabilities: list[float] = Field(min_length=NUM_CLASSES, max_length=NUM_CLASSES,
                                       description="softmax over the classes")
    top_k: list[TopK] = Field(description=f"the {TOP_K} likeliest classes, best first")
    preprocessed: str | None = Field(
        description="the 28×28 image the model was given, PNG, base64: with `?preprocessed=true`, else null")
    model: ServedModel


class ReadDigit(BaseModel):
    label: ClassIndex = Field(description="the digit read")
    confidence: float = Field(description="the model's probability for it")
    box: list[int] = Field(min_length=4, max_length=4,
                           description="its ink's box [x0, y0, x1, y1] in the upload's pixels (x1, y1 excluded)")


class ReadResponse(BaseModel):
    text: str = Field(description="the digits read, left to right (\"2903\")")
    digits: list[ReadDigit] = Field(description="each digit read, left to right")
    error: None = Field(description="always null here: an upload with no number is answered 422, as "
                                    "`mnistlab read --json` gives the row's error")
    model: ServedModel


class ModelInfo(ServedModel):
    parameters: int
    classes: list[str] = Field(description="the name of each class, in label order")
    config: dict = Field(description="the checkpoint's config.json, or the exported file's metadata "
                                     "(local absolute paths reduced to their last name)")
    collect: bool = Field(description="whether POST /api/collect saves labelled drawings")
    max_upload_bytes: int
    learn: bool = Field(description="whether the server can learn from the collected drawings (POST /api/learn)")
    use: Literal["original", "learned"] = Field(description="which model answers now")
    original: str = Field(description="the name of the model the server was started with")
    learned: str | None = Field(description="the learned run folder's name (in the learn folder), or null")


class ModelUse(BaseModel):
    use: Literal["original", "learned"] = Field(description="the model that is to answer, in every server process")


class CollectResponse(BaseModel):
    label: ClassIndex
    file: str = Field(description="the saved file, relative to the collect folder (what DELETE /api/collect takes)")
    read_as: ClassIndex | None = Field(description="the digit the model answering now reads in the drawing: another "
                                                   "than `label` is saved all the same (that is what learning is "
                                                   "for); null when its rule takes the drawing for no digit "
                                                   "(`serve --reject`), which is saved too")
    confidence: float = Field(description="the model's probability of the likeliest class")
    counts: list[int] = Field(description="drawings saved under each class now, in label order")


class CollectedResponse(BaseModel):
    counts: list[int] = Field(description="drawings saved under each class, in label order")
    total: int
    commands: list[str] = Field(description="the commands that use the folder: finetune, evaluate")
    wanted: int = Field(description=f"drawings of each digit that learn mode asks for ({WANTED_PER_DIGIT})")
    minimum: int = Field(description=f"drawings of each digit needed to start learning ({LEARN_MIN_PER_DIGIT})")
    short: list[ClassIndex] = Field(description="the digits with fewer than `minimum` drawings")


class RemovedResponse(BaseModel):
    file: str = Field(description="the removed drawing, relative to the collect folder")
    label: ClassIndex
    counts: list[int] = Field(description="drawings saved under each class now, in label order")


class Accuracies(BaseModel):
    before: float
    after: float


class Skipped(BaseModel):
    file: str = Field(description="a drawing that could not be read, relative to the collect folder")
    reason: str


class LearnState(BaseModel):
    state: Literal["idle", "running", "done", "failed"]
    progress: float = Field(ge=0, le=1, description="how far the job is, 0 to 1")
    message: str = Field(description="what the job does now, or how it ended, in one line")
    before: float | None = Field(description="the original model's accuracy on the held-out drawings")
    after: float | None = Field(description="the learned model's accuracy on the same held-out drawings")
    mnist: Accuracies | None = Field(description="accuracy on the model's test set (MNIST's) before and after")
    run: str | None = Field(description="the learned run folder's name, in the learn folder")
    trained: int | None = Field(description="drawings learned from")
    held_out: int | None = Field(description="drawings held out to measure `before` and `after` on")
    skipped: list[Skipped] = Field(description="drawings that could not be read and were left out (the first 20)")
    seconds: float | None = Field(description="seconds since the job started, or that it took")
    limit_seconds: float = Field(description=f"a job's time limit (default {LEARN_SECONDS} s)")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, in one line")


def error(description: str) -> dict:
    """An error's entry in a route's `responses`."""
    return {"model": ErrorResponse, "description": description}


EDGE_ERRORS = {
    400: error("a Host header that does not name this server, or a malformed request"),
    403: error("a request from another site's page that this server does not take"),
}
UPLOAD_ERRORS = {
    **EDGE_ERRORS,
    400: error("not an image, an unsupported format, truncated, empty, a decompression bomb (refused from "
               "its header), a malformed multipart body, or a Host header that does not name this server"),
    413: error("the body is over the upload limit (refused as it arrives)"),
    415: error("a content type other than an image or multipart/form-data"),
    422: error("no digit found: the image is blank, or its mark too small or faint to be a digit (\"draw it "
               "larger\")"),
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    **{kind: _BINARY for kind in IMAGE_TYPES},
}}}
