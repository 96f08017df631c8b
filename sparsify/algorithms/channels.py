"""Channel pruning of CNNs and YOLO: whole channels removed, with everything that depends on
them, so every engine runs narrower convolutions.

Which layers share a channel comes from Torch-Pruning's dependency graph (DepGraph, Fang et
al. 2023; `torch-pruning`, the `channels` extra): a conv's output channel is also its
BatchNorm's, the next layers' input channel, a depthwise conv's whole filter, and, through a
residual Add or a Concat, the channel of every other layer coupled there. One such set is a
*group*; Torch-Pruning names it by its first conv or linear layer (the root) and maps the
root's channel indices into every member (Concat offsets, Split halves, Flatten into a
Linear). This module chooses the channels, masks them, removes them (`ChannelGraph`);
and `channel_widths` rebuilds thin shapes for loading a checkpoint.

A grouped convolution (ResNeXt, RegNet: `groups` = G, neither 1 nor depthwise) splits the
channels it reads and writes into G equal blocks, and its weight holds one set of columns for
all of them: its groups keep equal widths only if the same offsets go from every block. A
group it belongs to is pruned that way (`Group.blocks`: the channels' importance averaged over
the blocks, one choice of offsets repeated in each), as Torch-Pruning's own pruner does, which
its layer functions assume (`ConvPruner.prune_in_channels` keeps the first block's columns).

Masking zeroes a channel everywhere in its group: the producers' output rows, biases and
BatchNorm scale and shift, and the consumers' input columns. The channel then carries exact
zeros through ReLU / SiLU / Hardswish and the consumers ignore it, so removing it afterwards
changes no output (`tests/algorithms/test_channels.py` checks this per block kind).

Left alone on purpose (the group keeps its width): groups a protected layer produces (the
recipe's and the family's `ignore`, through `sparsify.matching`); channels that reach a model
output without passing a conv or linear layer (a classifier's logits, a detection head's
outputs and mask prototypes); the first conv of a block that splits its output in two equal
halves (Ultralytics C2f / C3k2 / C2PSA `cv1`: its `c` fixes both halves); Ultralytics
attention modules (they reshape channels by head count); a group whose channels reach a
grouped conv through a Concat or Split (its blocks would not line up with the group's).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from sparsify.algorithms.hessian import forward_batch, hooked_eval_forward
from sparsify.algorithms.structured import kept_width
from sparsify.errors import SparsifyError
from sparsify.matching import match_modules

log = logging.getLogger("sparsify")

IMPORTANCES = ["magnitude", "bn_scale", "taylor"]
ROOT_TYPES = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
SUPPORTED = (*ROOT_TYPES, nn.BatchNorm1d, nn.BatchNorm2d)
# Ultralytics modules that reshape channels by a head count: their layers keep their widths
OPAQUE_CLASSES = ("Attention", "AAttn", "ABlock")
MAX_FRACTION = 0.9  # a global ranking never removes more than this share of one group


def require_torch_pruning() -> Any:
    try:
        import torch_pruning
    except ImportError:
        raise SparsifyError(
            "structure: channels needs Torch-Pruning: pip install 'sparsify[channels]'"
        ) from None
    return torch_pruning


def _depthwise(module: nn.Module) -> bool:
    """One filter per channel: its input and output channels are one (Torch-Pruning couples
    them)."""
    groups = getattr(module, "groups", 1)
    return groups > 1 and groups == module.in_channels == module.out_channels


def _grouped(module: nn.Module) -> bool:
    """A grouped convolution other than depthwise: its G blocks must shrink alike."""
    return getattr(module, "groups", 1) > 1 and not _depthwise(module)


def _unsupported_groups(module: nn.Module) -> str | None:
    """Why a conv's grouping cannot be thinned, or None."""
    if not _grouped(module):
        return None
    if getattr(module, "transposed", False):  # Torch-Pruning slices its in-channel dim as a
        return "a grouped transposed conv"  # plain conv's: the wrong one
    if module.groups == module.out_channels:  # Torch-Pruning takes it for depthwise
        return f"{module.in_channels // module.groups} input channels per output channel"
    return None


