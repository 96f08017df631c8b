"""`benchmark.metric`: which metric the end-of-run table leads with.

null is the use case's own metric; `kl` is the KL divergence of the result's outputs from the
dense model's on val (no labels needed; lower is better); the original CLI's names
(`accuracy`, `mAP`, `recall`, `f1`) map onto what each use case measures.
"""

from __future__ import annotations

from sparsify.errors import Problem

KL = "kl"
# what each use case's evaluation reports (models/*/metrics.py), its headline first
USE_CASE_METRICS = {
    "cv-classification": ("top1", "top5"),
    "cv-detection": ("map50-95", "map50"),
    "cv-segmentation": ("mask_map50-95", "mask_map50", "map50-95", "map50"),
    "nlp-question_answering": ("f1", "exact_match"),
    "nlp-text_classification": ("accuracy", "f1"),
    "nlp-sentiment_analysis": ("accuracy", "f1"),
    "nlp-token_classification": ("entity_f1", "precision", "recall", "accuracy"),
    "nlp-named_entity_recognition": ("entity_f1", "precision", "recall", "accuracy"),
}
# families whose first output is a score per class (softmax over its last axis)
KL_FAMILIES = ("image_classifier", "transformers", "generic")
# the original CLI's names -> the first metric of the use case that has one
LEGACY_NAMES = {
    "accuracy": ("top1", "accuracy"),
    "map": ("mask_map50-95", "map50-95"),
    "f1": ("f1", "entity_f1"),
    "recall": ("recall",),
}


def resolve_metric(
    name: str | None, use_case: str, family: str, default: str
) -> tuple[str, Problem | None]:
    """(the metric key the benchmark leads with, or a Problem saying why `name` cannot be)."""
    if name is None or str(name).strip() == "":
        return default, None
    wanted = str(name).strip()
    if wanted.lower() == KL:
        if family in KL_FAMILIES:
            return KL, None
        return default, Problem(
            "benchmark.metric",
            name,
            f"kl needs class scores from the model; use case {use_case} (model family "
            f"{family}) has none",
            f"use one of: {', '.join(USE_CASE_METRICS.get(use_case, (default,)))}",
        )
    known = USE_CASE_METRICS.get(use_case)
    if known is None:  # a custom use case: whatever its evaluation reports
        return wanted, None
    if wanted in known:
        return wanted, None
    for candidate in LEGACY_NAMES.get(wanted.lower(), ()):
        if candidate in known:
            return candidate, None
    return default, Problem(
        "benchmark.metric",
        name,
        f"is not a metric of use case {use_case}",
        f"use one of: kl, {', '.join(known)} (or null for {default})",
    )
