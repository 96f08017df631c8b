"""What a Pipeline returns: small dataclasses with `to_dict()` (JSON-ready).

- `Classification` (image and text classification): label, score (softmax probability), index
- `Detection` (cv-detection / cv-segmentation): box, score, class_id, label, mask
- `Entity` (token classification): entity type, word, character span, mean score
- `Answer` (question answering): answer text, score, character span in the context
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparsify.deploy.detection import Detection
from sparsify.deploy.text import Answer, Entity


@dataclass(frozen=True)
class Classification:
    """One class of one input; `score` is its softmax probability."""

    label: str
    score: float
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "index": self.index}


def to_jsonable(result: Any) -> Any:
    """A Pipeline result (a dataclass, or lists of them) as plain JSON-ready values."""
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, list | tuple):
        return [to_jsonable(r) for r in result]
    return result


__all__ = ["Answer", "Classification", "Detection", "Entity", "to_jsonable"]
