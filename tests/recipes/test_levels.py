"""The optim-level mappings of docs/experiments.md."""

from __future__ import annotations

import pytest

from sparsify.config import compose_config
from sparsify.recipes.levels import derive


def _derive(experiment: str, level: float):  # noqa: ANN202
    return derive(compose_config([f"experiment={experiment}"]).experiment, level)


@pytest.mark.parametrize(
    ("level", "sparsity", "quantize"),
    [
        (0.0, 0.0, False),
        (0.1, 0.0, True),
        (0.29, 0.0, True),
        (0.3, 0.4, True),
        (0.65, 0.6, True),
        (1.0, 0.8, True),
    ],
)
def test_one_shot(level: float, sparsity: float, quantize: bool) -> None:
    d = _derive("one_shot", level)
    assert d.sparsity == pytest.approx(sparsity)
    assert d.quantize is quantize


@pytest.mark.parametrize(
    ("level", "sparsity", "quantize"),
    [(0.0, 0.0, False), (0.2, 0.0, True), (0.3, 0.6, True), (0.65, 0.775, True), (1.0, 0.95, True)],
)
def test_training_aware(level: float, sparsity: float, quantize: bool) -> None:
    d = _derive("training_aware", level)
    assert d.sparsity == pytest.approx(sparsity)
    assert d.quantize is quantize


@pytest.mark.parametrize(
    ("level", "tier", "variant"),
    [
        (0.0, "largest", "dense"),
        (0.1, "largest", "int8"),
        (0.24, "largest", "int8"),
        (0.25, "largest", "pruned_int8"),
        (0.5, "medium", "pruned_int8"),
        (0.74, "medium", "pruned_int8"),
        (0.75, "smallest", "pruned_int8"),
        (1.0, "smallest", "pruned_int8"),
    ],
)
def test_sparse_transfer_tiers(level: float, tier: str, variant: str) -> None:
    d = _derive("sparse_transfer", level)
    assert (d.tier, d.variant) == (tier, variant)
    assert d.quantize is (variant != "dense")
