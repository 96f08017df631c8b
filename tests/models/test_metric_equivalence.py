"""Our metrics against the definitions users trust, on generated inputs.

- SQuAD EM / F1 (kept here) against the official v1.1 evaluation logic, re-implemented below
  from its published definition;
- entity F1 (seqeval) and accuracy / macro-F1 (scikit-learn) against the library's own
  functions and, for BIO tags, the hand-written rule they replaced;
- YOLO matching (kept in numpy) against Ultralytics' validator, mAP against Ultralytics'
  `DetMetrics`, box and mask IoU against `ultralytics.utils.metrics`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seqeval import metrics as seqeval_metrics
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils import metrics as ul_metrics

from sparsify.deploy.detection import box_iou
from sparsify.models.transformers.metrics import accuracy_f1, entities, entity_f1, squad_scores
from sparsify.models.yolo.metrics import _mask_iou, map_scores, match_predictions

# ---------------------------------------------------------------- SQuAD v1.1 (reference)


def _v11_normalize(s: str) -> str:
    """The v1.1 script's normalize_answer: lower, drop ASCII punctuation, articles, and
    collapse white space, in that order."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _v11_f1(prediction: str, truth: str) -> float:
    pred, gold = _v11_normalize(prediction).split(), _v11_normalize(truth).split()
    if not gold:
        # outside v1.1 (every v1.1 question has a worded answer): v2.0's no-answer rule
        return float(pred == gold)
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def _v11_evaluate(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict:
    """The v1.1 script's evaluate(): per question the max over gold answers, then 100 * mean."""
    em = f1 = 0.0
    for pred, golds in zip(predictions, answers, strict=True):
        golds = list(golds) or [""]
        em += max(float(_v11_normalize(pred) == _v11_normalize(g)) for g in golds)
        f1 += max(_v11_f1(pred, g) for g in golds)
    n = len(predictions)
    return {"exact_match": 100 * em / n if n else 0.0, "f1": 100 * f1 / n if n else 0.0}


# words that exercise each normalization step: case, articles (also inside words), punctuation
# inside and around words, non-ASCII letters and punctuation the script keeps
_WORDS = st.sampled_from(
    ["the", "The", "a", "A", "an", "AN", "theatre", "anna", "Paris", "paris,", "Eiffel-Tower",
     "tower!", "(1889)", "1889", "l'an", "Île", "naïve", "€5", "—", "«oui»", ".", "a.", "x"]
)  # fmt: skip
_ANSWER = st.one_of(
    st.lists(_WORDS, max_size=6).flatmap(
        lambda ws: st.sampled_from([" ", "  ", "\t", " \n"]).map(lambda sep: sep.join(ws))
    ),
    st.text(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_ANSWER, st.lists(_ANSWER, max_size=4)), min_size=1, max_size=6),
)
def test_squad_matches_the_official_v11_definition(items: list[tuple[str, list[str]]]) -> None:
    preds, golds = [p for p, _ in items], [g for _, g in items]
    ours, reference = squad_scores(preds, golds), _v11_evaluate(preds, golds)
    assert ours["exact_match"] == pytest.approx(reference["exact_match"])
    assert ours["f1"] == pytest.approx(reference["f1"])


def test_squad_v11_reference_on_known_values() -> None:
    # guards the reference itself: the published examples of the normalization
    assert _v11_normalize("The  Eiffel-Tower!") == "eiffeltower"
    assert _v11_normalize("an apple a day") == "apple day"
    assert _v11_f1("the cat sat", "a cat sat down") == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


# ---------------------------------------------------------------- entity F1 (seqeval)

_BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-MISC"]
_IOBES = [*_BIO, "E-PER", "S-PER", "E-LOC", "S-LOC", "B-MISC", "E-MISC"]


