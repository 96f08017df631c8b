"""JSON bodies of `POST /predict`, one pydantic model per task (strict, no unknown fields).

`{"inputs": <one input or a list>, <options>}`; images are base64 strings (or data URLs),
texts are non-empty strings, a text pair is {"text", "text_pair"}, QA is {"question",
"context"}. Options are those of the Pipeline call (top_k, thresholds).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_TEXT_CHARS = 100_000

Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"\S")]
Base64Image = Annotated[str, StringConstraints(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TextPair(_Strict):
    text: Text
    text_pair: Text


class QAItem(_Strict):
    question: Text
    context: Text


class ClassifyOptions(_Strict):
    top_k: int = Field(1, ge=1, le=1000)


class DetectOptions(_Strict):
    conf_threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    iou_threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    max_detections: int | None = Field(None, ge=1, le=10_000)


class NoOptions(_Strict):
    pass


class ImageClassificationRequest(ClassifyOptions):
    inputs: Base64Image | list[Base64Image]


class DetectionRequest(DetectOptions):
    inputs: Base64Image | list[Base64Image]


class TextClassificationRequest(ClassifyOptions):
    inputs: Text | TextPair | list[Text | TextPair]


class TokenClassificationRequest(NoOptions):
    inputs: Text | list[Text]


class QuestionAnsweringRequest(NoOptions):
    inputs: QAItem | list[QAItem]


REQUESTS: dict[str, type[_Strict]] = {
    "image-classification": ImageClassificationRequest,
    "object-detection": DetectionRequest,
    "instance-segmentation": DetectionRequest,
    "text-classification": TextClassificationRequest,
    "token-classification": TokenClassificationRequest,
    "question-answering": QuestionAnsweringRequest,
}
# options sent as multipart form fields next to uploaded images
FORM_OPTIONS: dict[str, type[_Strict]] = {
    "image-classification": ClassifyOptions,
    "object-detection": DetectOptions,
    "instance-segmentation": DetectOptions,
}


def pipeline_inputs(value: Any) -> Any:
    """A validated `inputs` value as the Pipeline takes it (pairs -> tuples, QA -> dicts)."""
    if isinstance(value, list):
        return [pipeline_inputs(v) for v in value]
    if isinstance(value, TextPair):
        return (value.text, value.text_pair)
    if isinstance(value, QAItem):
        return {"question": value.question, "context": value.context}
    return value


def options_of(request: BaseModel) -> dict[str, Any]:
    """The options set in a request (None = the deployment's default)."""
    return {k: v for k, v in request.model_dump(exclude={"inputs"}).items() if v is not None}
