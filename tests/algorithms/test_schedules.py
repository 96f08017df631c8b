"""Schedule values at known epochs: GMP sparsity, mask updates, learning rate."""

from __future__ import annotations

import math

import pytest

from sparsify.algorithms.schedules import lr_at, sparsity_at, update_epochs

# a GMP window from epoch 2 to 6, pruning from 5 % to 85 %
INIT, FINAL, START, END = 0.05, 0.85, 2.0, 6.0


def gmp(epoch: float, inter_func: str = "cubic") -> float:
    return sparsity_at(epoch, INIT, FINAL, START, END, inter_func)


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (0.0, INIT),  # before the window: constant
        (START, INIT),  # 0 %
        (3.0, FINAL + (INIT - FINAL) * 0.75**3),  # 25 %: 0.5125
        (4.0, 0.75),  # 50 %: 0.85 - 0.8 * 0.5^3
        (5.0, FINAL + (INIT - FINAL) * 0.25**3),  # 75 %: 0.8375
        (END, FINAL),  # 100 %
        (9.0, FINAL),  # after the window: constant
    ],
)
def test_cubic_at_known_epochs(epoch: float, expected: float) -> None:
    assert gmp(epoch) == pytest.approx(expected)


def test_linear_and_inverse_cubic_at_midpoint() -> None:
    assert gmp(4.0, "linear") == pytest.approx(0.45)
    # SparseML's inverse_cubic: y = 1 - (1 - p)^(1/3)
    assert gmp(4.0, "inverse_cubic") == pytest.approx(INIT + (FINAL - INIT) * (1 - 0.5 ** (1 / 3)))
    for f in ("linear", "inverse_cubic"):
        assert (gmp(START, f), gmp(END, f), gmp(0.0, f), gmp(10.0, f)) == (INIT, FINAL, INIT, FINAL)


def test_cubic_prunes_early_inverse_cubic_late() -> None:
    for epoch in (2.5, 3.0, 4.0, 5.0, 5.5):
        assert gmp(epoch, "cubic") > gmp(epoch, "linear") > gmp(epoch, "inverse_cubic")


@pytest.mark.parametrize("inter_func", ["linear", "cubic", "inverse_cubic"])
def test_sparsity_is_monotonic(inter_func: str) -> None:
    values = [gmp(START + i * 0.05, inter_func) for i in range(81)]
    assert values == sorted(values)
    assert INIT <= min(values) and max(values) <= FINAL


def test_empty_window_jumps_to_final() -> None:
    assert sparsity_at(3.0, 0.0, 0.5, 3.0, 3.0, "cubic") == 0.5
    assert sparsity_at(2.9, 0.0, 0.5, 3.0, 3.0, "cubic") == 0.0


def test_bad_sparsity_arguments() -> None:
    with pytest.raises(ValueError, match="linear, cubic, inverse_cubic"):
        sparsity_at(1.0, 0.0, 0.5, 0.0, 2.0, "quadratic")
    with pytest.raises(ValueError, match="before start"):
        sparsity_at(1.0, 0.0, 0.5, 4.0, 2.0, "cubic")


def test_update_epochs() -> None:
    assert update_epochs(1.0, 6.0, 0.5) == [1.0 + 0.5 * k for k in range(11)]
    assert update_epochs(0.0, 1.0, 0.3) == [0.0, 0.3, 0.6, 0.9, 1.0]  # end always included
    assert update_epochs(0.3, 1.8, 0.15) == pytest.approx([0.3 + 0.15 * k for k in range(11)])
    assert update_epochs(2.0, 2.0, 1.0) == [2.0]
    with pytest.raises(ValueError, match="update_frequency"):
        update_epochs(0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="before start"):
        update_epochs(2.0, 1.0, 0.5)


def test_linear_lr() -> None:
    args = ("linear", 0.1, 0.0, 0.0, 10.0)
    assert [lr_at(e, *args) for e in (0.0, 5.0, 7.5, 10.0)] == pytest.approx([0.1, 0.05, 0.025, 0])


@pytest.mark.parametrize(("init", "final"), [(0.1, 0.001), (0.001, 0.1)])
def test_cosine_lr_matches_sparseml(init: float, final: float) -> None:
    start, end = 2.0, 12.0
    for epoch in (2.0, 4.5, 7.0, 9.0, 11.9):
        # SparseML's LearningRateFunctionModifier._cosine, both directions
        x = (epoch - start) / (end - start)
        lo, hi = sorted((init, final))
        shift = 0.0 if final < init else math.pi
        sparseml = math.cos(x * math.pi + shift) * (hi - lo) / 2 + (hi - lo) / 2 + lo
        assert lr_at(epoch, "cosine", init, final, start, end) == pytest.approx(sparseml)
    assert lr_at(7.0, "cosine", init, final, start, end) == pytest.approx((init + final) / 2)


def test_lr_is_constant_outside_the_window() -> None:
    for func, cycle in (("linear", None), ("cosine", None), ("cyclic_linear", 2.0), ("step", 2)):
        assert lr_at(0.5, func, 0.1, 0.01, 1.0, 5.0, cycle) == 0.1
        assert lr_at(5.0, func, 0.1, 0.01, 1.0, 5.0, cycle) == 0.01
        assert lr_at(8.0, func, 0.1, 0.01, 1.0, 5.0, cycle) == 0.01


def test_cyclic_linear_lr() -> None:
    def lr(epoch: float) -> float:
        return lr_at(epoch, "cyclic_linear", 0.1, 0.0, 0.0, 10.0, cycle_epochs=4.0)

    # cycles [0, 4), [4, 8), then the last partial one [8, 10)
    expected = {0.0: 0.1, 2.0: 0.05, 3.0: 0.025, 4.0: 0.1, 6.0: 0.05, 8.0: 0.1, 9.0: 0.05}
    assert {e: lr(e) for e in expected} == pytest.approx(expected)


def test_step_lr() -> None:
    def lr(epoch: float) -> float:
        return lr_at(epoch, "step", 0.1, 0.001, 0.0, 9.0, cycle_epochs=3.0)

    # 3 steps of 3 epochs: x0.1 per step so the last step is final_lr
    expected = {0.0: 0.1, 2.9: 0.1, 3.0: 0.01, 5.0: 0.01, 6.0: 0.001, 8.9: 0.001}
    assert {e: lr(e) for e in expected} == pytest.approx(expected)
    # an uneven last step still ends on final_lr
    assert lr_at(9.5, "step", 0.1, 0.001, 0.0, 10.0, cycle_epochs=3.0) == pytest.approx(0.001)


def test_bad_lr_arguments() -> None:
    with pytest.raises(ValueError, match="linear, cosine, cyclic_linear, step"):
        lr_at(1.0, "exponential", 0.1, 0.0, 0.0, 2.0)
    with pytest.raises(ValueError, match="cycle_epochs"):
        lr_at(1.0, "cyclic_linear", 0.1, 0.0, 0.0, 2.0)
    with pytest.raises(ValueError, match="final_lr > 0"):
        lr_at(1.0, "step", 0.1, 0.0, 0.0, 2.0, cycle_epochs=1.0)
