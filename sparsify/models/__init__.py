"""Model families, one adapter each, selected by the use case's `family`."""

from __future__ import annotations

from sparsify.models.base import ModelFamily
from sparsify.registry import Registry

FAMILIES: Registry[ModelFamily] = Registry("model family")


def get_family(name: str) -> ModelFamily:
    if not FAMILIES.names():
        _register_builtin()
    return FAMILIES.get(name)


def family_available(name: str) -> bool:
    if not FAMILIES.names():
        _register_builtin()
    return name in FAMILIES


def _register_builtin() -> None:
    from sparsify.models.classifier.family import ImageClassifierFamily
    from sparsify.models.transformers.family import TransformersFamily

    FAMILIES.register("image_classifier", ImageClassifierFamily())
    FAMILIES.register("transformers", TransformersFamily())

    from sparsify.models.yolo.family import YoloFamily  # imports Ultralytics only when used

    FAMILIES.register("yolo", YoloFamily())

    from sparsify.models.generic.family import GenericFamily

    FAMILIES.register("generic", GenericFamily())
