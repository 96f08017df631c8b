"""The OBS column sweep: its blocked (lazy batch) updates and one-factorisation inverse factor
against the textbook column-by-column update on the explicit inverse Hessian."""

from __future__ import annotations

import pytest
import torch

from sparsify.algorithms.obs import _inverse_cholesky, obs_update_layer


def random_hessian(n: int, dead: int = 0, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3 * n, n, generator=gen, dtype=torch.float64)
    x = x * torch.logspace(0, -2, n, dtype=torch.float64)
    x[:, :dead] = 0  # inputs that never fire
    return 2 / x.shape[0] * x.T @ x


def grid(w: torch.Tensor) -> torch.Tensor:
    return torch.round(w / 0.05) * 0.05


def reference_sweep(
    weight: torch.Tensor, H: torch.Tensor, percdamp: float
) -> tuple[torch.Tensor, float]:
    """Column by column, the inverse Hessian of the free columns updated by elimination."""
    W = weight.double().clone()
    Hd = H.clone()
    Hd.diagonal()[H.diagonal() == 0] = 1.0
    Hd.diagonal().add_(percdamp * float(Hd.diagonal().mean()))
    inverse = torch.linalg.inv(Hd)
    for j in range(W.shape[1]):
        q = grid(W[:, j])
        err = (W[:, j] - q) / inverse[j, j]
        W[:, j:] -= err.unsqueeze(1) * inverse[j, j:].unsqueeze(0)
        W[:, j] = q
        inverse = inverse - torch.outer(inverse[:, j], inverse[j, :]) / inverse[j, j]
    delta = weight.double() - W
    return W, float(0.5 * (delta @ H * delta).sum())


def test_inverse_factor_is_the_upper_cholesky_factor_of_the_damped_inverse() -> None:
    H = random_hessian(40)
    U, damp = _inverse_cholesky(H, 0.01)
    assert damp == pytest.approx(0.01 * float(H.diagonal().mean()))
    assert torch.equal(U, U.triu()) and bool((U.diagonal() > 0).all())
    expected = torch.linalg.inv(H + damp * torch.eye(40, dtype=H.dtype))
    torch.testing.assert_close(U.T @ U, expected)
    torch.testing.assert_close(U, torch.linalg.cholesky(expected, upper=True))


@pytest.mark.parametrize("block_size", [1, 4, 7, 128])
@pytest.mark.parametrize("dead", [0, 3])
def test_blocked_sweep_equals_column_by_column_reference(block_size: int, dead: int) -> None:
    torch.manual_seed(0)
    H = random_hessian(24, dead=dead)
    weight = torch.randn(10, 24, dtype=torch.float64)

    def rule(W1: torch.Tensor, i1: int, i: int, d: torch.Tensor) -> torch.Tensor:
        return grid(W1[:, i])

    ours, error = obs_update_layer(weight, H, rule, block_size=block_size, percdamp=0.01)
    expected, expected_error = reference_sweep(weight, H, 0.01)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-9)
    # the error from the sweep's own steps is the undamped output error of the result
    assert error == pytest.approx(expected_error, rel=1e-8)
