"""NLP metrics: accuracy / macro-F1, entity-level F1 (seqeval-style), SQuAD EM / F1."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence


def accuracy_f1(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-F1 over the classes present, in percent."""
    total = len(references)
    acc = (
        sum(p == r for p, r in zip(predictions, references, strict=True)) / total if total else 0.0
    )
    f1s = []
    for c in sorted(set(references) | set(predictions)):
        tp = sum(p == c and r == c for p, r in zip(predictions, references, strict=True))
        fp = sum(p == c and r != c for p, r in zip(predictions, references, strict=True))
        fn = sum(p != c and r == c for p, r in zip(predictions, references, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": 100 * acc, "f1": 100 * (sum(f1s) / len(f1s) if f1s else 0.0)}


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """(type, start, end) spans from IOB1/IOB2/BIO tags; as seqeval's default mode, an I- that
    does not continue an entity of its type starts a new one."""
    spans: set[tuple[str, int, int]] = set()
    kind, start = None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-") if "-" in tag else (tag, "", "")
        continues = prefix == "I" and kind == label
        if kind is not None and not continues:
            spans.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = label, i
    return spans


def entity_f1(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Micro precision / recall / F1 over exact entity spans, plus token accuracy, in percent."""
    tp = n_pred = n_ref = correct = tokens = 0
    for pred, ref in zip(predictions, references, strict=True):
        p, r = entities(pred), entities(ref)
        tp += len(p & r)
        n_pred += len(p)
        n_ref += len(r)
        correct += sum(a == b for a, b in zip(pred, ref, strict=True))
        tokens += len(ref)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "entity_f1": 100 * f1,
        "precision": 100 * precision,
        "recall": 100 * recall,
        "accuracy": 100 * correct / tokens if tokens else 0.0,
    }


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """Exact match and F1 (max over the gold answers; no gold answer = the empty string)."""
    em = f1 = 0.0
    for pred, golds in zip(predictions, answers, strict=True):
        golds = list(golds) or [""]
        em += max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds)
        f1 += max(_f1(pred, g) for g in golds)
    n = len(predictions)
    return {"exact_match": 100 * em / n if n else 0.0, "f1": 100 * f1 / n if n else 0.0}
