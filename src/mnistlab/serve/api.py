"""The API's documented shapes: what each route answers, and the errors it may give (the OpenAPI at /docs)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, WithJsonSchema

from ..limits import NUM_CLASSES
from ..validation import Range
from .inference import TOP_K
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


class ModelInfo(ServedModel):
    parameters: int
    classes: list[str] = Field(description="the name of each class, in label order")
    config: dict = Field(description="the checkpoint's config.json, or the exported file's metadata "
                                     "(local absolute paths reduced to their last name)")
    collect: bool = Field(description="whether POST /api/collect saves labelled drawings")
    max_upload_bytes: int


class CollectResponse(BaseModel):
    label: ClassIndex
    file: str = Field(description="the saved file, relative to the collect folder")


class CollectedResponse(BaseModel):
    counts: list[int] = Field(description="drawings saved under each class, in label order")
    total: int
    commands: list[str] = Field(description="the commands that use the folder: finetune, evaluate")


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
