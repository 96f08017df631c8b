"""The use cases a user can pick, and the aliases the original CLI accepted.

What a use case *is* (family, data formats, metric) lives in conf/use_case/*.yaml;
this module only knows names, because names are resolved before Hydra composes.
"""

from __future__ import annotations

from sparsify.registry import Registry

CUSTOM = "custom"

USE_CASES: Registry[str] = Registry("use case")
USE_CASES.register(
    "cv-classification", "cv-classification", ("image_classification", "ic", "classification")
)
USE_CASES.register("cv-detection", "cv-detection", ("object_detection", "od", "detection", "yolo"))
USE_CASES.register("cv-segmentation", "cv-segmentation", ("image_segmentation", "segmentation"))
USE_CASES.register("nlp-question_answering", "nlp-question_answering", ("qa", "question_answering"))
USE_CASES.register(
    "nlp-text_classification", "nlp-text_classification", ("glue", "text_classification")
)
USE_CASES.register("nlp-sentiment_analysis", "nlp-sentiment_analysis", ("sentiment",))
USE_CASES.register(
    "nlp-token_classification", "nlp-token_classification", ("token_classification",)
)
USE_CASES.register(
    "nlp-named_entity_recognition",
    "nlp-named_entity_recognition",
    ("ner", "named_entity_recognition"),
)


def normalize_use_case(name: str) -> str:
    """Canonical name for a known use case or alias; `custom` for anything else."""
    return USE_CASES.resolve(name) or CUSTOM


def is_known(name: str) -> bool:
    return name in USE_CASES


def known_use_cases() -> list[str]:
    return USE_CASES.names()