def blocking_layers(model: nn.Module) -> list[str]:
    """Layers the channel graph cannot thin, each with why: parameters in a module that is not
    a conv, linear or BatchNorm layer (attention, recurrent, normalisation over channels a
    graph cannot follow), or a grouped convolution Torch-Pruning cannot thin (transposed, or
    a single output channel per group with several inputs)."""
    found = []
    for name, module in model.named_modules():
        own = [p for p, _ in module.named_parameters(recurse=False)]
        if isinstance(module, SUPPORTED):
            why = _unsupported_groups(module)
            if why is not None:
                found.append(f"{name} ({type(module).__name__} with groups={module.groups}: {why})")
        elif own:
            found.append(f"{name} ({type(module).__name__} holds {', '.join(own)})")
    return found


def check_supported(model: nn.Module, who: str = "structure: channels") -> None:
    """One clear error naming every layer that blocks channel pruning."""
    blocked = blocking_layers(model)
    if blocked:
        shown = "; ".join(blocked[:5]) + (f"; and {len(blocked) - 5} more" if blocked[5:] else "")
        raise SparsifyError(
            f"{who} cannot prune this model: {shown}. It thins convolutional networks (Conv, "
            "BatchNorm, Linear, depthwise and grouped convs, residual Adds, Concat / Split): use "
            "structure: ffn_neurons / attention_heads for transformers, or unstructured pruning"
        )


def structural_protections(model: nn.Module) -> list[str]:
    """Layer names whose output channels must keep their number whatever the recipe says."""
    names = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if type(module).__name__ in OPAQUE_CLASSES:
            names += [prefix + n for n, m in module.named_modules() if isinstance(m, ROOT_TYPES)]
        cv1 = getattr(module, "cv1", None)
        if isinstance(getattr(module, "c", None), int) and isinstance(cv1, nn.Module):
            names += [f"{prefix}cv1.{n}" if n else f"{prefix}cv1" for n, m in cv1.named_modules()
                      if isinstance(m, ROOT_TYPES)]  # fmt: skip
    return names


@dataclass
class Group:
    """One set of coupled channels, named by its root layer; `blocks` > 1 where grouped convs
    read or write them: the same offsets go from each of that many equal blocks."""

    root: str
    module: nn.Module
    width: int
    members: list[str]
    blocks: int = 1


@contextlib.contextmanager
def _traceable(model: nn.Module) -> Iterator[None]:
    """Eval mode (tracing must not move BatchNorm statistics) and gradients on (the graph is
    read from autograd), both restored afterwards."""
    training = model.training
    frozen = [p for p in model.parameters() if not p.requires_grad]
    model.eval()
    for p in frozen:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():  # a trainer's after-step hook runs under no_grad
            yield
    finally:
        model.train(training)
        for p in frozen:
            p.requires_grad_(False)


