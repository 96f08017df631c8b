"""One-shot channel pruning's repair: the layers that read removed channels re-fit by least
squares on calibration activations (He et al. 2017, "Channel Pruning for Accelerating Very
Deep Neural Networks"; the channel analogue of SparseGPT's update).

For a consumer layer with weight W (out x in_flat, input channel innermost as in
`masks.to_matrix`) and the input Hessian H = 2/n sum x x^T of its dense inputs
(`hessian.HessianAccumulator`), dropping the input columns R and keeping K, the weights on K
that best reproduce the dense outputs W x are

    W_K = W H[:, K] H[K, K]^-1

(the normal equations of min ||W x - W_K x_K||^2; dampened like SparseGPT's). The dropped
columns' contribution is folded into the kept ones as far as the kept inputs correlate with
the dropped ones.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from sparsify.algorithms.hessian import collect_hessians
from sparsify.algorithms.masks import from_matrix, to_matrix

log = logging.getLogger("sparsify")


@torch.no_grad()
def reconstruct_consumers(
    model: nn.Module,
    consumers: dict[nn.Module, set[int]],
    batches: list[Any],
    percdamp: float = 0.01,
) -> dict[nn.Module, float]:
    """Re-fit every consumer's weights on its kept input channels in place (the removed
    columns become zero); returns each layer's relative output error left, on the
    calibration inputs (0 = exact)."""
    if not consumers or not batches:
        return {}
    training = model.training
    model.eval()
    accs = collect_hessians(model, {layer: layer for layer in consumers}, batches)
    model.train(training)
    errors = {}
    for layer, removed in consumers.items():
        errors[layer] = _refit(layer, removed, accs[layer].hessian, percdamp)
    log.info(
        "Least-squares re-fit of %d layers reading removed channels (mean relative error %.4f)",
        len(errors),
        sum(errors.values()) / max(len(errors), 1),
    )
    return errors


def _refit(layer: nn.Module, removed: set[int], hessian: torch.Tensor, percdamp: float) -> float:
    weight = layer.weight
    matrix = to_matrix(weight.detach()).to(torch.float64)
    channels = weight.shape[1]
    column_channel = torch.arange(matrix.shape[1]) % channels  # channel innermost
    drop = torch.zeros(channels, dtype=torch.bool)
    drop[sorted(removed)] = True
    kept = (~drop[column_channel]).nonzero().flatten()
    h = hessian.to(torch.float64).cpu()
    hk = h[kept][:, kept]
    damp = percdamp * float(hk.diagonal().mean()) if kept.numel() else 0.0
    hk = hk + (damp or 1e-8) * torch.eye(kept.numel(), dtype=torch.float64)
    w = matrix.cpu()
    fitted = torch.linalg.solve(hk, (w @ h[:, kept]).T).T  # W H[:, K] H[K, K]^-1
    new = torch.zeros_like(w)
    new[:, kept] = fitted
    # relative output error on the calibration inputs: tr(dW H dW^T) / tr(W H W^T)
    diff = new - w
    base = float(torch.einsum("ij,jk,ik->", w, h, w))
    error = float(torch.einsum("ij,jk,ik->", diff, h, diff)) / base if base > 0 else 0.0
    weight.copy_(from_matrix(new.to(weight.dtype), weight.shape).to(weight.device))
    return error