def _old_bio_entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The hand-written rule seqeval replaced: an I- that does not continue an entity of its
    type starts one; spans end exclusive."""
    spans, kind, start = set(), None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and kind == label
        if kind is not None and not continues:
            spans.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = label, i
    return spans


def _paired(tags: list[str]) -> st.SearchStrategy[tuple[list[list[str]], list[list[str]]]]:
    """Sentences of references and predictions with equal lengths, some empty."""
    lengths = st.lists(st.integers(0, 12), min_size=1, max_size=6)

    def fill(ns: list[int]) -> st.SearchStrategy:
        sentences = [st.lists(st.sampled_from(tags), min_size=n, max_size=n) for n in ns]
        return st.tuples(st.tuples(*sentences), st.tuples(*sentences))

    return lengths.flatmap(fill).map(
        lambda rp: ([list(s) for s in rp[0]], [list(s) for s in rp[1]])
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_BIO), max_size=20))
def test_bio_entities_unchanged_from_the_hand_written_rule(tags: list[str]) -> None:
    assert entities(tags) == _old_bio_entities(tags)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_paired(_BIO), _paired(_IOBES)))
def test_entity_f1_matches_seqeval(pair: tuple[list[list[str]], list[list[str]]]) -> None:
    refs, preds = pair
    ours = entity_f1(preds, refs)
    if not sum(map(len, refs)):
        assert ours == {"entity_f1": 0.0, "precision": 0.0, "recall": 0.0, "accuracy": 0.0}
        return
    kw = {"zero_division": 0}
    assert ours["entity_f1"] == pytest.approx(100 * seqeval_metrics.f1_score(refs, preds, **kw))
    assert ours["precision"] == pytest.approx(
        100 * seqeval_metrics.precision_score(refs, preds, **kw)
    )
    assert ours["recall"] == pytest.approx(100 * seqeval_metrics.recall_score(refs, preds, **kw))
    assert ours["accuracy"] == pytest.approx(100 * seqeval_metrics.accuracy_score(refs, preds))
    if all(t in _BIO for s in refs + preds for t in s):  # and the replaced hand-written count
        p = [_old_bio_entities(s) for s in preds]
        r = [_old_bio_entities(s) for s in refs]
        tp = sum(len(a & b) for a, b in zip(p, r, strict=True))
        n_pred, n_ref = sum(map(len, p)), sum(map(len, r))
        assert ours["precision"] == pytest.approx(100 * tp / n_pred if n_pred else 0.0)
        assert ours["recall"] == pytest.approx(100 * tp / n_ref if n_ref else 0.0)


def test_entities_read_iobes() -> None:
    assert entities(["S-PER", "B-LOC", "E-LOC", "I-LOC"]) == {
        ("PER", 0, 1),
        ("LOC", 1, 3),
        ("LOC", 3, 4),
    }


# ---------------------------------------------------------------- accuracy / macro-F1


def _hand_macro_f1(preds: Sequence[int], refs: Sequence[int]) -> float:
    """Macro F1 over the classes present in either vector; a class with no hit scores 0."""
    f1s = []
    for c in sorted(set(preds) | set(refs)):
        tp = sum(p == c and r == c for p, r in zip(preds, refs, strict=True))
        fp = sum(p == c and r != c for p, r in zip(preds, refs, strict=True))
        fn = sum(p != c and r == c for p, r in zip(preds, refs, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 60).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 6), min_size=n, max_size=n),
            st.lists(st.integers(0, 6), min_size=n, max_size=n),
        )
    )
)
def test_accuracy_f1_matches_the_definition(pair: tuple[list[int], list[int]]) -> None:
    preds, refs = pair
    ours = accuracy_f1(preds, refs)
    accuracy = sum(p == r for p, r in zip(preds, refs, strict=True)) / len(refs)
    assert ours["accuracy"] == pytest.approx(100 * accuracy)
    assert ours["f1"] == pytest.approx(100 * _hand_macro_f1(preds, refs))


# ---------------------------------------------------------------- YOLO (Ultralytics)


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> DetectionValidator:
    """Ultralytics' detection validator, for its matching method (its save dir in tmp)."""
    return DetectionValidator(save_dir=tmp_path_factory.mktemp("ultralytics_val"))


def _their_match(
    validator: DetectionValidator,
    iou: np.ndarray,
    pred_cls: np.ndarray,
    gt_cls: np.ndarray,
    scores: np.ndarray,
) -> np.ndarray:
    """The validator's flags, in our prediction order: it takes predictions sorted by
    confidence (as NMS leaves them) and IoU as (gt, pred)."""
    order = np.argsort(-scores, kind="stable")
    flags = validator.match_predictions(
        torch.from_numpy(pred_cls[order]), torch.from_numpy(gt_cls), torch.from_numpy(iou[order].T)
    ).numpy()
    out = np.zeros_like(flags)
    out[order] = flags
    return out


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.integers(0, 10),
    st.integers(0, 8),
    st.integers(1, 3),
    st.data(),
)
def test_matching_equals_ultralytics_validator(
    validator: DetectionValidator, n_pred: int, n_gt: int, nc: int, data: st.DataObject
) -> None:
    # IoU on a 0.001 grid offset from the thresholds (so float32 vs float64 never decides),
    # with ties; scores from a few values, so ties in confidence too
    iou = np.array(
        data.draw(st.lists(st.integers(0, 999), min_size=n_pred * n_gt, max_size=n_pred * n_gt)),
        dtype=np.float64,
    ).reshape(n_pred, n_gt)
    iou = (iou + 0.3) / 1000
    pred_cls = np.array(data.draw(st.lists(st.integers(0, nc - 1), min_size=n_pred, max_size=n_pred)), dtype=np.int64)  # fmt: skip
    gt_cls = np.array(data.draw(st.lists(st.integers(0, nc - 1), min_size=n_gt, max_size=n_gt)), dtype=np.int64)  # fmt: skip
    scores = np.array(data.draw(st.lists(st.sampled_from([0.9, 0.5, 0.3, 0.1]), min_size=n_pred, max_size=n_pred)))  # fmt: skip
    ours = match_predictions(iou, pred_cls, gt_cls, scores)
    if not n_gt or not n_pred:
        assert not ours.any()
        return
    np.testing.assert_array_equal(ours, _their_match(validator, iou, pred_cls, gt_cls, scores))


