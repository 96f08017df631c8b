"""NLP metrics: accuracy / macro-F1 (scikit-learn), entity-level F1 (seqeval), SQuAD EM / F1.

SQuAD scoring stays here (the `evaluate` package's squad metric downloads its script at run
time); tests/models/test_metric_equivalence.py holds it equal to the official v1.1 script's
definition.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sparsify.errors import SparsifyError


def accuracy_f1(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-F1 over the classes present in either, in percent (scikit-learn)."""
    from sklearn.metrics import accuracy_score, f1_score

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        return {"accuracy": 0.0, "f1": 0.0}
    # a class never predicted, or predicted but absent, has F1 0 (no warning)
    f1 = f1_score(references, predictions, average="macro", zero_division=0.0)
    return {
        "accuracy": 100 * float(accuracy_score(references, predictions)),
        "f1": 100 * float(f1),
    }


def _seqeval() -> Any:
    try:
        import seqeval.metrics.sequence_labeling as seqeval
    except ImportError:
        raise SparsifyError(
            "entity F1 of the token-classification use cases needs seqeval: "
            "pip install 'sparsify[nlp]'"
        ) from None
    return seqeval


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """(type, start, end exclusive) spans, as seqeval's default (conlleval) mode reads
    IOB1/IOB2/IOBES tags: an I- that does not continue an entity of its type starts one."""
    return {(kind, start, end + 1) for kind, start, end in _seqeval().get_entities(list(tags))}


def entity_f1(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Micro precision / recall / F1 over exact entity spans (seqeval's default mode, as the
    Hugging Face token-classification examples report it), plus token accuracy, in percent."""
    seqeval = _seqeval()
    # seqeval flattens only lists of lists, and checks that each pair has one length
    preds, refs = [list(p) for p in predictions], [list(r) for r in references]
    if len(preds) != len(refs) or any(len(p) != len(r) for p, r in zip(preds, refs, strict=True)):
        raise ValueError("predictions and references differ in sentence count or length")
    tokens = sum(len(r) for r in refs)
    if not tokens:
        return {"entity_f1": 0.0, "precision": 0.0, "recall": 0.0, "accuracy": 0.0}
    precision, recall, f1, _ = seqeval.precision_recall_fscore_support(
        refs, preds, average="micro", zero_division=0
    )
    return {
        "entity_f1": 100 * float(f1),
        "precision": 100 * float(precision),
        "recall": 100 * float(recall),
        "accuracy": 100 * float(seqeval.accuracy_score(refs, preds)),
    }


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalization: lower case, no ASCII punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction: str, truth: str) -> float:
    # the v1.1 token F1; an answer that normalizes to nothing (v2.0's no-answer) is matched by
    # an empty prediction only, as the v2.0 script scores it (v1.1 would give 0 even then)
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1 in percent: each the max over the gold answers, averaged
    over questions; a question without gold answer has the empty string as its one answer."""
    em = f1 = 0.0
    for pred, golds in zip(predictions, answers, strict=True):
        golds = list(golds) or [""]
        em += max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds)
        f1 += max(_f1(pred, g) for g in golds)
    n = len(predictions)
    return {"exact_match": 100 * em / n if n else 0.0, "f1": 100 * f1 / n if n else 0.0}
