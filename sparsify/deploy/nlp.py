"""Text tasks of a Pipeline: classification, token classification (entities), QA.

They run `sparsify.deploy.text.TextRunner`, the code that measured the model's accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsify.deploy.inputs import InputError, check_text
from sparsify.deploy.options import check_options, int_in
from sparsify.deploy.text import Answer, Entity, TextRunner
from sparsify.deploy.vision import top_k


def load_tokenizer(directory: Path) -> Any:
    """The tokenizer saved in the deployment folder (never fetched from a hub)."""
    from sparsify.models.transformers.family import require_transformers

    transformers = require_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"{directory} holds no usable tokenizer: {exc}") from None


class _TextTask:
    def __init__(self, engine: Any, config: dict[str, Any], tokenizer: Any) -> None:
        pre = config["preprocessing"]
        self.runner = TextRunner(engine, tokenizer, int(pre["max_length"]))
        self.doc_stride = int(pre.get("doc_stride", 32))
        self.labels = [str(x) for x in config.get("labels", [])]

    def options(self) -> dict[str, Any]:
        return {}


class TextClassificationTask(_TextTask):
    """Texts, or (text, text_pair) tuples -> Classification (top_k > 1: a list)."""

    def options(self) -> dict[str, Any]:
        return {"top_k": 1}

    def __call__(self, batch: list[Any], **options: Any) -> list[Any]:
        opts = check_options(options, self.options())
        k = int_in("top_k", opts["top_k"], 1, max(1, len(self.labels)))
        texts, pairs = [], []
        for item in batch:
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise InputError("a text pair is a (text, text_pair) tuple of two strings")
                texts.append(check_text(item[0]))
                pairs.append(check_text(item[1], "text_pair"))
            else:
                texts.append(check_text(item))
        if pairs and len(pairs) != len(texts):
            raise InputError("give either all inputs as (text, text_pair) tuples or none")
        probs = self.runner.classify(texts, pairs or None)
        return [top_k(row, self.labels, k) for row in probs]


class TokenClassificationTask(_TextTask):
    """Texts -> list of Entity per text (words split on white space, BIO tags joined)."""

    def __call__(self, batch: list[Any], **options: Any) -> list[list[Entity]]:
        check_options(options, self.options())
        return [self.runner.entities(check_text(item), self.labels) for item in batch]


class QuestionAnsweringTask(_TextTask):
    """{"question": ..., "context": ...} dicts -> Answer (best span over all windows)."""

    def __call__(self, batch: list[Any], **options: Any) -> list[Answer]:
        check_options(options, self.options())
        out = []
        for item in batch:
            if not isinstance(item, dict) or not {"question", "context"} <= set(item):
                raise InputError('question answering takes {"question": ..., "context": ...}')
            question = check_text(item["question"], "question")
            context = check_text(item["context"], "context")
            self._check_question_fits(question)
            out.append(self.runner.answer(question, context, self.doc_stride))
        return out

    def _check_question_fits(self, question: str) -> None:
        """A question too long to leave room for context cannot be windowed."""
        n = len(self.runner._tokenize(question, add_special_tokens=False)["input_ids"])
        room = self.runner.max_length - 3 - n  # [CLS] q [SEP] c [SEP]
        if room <= self.doc_stride:
            raise InputError(
                f"the question is {n} tokens; with max_length {self.runner.max_length} and "
                f"doc_stride {self.doc_stride} it must be under "
                f"{self.runner.max_length - 3 - self.doc_stride} tokens"
            )
