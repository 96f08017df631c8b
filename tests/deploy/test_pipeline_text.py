"""Pipeline on the five NLP use cases, checked against the torch model it was exported from."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from sparsify.deploy import Answer, Classification, Entity, InputError, Pipeline
from tests.deploy.builders import NLP_USE_CASES

pytest.importorskip("transformers")

SENTENCES = ["john lives in paris", "mary works for google in london", "acme hired washington"]


def _torch(deployment: Path):  # noqa: ANN202 - (model, tokenizer) from transformers
    import transformers

    model_dir = deployment.parent / "run" / "fetch" / "model"
    config = transformers.AutoConfig.from_pretrained(model_dir)
    head = getattr(transformers, config.architectures[0])
    return head.from_pretrained(model_dir).eval(), transformers.AutoTokenizer.from_pretrained(
        model_dir
    )


@pytest.mark.parametrize("use_case", list(NLP_USE_CASES))
def test_every_nlp_use_case_loads(nlp_deployments: dict[str, Path], use_case: str) -> None:
    pipe = Pipeline(nlp_deployments[use_case])
    config = json.loads((nlp_deployments[use_case] / "config.json").read_text())
    assert pipe.task == config["task"] == NLP_USE_CASES[use_case]
    assert config["use_case"] == use_case
    assert (nlp_deployments[use_case] / "tokenizer.json").is_file()
    sample = {"question": "what is the capital of france ?", "context": "paris is it ."}
    out = pipe(sample if pipe.task == "question-answering" else "john lives in paris")
    expected = {
        "text-classification": Classification,
        "token-classification": list,
        "question-answering": Answer,
    }[pipe.task]
    assert isinstance(out, expected)


@pytest.mark.parametrize("use_case", ["nlp-text_classification", "nlp-sentiment_analysis"])
def test_text_classification_matches_torch(nlp_deployments: dict[str, Path], use_case: str) -> None:
    import torch

    deployment = nlp_deployments[use_case]
    pipe = Pipeline(deployment)
    model, tokenizer = _torch(deployment)
    texts = ["the movie was great", "a bad film !", "i found the plot awful"]
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    probs = torch.softmax(logits, -1).numpy()
    results = pipe(texts)
    assert [r.index for r in results] == probs.argmax(1).tolist()
    assert [r.label for r in results] == [["neg", "pos"][i] for i in probs.argmax(1)]
    np.testing.assert_allclose([r.score for r in results], probs.max(1), atol=1e-5)
    pair = pipe(("the movie was great", "i would watch it again"), top_k=2)
    with torch.no_grad():
        enc = tokenizer("the movie was great", "i would watch it again", return_tensors="pt")
        want = torch.softmax(model(**enc).logits, -1).numpy()[0]
    np.testing.assert_allclose(
        sorted((c.score for c in pair), reverse=True), sorted(want)[::-1], atol=1e-5
    )
    assert [c.to_dict()["label"] for c in pair] == [["neg", "pos"][i] for i in np.argsort(-want)]


@pytest.mark.parametrize("use_case", ["nlp-token_classification", "nlp-named_entity_recognition"])
def test_token_classification_matches_hf_pipeline(
    nlp_deployments: dict[str, Path], use_case: str
) -> None:
    import transformers

    deployment = nlp_deployments[use_case]
    model, tokenizer = _torch(deployment)
    hf = transformers.pipeline(
        "token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="first"
    )
    pipe = Pipeline(deployment)
    found = 0
    for text, entities in zip(SENTENCES, pipe(SENTENCES), strict=True):
        assert all(isinstance(e, Entity) for e in entities)
        for e in entities:
            assert text[e.start : e.end] == e.word and 0 <= e.score <= 1
        theirs = hf(text)
        assert [(e.entity, e.start, e.end) for e in entities] == [
            (t["entity_group"], t["start"], t["end"]) for t in theirs
        ]
        found += len(entities)
    assert found > 0  # the random head tags something, so the comparison says something


def _best_span(model, tokenizer, question: str, context: str) -> tuple[int, int, float]:  # noqa: ANN001
    """Brute force over every span of the context (one window): (start, end, probability)."""
    import torch

    enc = tokenizer(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        out = model(**enc)
    start, end = out.start_logits[0], out.end_logits[0]
    positions = [i for i, s in enumerate(enc.sequence_ids(0)) if s == 1]
    p_start = dict(zip(positions, torch.softmax(start[positions], -1).tolist(), strict=True))
    p_end = dict(zip(positions, torch.softmax(end[positions], -1).tolist(), strict=True))
    s, e = max(
        ((s, e) for s in positions for e in positions if s <= e < s + 30),
        key=lambda se: float(start[se[0]] + end[se[1]]),
    )
    return offsets[s][0], offsets[e][1], float(p_start[s] * p_end[e])


def test_question_answering_matches_torch(nlp_deployments: dict[str, Path]) -> None:
    deployment = nlp_deployments["nlp-question_answering"]
    model, tokenizer = _torch(deployment)
    pipe = Pipeline(deployment)
    items = [
        {
            "question": "what is the capital of france ?",
            "context": "paris is the capital of france .",
        },
        {"question": "which city ?", "context": "john lives in berlin with many people ."},
    ]
    for item, answer in zip(items, pipe(items), strict=True):
        assert isinstance(answer, Answer) and 0 < answer.score <= 1
        assert item["context"][answer.start : answer.end] == answer.answer
        start, end, score = _best_span(model, tokenizer, item["question"], item["context"])
        assert (answer.start, answer.end) == (start, end)
        assert answer.score == pytest.approx(score, rel=1e-3)


def test_question_answering_long_context_uses_every_window(
    nlp_deployments: dict[str, Path],
) -> None:
    pipe = Pipeline(nlp_deployments["nlp-question_answering"])
    context = " ".join(["it is a big city with many people ."] * 40) + " paris is it ."
    answer = pipe({"question": "what city ?", "context": context})
    assert context[answer.start : answer.end] == answer.answer and answer.answer
    with pytest.raises(InputError, match="the question is .* tokens"):
        pipe({"question": " ".join(["city"] * 60), "context": "paris ."})


def test_text_input_errors(nlp_deployments: dict[str, Path]) -> None:
    classify = Pipeline(nlp_deployments["nlp-sentiment_analysis"])
    for value, message in [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        (3, "must be a string"),
        ("\ud800 bad", "lone surrogate"),
        (("a", "b", "c"), "two strings"),
    ]:
        with pytest.raises(InputError, match=message):
            classify(value)
    with pytest.raises(InputError, match="all inputs as"):
        classify([("a", "b"), "c"])
    with pytest.raises(InputError, match="top_k must be an integer from 1 to 2"):
        classify("good", top_k=3)
    qa = Pipeline(nlp_deployments["nlp-question_answering"])
    with pytest.raises(InputError, match='takes {"question"'):
        qa("just text")
    with pytest.raises(InputError, match="unknown option"):
        Pipeline(nlp_deployments["nlp-named_entity_recognition"])("john", top_k=2)


def test_concurrent_calls_give_serial_results(nlp_deployments: dict[str, Path]) -> None:
    """Threads share one tokenizer and session: results must not mix or fail."""
    pipes = {
        uc: Pipeline(nlp_deployments[uc])
        for uc in (
            "nlp-sentiment_analysis",
            "nlp-question_answering",
            "nlp-named_entity_recognition",
        )
    }
    inputs = {
        "nlp-sentiment_analysis": [
            "the movie was great",
            ("a bad film", "i would not watch it again"),
        ],
        "nlp-question_answering": [{"question": "what city ?", "context": "john lives in paris ."}],
        "nlp-named_entity_recognition": SENTENCES,
    }
    expected = {uc: [pipes[uc](x) for x in xs] for uc, xs in inputs.items()}
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(20):
                uc = list(inputs)[int(rng.integers(3))]
                k = int(rng.integers(len(inputs[uc])))
                assert pipes[uc](inputs[uc][k]) == expected[uc][k]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