class ChannelGraph:
    """The prunable channel groups of `model`, traced on `example` (one model input: a tensor,
    a tuple of positional inputs or a dict of keyword inputs)."""

    def __init__(self, model: nn.Module, example: Any, ignore: list[str] | None = None) -> None:
        tp = require_torch_pruning()
        check_supported(model)
        self.model = model
        match = match_modules(model, ignore, types=ROOT_TYPES)
        modules = dict(model.named_modules())
        protected = [*match.ignored.values()]
        protected += [modules[n] for n in structural_protections(model) if n in modules]
        self.tp = tp
        with _traceable(model):
            self.graph = tp.DependencyGraph().build_dependency(
                model, example_inputs=example, forward_fn=lambda m, x: forward_batch(m, x)
            )
        names = {id(m): n for n, m in modules.items()}
        self.groups: list[Group] = []
        self.removed = False
        self._full: dict[str, Any] = {}
        for group in self.graph.get_all_groups(
            ignored_layers=protected, root_module_types=ROOT_TYPES
        ):
            root = group[0].dep.target.module
            members = [d.target.module for d, _ in group if isinstance(d.target.module, nn.Module)]
            consumers = [
                d for d, _ in group
                if isinstance(d.target.module, ROOT_TYPES) and self.graph.is_in_channel_pruning_fn(d.handler)
            ]  # fmt: skip
            if not consumers:  # reaches an output without a conv: its width is an output's
                continue
            name = names[id(root)]
            width = len(group[0].idxs)
            blocks = _blocks(group, width, self.graph.is_out_channel_pruning_fn)
            if blocks is None:
                log.debug("Channels of %s stay: a grouped conv reads them through a Concat", name)
                continue
            members = [names.get(id(m), "?") for m in members]
            self.groups.append(Group(name, root, width, members, blocks))
            self._full[name] = group

    # ------------------------------------------------------------------------- choosing
    def scores(self, importance: str) -> dict[str, torch.Tensor]:
        """Importance per channel of every group (higher = keep). `taylor` reads the weights'
        `.grad` (`taylor_gradients`); `bn_scale` falls back to magnitude in groups without
        BatchNorm."""
        imp = self.tp.importance
        scorer = {
            "magnitude": imp.GroupMagnitudeImportance(p=2),
            "bn_scale": imp.BNScaleImportance(),
            "taylor": imp.GroupTaylorImportance(),
        }[importance]
        fallback = imp.GroupMagnitudeImportance(p=2)
        out = {}
        for g in self.groups:
            score = scorer(self._full[g.root])
            if score is None or score.numel() != g.width:
                score = fallback(self._full[g.root])
            out[g.root] = torch.nan_to_num(score.detach().float().cpu(), nan=0.0)
        return out

    def choose(
        self, fraction: float, importance: str = "magnitude", global_ranking: bool = False
    ) -> dict[str, list[int]]:
        """Channels to remove per group root, `fraction` of every group's width (or, with
        `global_ranking`, of all channels together: groups with many weak channels give more,
        at most MAX_FRACTION each). Kept widths are multiples of 8 where the width is."""
        if fraction <= 0 or not self.groups:
            return {}
        # per offset within a block (a block is the whole group unless grouped convs split it)
        blocks = {g.root: g.blocks for g in self.groups}
        scores = {r: s.view(blocks[r], -1).mean(0) for r, s in self.scores(importance).items()}
        keep: dict[str, int] = {}  # per block
        if global_ranking:  # every channel counts once: an offset stands for `blocks` of them
            flat = torch.cat([scores[g.root].repeat(g.blocks) for g in self.groups])
            k = int(round(fraction * flat.numel()))
            threshold = flat.sort().values[k - 1] if k > 0 else -float("inf")
            for g in self.groups:
                removed = int((scores[g.root] <= threshold).sum())
                share = min(removed * g.blocks / g.width, MAX_FRACTION)
                keep[g.root] = kept_width(g.width // g.blocks, share)
        else:
            keep = {g.root: kept_width(g.width // g.blocks, fraction) for g in self.groups}
        chosen = {}
        for g in self.groups:
            block = g.width // g.blocks
            order = scores[g.root].argsort(stable=True)  # weakest first
            drop = order[: block - keep[g.root]].tolist()
            if drop:
                chosen[g.root] = sorted(b * block + i for b in range(g.blocks) for i in drop)
        return chosen

    def _group(self, root: str, idxs: list[int]) -> Any:
        if self.removed:
            raise SparsifyError("channels were removed from this graph's model: trace it again")
        module = self._full[root][0].dep.target.module
        pruner = self.graph.get_pruner_of_module(module)
        return self.graph.get_pruning_group(module, pruner.prune_out_channels, idxs)

    # ------------------------------------------------------------------------ masking
    @torch.no_grad()
    def mask(self, chosen: dict[str, list[int]]) -> None:
        """Zero the chosen channels in every layer of their groups (see the module docstring)."""
        for root, idxs in chosen.items():
            for dep, group_idxs in self._group(root, idxs):
                module = dep.target.module
                if not isinstance(module, SUPPORTED):
                    continue
                plain = [int(getattr(i, "idx", i)) for i in group_idxs]
                _zero(module, plain, self.graph.is_out_channel_pruning_fn(dep.handler))

    def consumers(self, chosen: dict[str, list[int]]) -> dict[nn.Module, set[int]]:
        """Every ungrouped conv / linear layer that reads removed channels, with the input
        channels it loses (what `reconstruct_consumers` re-fits)."""
        found: dict[nn.Module, set[int]] = {}
        for root, idxs in chosen.items():
            for dep, group_idxs in self._group(root, idxs):
                module = dep.target.module
                dense = isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d) and (
                    module.groups == 1 if isinstance(module, _ConvNd) else True
                )
                if dense and self.graph.is_in_channel_pruning_fn(dep.handler):
                    plain = {int(getattr(i, "idx", i)) for i in group_idxs}
                    found.setdefault(module, set()).update(plain)
        return found

    # ------------------------------------------------------------------------ removal
    @torch.no_grad()
    def remove(
        self, chosen: dict[str, list[int]], optimizer: Any | None = None
    ) -> dict[int, dict[int, torch.Tensor]]:
        """Remove the chosen channels (indices of the full widths), group after group; the
        optimizer's parameters and per-parameter state (Adam moments) follow. Returns, by id
        of each conv / linear layer whose weight shrank, the kept indices per weight dim."""
        records: list[tuple[nn.Parameter, nn.Parameter, list[int], int]] = []
        owner = {id(m.weight): m for m in self.model.modules() if isinstance(m, ROOT_TYPES)}
        with _recording(self.tp, records):
            for root, idxs in chosen.items():
                self._group(root, idxs).prune()
        if optimizer is not None:
            _remap_optimizer(optimizer, records)
        kept: dict[int, dict[int, torch.Tensor]] = {}
        for old, new, keep, dim in records:
            module = owner.pop(id(old), None)
            if module is None:
                continue
            owner[id(new)] = module
            index = torch.tensor(keep, dtype=torch.long)
            dims = kept.setdefault(id(module), {})
            dims[dim] = dims[dim][index] if dim in dims else index
        # the groups' indices now refer to widths the model no longer has: trace it again
        # (a new ChannelGraph) to prune more
        self.removed = True
        return kept


def _blocks(group: Any, width: int, is_out: Any) -> int | None:
    """How many equal blocks grouped convs split a group's `width` channels into (their
    groups' least common multiple; 1 without any), or None where one sees the channels
    through a Concat / Split and its blocks do not line up with the group's."""
    blocks = 1
    for dep, idxs in group:
        module = dep.target.module
        if not isinstance(module, _ConvNd) or not _grouped(module):
            continue
        own = [int(getattr(i, "idx", i)) for i in idxs]
        root = [int(getattr(i, "root_idx", i)) for i in idxs]
        size = module.out_channels if is_out(dep.handler) else module.in_channels
        if own != root or len(own) != width or width != size:
            return None
        blocks = math.lcm(blocks, module.groups)
    return blocks if width % blocks == 0 else None


def _zero(module: nn.Module, idxs: list[int], out: bool) -> None:
    index = torch.tensor(idxs, dtype=torch.long, device=module.weight.device)
    if isinstance(module, _BatchNorm):
        if module.weight is not None:
            module.weight.index_fill_(0, index, 0.0)
            module.bias.index_fill_(0, index, 0.0)
        return
    transposed = bool(getattr(module, "transposed", False))
    if not out and isinstance(module, _ConvNd) and _grouped(module):
        # input channel c: column c mod in/G of the rows of its block (c div in/G)
        blocks, rows = module.groups, module.out_channels // module.groups
        cols = module.in_channels // blocks
        keep = torch.ones(blocks, cols, dtype=torch.bool, device=index.device)
        keep.view(-1)[index] = False
        keep = keep.repeat_interleave(rows, 0)  # (out, in/G)
        module.weight.mul_(keep.view(*keep.shape, *[1] * (module.weight.dim() - 2)))
        return
    depthwise = isinstance(module, _ConvNd) and _depthwise(module)
    if out or depthwise:
        module.weight.index_fill_(1 if transposed else 0, index, 0.0)
        if module.bias is not None:
            module.bias.index_fill_(0, index, 0.0)
    else:
        module.weight.index_fill_(0 if transposed else 1, index, 0.0)


@contextlib.contextmanager
def _recording(tp: Any, records: list[Any]) -> Iterator[None]:
    """Record every parameter Torch-Pruning replaces (old, new, kept indices, dim), keeping
    `requires_grad` as it was (Torch-Pruning's new Parameters would all train)."""
    base = tp.pruner.function.BasePruningFunc
    original = base._prune_parameter_and_grad

    def wrapped(self: Any, weight: nn.Parameter, keep_idxs: list[int], dim: int) -> nn.Parameter:
        new = original(self, weight, keep_idxs, dim)
        new.requires_grad_(weight.requires_grad)
        records.append((weight, new, list(keep_idxs), dim))
        return new

    base._prune_parameter_and_grad = wrapped
    try:
        yield
    finally:
        base._prune_parameter_and_grad = original


def _remap_optimizer(optimizer: Any, records: list[Any]) -> None:
    """Point the optimizer at the new parameters and slice their state alike."""
    for old, new, keep, dim in records:
        for group in optimizer.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]
        state = optimizer.state.pop(old, None)
        if state is None:
            continue
        index = torch.tensor(keep, dtype=torch.long)
        optimizer.state[new] = {
            k: v.index_select(dim, index.to(v.device)).contiguous()
            if torch.is_tensor(v) and v.shape == old.shape
            else v
            for k, v in state.items()
        }


def taylor_gradients(model: nn.Module, batches: list[Any]) -> None:
    """Accumulate `.grad` for first-order Taylor importance (|w * dL/dw|) on calibration
    batches, which carry no labels: the loss is the cross-entropy with the model's own
    predictions for a classifier (one logits tensor), else the mean square of every output."""
    model.zero_grad(set_to_none=True)
    with _traceable(model), torch.enable_grad():
        for batch in batches:
            output = forward_batch(model, batch)
            if isinstance(output, torch.Tensor) and output.dim() == 2:
                loss = nn.functional.cross_entropy(output, output.detach().argmax(1))
            else:
                loss = sum(t.float().square().mean() for t in _tensors(output))
            loss.backward()


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, list | tuple):
        return [t for o in output for t in _tensors(o)]
    return []


