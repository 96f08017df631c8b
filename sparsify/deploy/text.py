"""Text tasks on an exported model: tokenization in, labels / entities / answers out.

Used both to measure the exported models' accuracy (benchmark stage) and by the deployment
Pipeline, so measured accuracy is deployed accuracy.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _feeds(encoded: Any, input_names: list[str]) -> dict[str, np.ndarray]:
    return {name: np.asarray(encoded[name], dtype=np.int64) for name in input_names}


@dataclass(frozen=True)
class Entity:
    """A named entity: its type, the words it covers, their character span, mean score."""

    entity: str
    word: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "word": self.word,
            "start": self.start,
            "end": self.end,
            "score": self.score,
        }


@dataclass(frozen=True)
class Answer:
    """The best answer span: `context[start:end] == answer`; `score` is its probability
    (start x end softmax over the context tokens of its window). None found: "", score 0."""

    answer: str
    score: float
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "score": self.score, "start": self.start, "end": self.end}


class TextRunner:
    """An engine (anything with run(feeds) and input_names) plus a tokenizer.

    Safe to share between threads: a fast tokenizer keeps its truncation/padding settings
    in mutable state ("Already borrowed" errors under concurrency), so tokenization is
    serialized; engine runs are not.

    A batch is padded to its longest text, except on an engine with `static_shapes` (DeepSparse,
    which compiles per input shape): there every batch is padded to `max_length`, as
    DeepSparse's own pipelines do. One compiled shape per batch size instead of one per length,
    and no odd lengths: DeepSparse 1.8 compiled MiniLM-L6 (90 % block4 + INT8, dense pooler and
    head) wrongly at 32 x 13 tokens (logits off by 4 in 5 rows of the batch; 12, 14, 16 and 128
    tokens, and 13 at batch 16 or 24, were right), which cut its validation accuracy from 96.5 to
    87.8.
    """

    def __init__(self, engine: Any, tokenizer: Any, max_length: int, batch_size: int = 16) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.padding: bool | str = "max_length" if getattr(engine, "static_shapes", False) else True
        self._lock = threading.Lock()

    def _tokenize(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self.tokenizer(*args, **kwargs)

    def classify(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """Class probabilities, one row per text."""
        rows = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            second = pairs[start : start + self.batch_size] if pairs else None
            enc = self._tokenize(
                chunk,
                second,
                truncation=True,
                max_length=self.max_length,
                padding=self.padding,
                return_tensors="np",
            )
            rows.append(softmax(self.engine.run(_feeds(enc, self.engine.input_names))[0]))
        return np.concatenate(rows) if rows else np.zeros((0, 0))

    def tag_words(self, sentences: list[list[str]]) -> list[list[tuple[int, float]]]:
        """(tag index, probability) per word, read at each word's first sub-word."""
        out: list[list[tuple[int, float]]] = []
        for start in range(0, len(sentences), self.batch_size):
            chunk = sentences[start : start + self.batch_size]
            enc = self._tokenize(
                chunk,
                is_split_into_words=True,
                truncation=True,
                max_length=self.max_length,
                padding=self.padding,
                return_tensors="np",
            )
            probs = softmax(self.engine.run(_feeds(enc, self.engine.input_names))[0])
            for row, words in enumerate(chunk):
                first: dict[int, int] = {}
                for pos, word in enumerate(enc.word_ids(row)):
                    if word is not None and word not in first:
                        first[word] = pos
                # words cut off by truncation get tag 0 ("O" when the label set starts with it)
                tags = [
                    (int(probs[row, first[w]].argmax()), float(probs[row, first[w]].max()))
                    if w in first
                    else (0, 0.0)
                    for w in range(len(words))
                ]
                out.append(tags)
        return out

    def answer(
        self, question: str, context: str, doc_stride: int = 32, max_answer_len: int = 30
    ) -> Answer:
        """Best span over every window of a long context."""
        enc = self._tokenize(
            question,
            context,
            truncation="only_second",
            max_length=self.max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
            return_tensors="np",
        )
        feeds = _feeds(enc, self.engine.input_names)
        n_windows = len(next(iter(feeds.values())))
        start_parts, end_parts = [], []
        for first in range(0, n_windows, self.batch_size):  # bounded memory for long contexts
            window = {k: v[first : first + self.batch_size] for k, v in feeds.items()}
            start, end = self.engine.run(window)[:2]
            start_parts.append(start)
            end_parts.append(end)
        start_logits, end_logits = np.concatenate(start_parts), np.concatenate(end_parts)
        best, best_logit = Answer("", 0.0, 0, 0), float("-inf")
        for w in range(start_logits.shape[0]):
            seq = enc.sequence_ids(w)
            ctx_pos = [i for i, s in enumerate(seq) if s == 1]
            if not ctx_pos:
                continue
            offsets = enc["offset_mapping"][w]
            # probabilities over this window's context tokens (padding and question excluded)
            p_start = dict(zip(ctx_pos, softmax(start_logits[w, ctx_pos]), strict=True))
            p_end = dict(zip(ctx_pos, softmax(end_logits[w, ctx_pos]), strict=True))
            starts = sorted(ctx_pos, key=lambda i: -start_logits[w, i])[:20]
            ends = sorted(ctx_pos, key=lambda i: -end_logits[w, i])[:20]
            for s in starts:
                for e in ends:
                    if e < s or e - s + 1 > max_answer_len:
                        continue
                    logit = float(start_logits[w, s] + end_logits[w, e])
                    if logit > best_logit:
                        a, b = int(offsets[s][0]), int(offsets[e][1])
                        best_logit = logit
                        best = Answer(context[a:b], float(p_start[s] * p_end[e]), a, b)
        return best

    def entities(self, text: str, labels: list[str]) -> list[Entity]:
        """Named entities in raw text: words split on white space, tags joined BIO-wise."""
        words = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        if not words:
            return []
        tags = self.tag_words([[w for w, _, _ in words]])[0]
        found: list[Entity] = []
        current: list[Any] | None = None  # [kind, start, end, scores] of the open entity

        def close() -> None:
            if current:
                kind, start, end, scores = current
                found.append(Entity(kind, text[start:end], start, end, float(np.mean(scores))))

        for (_, start, end), (tag_id, score) in zip(words, tags, strict=True):
            tag = labels[tag_id]
            prefix, _, kind = tag.partition("-") if "-" in tag else (tag, "", "")
            if prefix == "I" and current and current[0] == kind:
                current[2], current[3] = end, current[3] + [score]
                continue
            close()
            current = [kind, start, end, [score]] if prefix in ("B", "I") else None
        close()
        return found
