"""`benchmark.metric=kl`: how far the result's outputs moved from the dense model's on val.

The engines' outputs are recorded while the family evaluates each model (the same val
inputs, in the same order, for both), so no second pass over val is needed and no labels
are: one-shot users with unlabelled data can still judge a result.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class OutputRecorder:
    """An engine that keeps the first output of every `run` (the class scores), passing
    everything else through to the engine it wraps."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.outputs: list[np.ndarray] = []

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.engine.run(feeds)
        self.outputs.append(np.asarray(result[0], dtype=np.float64))
        return result

    def __getattr__(self, name: str) -> Any:  # version, static_shapes, ...: the engine's
        return getattr(self.engine, name)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def mean_kl(dense: list[np.ndarray], result: list[np.ndarray]) -> float:
    """Mean over val items (and positions, for per-token scores) of KL(dense || result),
    the softmax of each taken over the last axis (the classes), in nats."""
    if len(dense) != len(result) or not dense:
        raise ValueError(
            f"KL needs the same val batches from both models (got {len(dense)} and {len(result)})"
        )
    total, count = 0.0, 0
    for p_logits, q_logits in zip(dense, result, strict=True):
        if p_logits.shape != q_logits.shape:
            raise ValueError(f"output shapes differ: {p_logits.shape} vs {q_logits.shape}")
        log_p, log_q = _log_softmax(p_logits), _log_softmax(q_logits)
        kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)
        total += float(kl.sum())
        count += kl.size
    return max(0.0, total / count)  # rounding can leave -1e-17 for identical outputs