@torch.no_grad()
def count_macs(model: nn.Module, example: Any) -> tuple[int, int]:
    """(multiply-accumulates of one forward pass on `example`, parameters) of the conv and
    linear layers: what channel pruning shrinks, per sample of the example batch."""
    total = [0]

    def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
        batch = max(int(args[0].shape[0]), 1)
        per_output = module.weight.numel() // _out_count(module)
        total[0] += output.numel() // batch * per_output

    layers = [m for m in model.modules() if isinstance(m, ROOT_TYPES)]
    hooked_eval_forward(model, example, [m.register_forward_hook(hook) for m in layers])
    return total[0], sum(p.numel() for p in model.parameters())


def _out_count(module: nn.Module) -> int:
    """Output channels (features) of a conv / linear layer."""
    if isinstance(module, nn.Linear):
        return module.out_features
    return module.out_channels


def example_input(model: nn.Module, size: int = 64) -> torch.Tensor:
    """A one-sample input to trace an image model with (the first layer's channels, `size`
    pixels: a multiple of YOLO's largest stride)."""
    first = next((m for m in model.modules() if isinstance(m, ROOT_TYPES)), None)
    device = next(model.parameters()).device
    if isinstance(first, nn.Conv2d):
        return torch.randn(1, first.in_channels, size, size, device=device)
    if isinstance(first, nn.Conv1d):
        return torch.randn(1, first.in_channels, size, device=device)
    if isinstance(first, nn.Linear):
        return torch.randn(1, first.in_features, device=device)
    raise SparsifyError("structure: channels found no conv or linear layer to prune")


