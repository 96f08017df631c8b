"""TextRunner's input shapes: padded to the batch's longest text, or to max_length on an
engine that compiles per shape (DeepSparse)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparsify.deploy.text import TextRunner
from sparsify.engines.registry import SerializedEngine

pytest.importorskip("transformers")

TEXTS = ["john lives in paris", "acme hired mary", "paris", "mary works for google in london"]


class Recording:
    """Logits of zeros (per text, or per token); remembers the shapes it was given."""

    input_names = ["input_ids", "attention_mask", "token_type_ids"]

    def __init__(self, static_shapes: bool, per_token: bool = False) -> None:
        self.static_shapes = static_shapes
        self.per_token = per_token
        self.shapes: list[tuple[int, ...]] = []

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        ids = feeds["input_ids"]
        self.shapes.append(ids.shape)
        return [np.zeros((*(ids.shape if self.per_token else ids.shape[:1]), 3), np.float32)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a BertTokenizerFast
    from tests.fixtures.text import make_tiny_tokenizer

    return make_tiny_tokenizer(Path(tmp_path_factory.mktemp("tok")))


@pytest.mark.parametrize("static", [False, True])
def test_static_shape_engines_get_max_length_batches(tokenizer, static: bool) -> None:  # noqa: ANN001
    texts, tokens = Recording(static), Recording(static, per_token=True)
    assert TextRunner(texts, tokenizer, 24, batch_size=3).classify(TEXTS).shape == (4, 3)
    tags = TextRunner(tokens, tokenizer, 24, batch_size=3).tag_words([t.split() for t in TEXTS])
    assert [len(t) for t in tags] == [4, 3, 1, 6]
    longest = [max(len(tokenizer(t)["input_ids"]) for t in TEXTS[i : i + 3]) for i in (0, 3)]
    assert len(set(longest)) == 2 and max(longest) < 24
    for engine in (texts, tokens):  # batches of 3 and 1 texts
        assert [shape[1] for shape in engine.shapes] == ([24, 24] if static else longest)


def test_a_serialized_engine_keeps_the_static_shapes_flag() -> None:
    assert SerializedEngine(Recording(True)).static_shapes
    assert not SerializedEngine(Recording(False)).static_shapes
    assert not SerializedEngine(object()).static_shapes