def _random_boxes(rng: np.random.Generator, n: int, size: float = 100.0) -> np.ndarray:
    xy = rng.uniform(0, size * 0.8, (n, 2))
    wh = rng.uniform(1, size * 0.4, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 4))
def test_map_equals_ultralytics_detmetrics(
    validator: DetectionValidator, seed: int, n_images: int, nc: int
) -> None:
    """Per image: ground truth, predictions jittered from it plus clutter, distinct scores;
    our matching + `map_scores` against the validator's matching + `DetMetrics`."""
    rng = np.random.default_rng(seed)
    stats: dict[str, list[np.ndarray]] = {k: [] for k in ("box", "scores", "pred_cls", "gt_cls")}
    theirs = ul_metrics.DetMetrics(names={c: str(c) for c in range(nc)})
    for image in range(n_images):
        n_gt = int(rng.integers(0, 6))
        gt = _random_boxes(rng, n_gt)
        gt_cls = rng.integers(0, nc, n_gt)
        hits = rng.random(n_gt) < 0.7
        jitter = gt[hits] + rng.normal(0, 4, (int(hits.sum()), 4))
        boxes = np.concatenate([jitter, _random_boxes(rng, int(rng.integers(0, 5)))])
        # mostly the right class; sometimes a wrong one
        pred_cls = np.concatenate([gt_cls[hits], rng.integers(0, nc, len(boxes) - hits.sum())])
        flip = rng.random(len(pred_cls)) < 0.15
        pred_cls[flip] = rng.integers(0, nc, int(flip.sum()))
        scores = rng.random(len(boxes))
        # one IoU for both sides; IoU functions are compared on their own below
        iou = ul_metrics.box_iou(torch.from_numpy(boxes), torch.from_numpy(gt)).double().numpy()
        correct = match_predictions(iou, pred_cls, gt_cls, scores)
        for key, value in zip(stats, (correct, scores, pred_cls, gt_cls), strict=True):
            stats[key].append(value)
        order = np.argsort(-scores, kind="stable")
        tp = (
            _their_match(validator, iou, pred_cls, gt_cls, scores)[order]
            if n_gt and len(boxes)
            else np.zeros((len(boxes), 10), dtype=bool)
        )
        theirs.update_stats(
            {
                "tp": tp,
                "conf": scores[order],
                "pred_cls": pred_cls[order],
                "target_cls": gt_cls,
                "target_img": np.unique(gt_cls),
                "im_name": f"im{image}",
            }
        )
    theirs.process()
    map50, map50_95 = map_scores(stats, "box")
    if not sum(map(len, stats["gt_cls"])):
        assert (map50, map50_95) == (0.0, 0.0)
        return
    assert map50 == pytest.approx(100 * theirs.box.map50, abs=1e-9)
    assert map50_95 == pytest.approx(100 * theirs.box.map, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 8), st.integers(0, 8))
def test_box_iou_equals_ultralytics(seed: int, n: int, m: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = _random_boxes(rng, n), _random_boxes(rng, m)
    theirs = ul_metrics.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(box_iou(a, b), theirs, atol=1e-5)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 5), st.integers(0, 5))
def test_mask_iou_equals_ultralytics(seed: int, n_pred: int, n_gt: int) -> None:
    """Our box-window masks against Ultralytics' `mask_iou` on the same masks pasted full size."""
    rng = np.random.default_rng(seed)
    h, w = 24, 32
    gt = rng.random((n_gt, h, w)) < rng.uniform(0.05, 0.6, (n_gt, 1, 1))
    crops, full = [], np.zeros((n_pred, h, w), dtype=bool)
    for i in range(n_pred):
        c0, r0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        c1, r1 = int(rng.integers(c0, w + 1)), int(rng.integers(r0, h + 1))  # may be empty
        window = rng.random((r1 - r0, c1 - c0)) < 0.5
        crops.append(((c0, r0, c1, r1), window))
        full[i, r0:r1, c0:c1] = window
    theirs = ul_metrics.mask_iou(
        torch.from_numpy(gt.reshape(n_gt, h * w)).float(),
        torch.from_numpy(full.reshape(n_pred, h * w)).float(),
    ).numpy()
    np.testing.assert_allclose(_mask_iou(crops, gt), theirs.T, atol=1e-6)


def test_validator_reference_is_wired(validator: DetectionValidator) -> None:
    # guards the reference: one prediction on one box of its class is a hit at every IoU
    flags = _their_match(validator, np.array([[0.99]]), np.array([0]), np.array([0]), np.ones(1))
    assert flags.tolist() == [[True] * 10]