def channel_report(
    groups: int, width: int, removed: int, macs: tuple[int, int], params: tuple[int, int]
) -> dict[str, Any]:
    """What channel pruning did, for the run's outputs and the model card."""
    return {
        "structure": "channels",
        "blocks": groups,
        "width": width,
        "kept": width - removed,
        "sparsity": round(removed / width, 4) if width else 0.0,
        "macs": list(macs),
        "params": list(params),
    }


@torch.no_grad()
def thin_like(model: nn.Module, reference: nn.Module) -> None:
    """Give `model` the channel counts of `reference`, the same architecture channel-pruned
    while `model` took its zeros (Ultralytics' EMA copy of the model being trained): in each
    group narrower in `reference`, the channels whose root rows are zero in `model` go."""
    ref = dict(reference.named_modules())
    widths = {n: _out_count(m) for n, m in ref.items() if isinstance(m, ROOT_TYPES)}
    graph = ChannelGraph(model, example_input(model))
    chosen = {}
    for g in graph.groups:
        # the root's own width: a group traced here without the protections `reference` was
        # pruned under can couple more (YOLO's box convs through the DFL reshape), and a
        # group width compared with one layer's would remove channels `reference` kept
        own = _out_count(g.module)
        narrower = own - widths.get(g.root, own)
        if narrower > 0:
            weight = g.module.weight.detach()
            if getattr(g.module, "transposed", False):
                weight = weight.transpose(0, 1)
            norms = weight.flatten(1).abs().sum(1).float().cpu()
            chosen[g.root] = sorted(norms.argsort(stable=True)[:narrower].tolist())
    graph.remove(chosen)
