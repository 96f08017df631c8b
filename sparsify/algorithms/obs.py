"""The Optimal Brain Surgeon column sweep shared by SparseGPT (pruning) and GPTQ (rounding).

Per layer with weight W (out x in) and input Hessian H, columns are visited left to right.
Giving w_j its final value q_j while columns j.. are still free costs (w_j - q_j)^2 /
[H_F^-1]_jj and is compensated by moving the other free weights of the row along
[H_F^-1]_j,: . With U the upper Cholesky factor of H^-1 (H^-1 = U^T U), [H_F^-1]_jj = U_jj^2
and the update is err_j * U_j,: with err_j = (w_j - q_j) / U_jj, so one factorisation serves
every step. Columns go in blocks: updates inside a block are applied per column, the rest of
the matrix gets one matrix product per block (lazy batch updates).

The factorisation runs in float64: it keeps the Cholesky from failing on near-singular
Hessians (ReLU inputs, padding-heavy convolutions). The sweep runs in the weight's precision
(float32 for a model's weights).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import torch

from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")


def _damped_cholesky(hessian: torch.Tensor, percdamp: float) -> tuple[torch.Tensor, float]:
    """Lower Cholesky factor of H + damp I, with inputs that never fired (diag 0) decoupled,
    and the damping it took.

    damp = percdamp * mean(diag H); it grows tenfold while H is too ill-conditioned.
    """
    H = hessian.clone()
    H.diagonal()[H.diagonal() == 0] = 1.0  # dead inputs: their updates then touch nothing else
    mean_diag = float(H.diagonal().mean())
    damp = percdamp * mean_diag
    for _ in range(6):
        damped = H.clone()
        damped.diagonal().add_(damp)
        lower, info = torch.linalg.cholesky_ex(damped)
        if int(info) == 0:
            return lower, damp
        new_damp = max(10 * damp, 1e-6 * mean_diag)
        log.warning("Hessian not positive definite at damping %.3g; retrying %.3g", damp, new_damp)
        damp = new_damp
    raise SparsifyError(
        "SparseGPT could not factorise a layer's Hessian even with strong damping; "
        "raise percdamp (e.g. 0.1) or use more calibration samples"
    )


def _inverse_cholesky(hessian: torch.Tensor, percdamp: float) -> tuple[torch.Tensor, float]:
    """Upper Cholesky factor U of (H + damp I)^-1 = U^T U, from one Cholesky factorisation,
    and the damping it took.

    With P the order-reversing permutation and P (H + damp I) P = L L^T, the inverse is
    P L^-T L^-1 P = U^T U with U = P L^-1 P, upper triangular with a positive diagonal. One
    factorisation and one triangular inverse, where inverting H (`cholesky_inverse`, slow and
    single-threaded on CPUs) and factorising the inverse again cost three times as much.
    """
    flipped = hessian.flip(0, 1)
    lower, damp = _damped_cholesky(flipped, percdamp)
    eye = torch.eye(lower.shape[0], dtype=lower.dtype, device=lower.device)
    inverse = torch.linalg.solve_triangular(lower, eye, upper=False)
    return inverse.flip(0, 1), damp


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread: the sweep is thousands of small steps, which a second thread only
    slows (each step waits for both; on a loaded CPU, for a thread that lost its core: 4-10x
    slower at 4,608 columns on 2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


ColumnRule = Callable[[torch.Tensor, int, int, torch.Tensor], torch.Tensor]


@torch.no_grad()
def obs_update_layer(
    weight: torch.Tensor,
    H: torch.Tensor,
    rule: ColumnRule,
    block_size: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, float]:
    """The OBS column sweep shared by SparseGPT (pruning) and GPTQ (rounding).

    Visits the columns of a `(out, in_flat)` weight left to right in blocks; `rule(W1, i1, i,
    d)` gives column `i` of the block starting at column `i1` its final values, from the block
    `W1` as updated so far and the diagonal `d` of the block's inverse-Hessian factor. The
    difference is compensated on the later columns. Returns the new weight (weight's dtype)
    and the output error, the mean over calibration vectors of ||(W - W') x||^2 (undamped H).
    """
    # the factorisation in float64 (robust on near-singular Hessians), the sweep in the
    # weight's precision: float32 weights sweep in float32 (half the time of float64 at
    # 4,608 columns, and what the GPTQ reference does), float64 weights stay exact
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    original = weight.detach().to(dtype)
    W = original.clone()
    cols = W.shape[1]
    H0 = H.to(device=W.device, dtype=torch.float64)
    if H0.shape != (cols, cols):
        raise ValueError(f"Hessian {tuple(H0.shape)} does not match weight {tuple(W.shape)}")
    dead = H0.diagonal() == 0
    U, damp = inverse_factor(H0, percdamp)
    U = U.to(dtype)
    damped_loss = 0.0
    with _one_thread():
        for i1 in range(0, cols, block_size):
            i2 = min(i1 + block_size, cols)
            W1 = W[:, i1:i2].clone()
            Q1 = torch.zeros_like(W1)
            err1 = torch.zeros_like(W1)
            U1 = U[i1:i2, i1:i2]
            d = U1.diagonal()
            for i in range(i2 - i1):
                w = W1[:, i]
                q = rule(W1, i1, i, d)
                Q1[:, i] = q
                err = (w - q) / d[i]
                W1[:, i:].addr_(err, U1[i, i:], alpha=-1)
                err1[:, i] = err
            W[:, i1:i2] = Q1
            W[:, i2:].addmm_(err1, U[i1:i2, i2:], alpha=-1)
            damped_loss += float(err1[:, ~dead[i1:i2]].to(torch.float64).square().sum())
    # each live step's err^2 is what it adds to tr(D Hd D^T) (D = W - W', Hd the damped
    # Hessian factorised; dead inputs are decoupled in it and cost nothing undamped), so their
    # sum is that trace; Hd - H is damp I on live inputs, which gives the undamped error
    # without another (out x in x in) product
    delta_sq = (original - W)[:, ~dead].to(torch.float64).square().sum()
    error = 0.5 * max(damped_loss - damp * float(delta_sq), 0.0)
    return W.to(weight.dtype), error


def inverse_factor(H: torch.Tensor, percdamp: float) -> tuple[torch.Tensor, float]:
    """`_inverse_cholesky` of a Hessian whose dead inputs (diag 0) are decoupled first."""
    Hd = H.to(torch.float64).clone()
    Hd.diagonal()[Hd.diagonal() == 0] = 1.0  # decouples dead inputs: their updates touch nothing
    return _inverse_cholesky(Hd, percdamp)
