"""Runs of blocks in a model's forward pass, whose inputs can be cached and replayed.

The run is found by recording one forward pass on one batch, with hooks on every container's
children (Sequential and ModuleList items flattened): a block joins the run when it is called
once and every tensor it is given is, by identity, an earlier block's output or one of the
first block's inputs (an attention mask). Anything else (a tensor computed between blocks, a
block called twice, layers visited in another order than they run) ends the run there; a run
whose replay does not give the real forward pass's output is refused. `layer_inputs` uses it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sparsify.algorithms.hessian import forward_batch

log = logging.getLogger("sparsify")

_SIMPLE = (type(None), bool, int, float, str, torch.dtype, torch.device)
Ref = tuple[Any, ...]  # ("in", leaf) of the first block's inputs, ("out", block, leaf)


def leaves(obj: Any, kind: type = torch.Tensor) -> list[Any]:
    """The `kind` items (tensors by default) in a nested tuple / list / dict, in a fixed
    order."""
    if isinstance(obj, kind):
        return [obj]
    if isinstance(obj, list | tuple):
        return [t for item in obj for t in leaves(item, kind)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in leaves(item, kind)]
    return []


def _template(obj: Any, lookup: Callable[[torch.Tensor], Ref | None]) -> Any:
    """`obj` with each tensor replaced by where it comes from; raises LookupError for a
    tensor of unknown origin or a value that might hide one."""
    if isinstance(obj, torch.Tensor):
        ref = lookup(obj)
        if ref is None:
            raise LookupError("a tensor that no earlier block produced")
        return _Leaf(ref)
    if isinstance(obj, list | tuple):
        items = [_template(item, lookup) for item in obj]
        return type(obj)(items) if not hasattr(obj, "_fields") else type(obj)(*items)
    if isinstance(obj, dict):
        return _like(obj, {key: _template(value, lookup) for key, value in obj.items()})
    if isinstance(obj, _SIMPLE):
        return obj
    raise LookupError(f"an input of type {type(obj).__name__}")


@dataclass(frozen=True)
class _Leaf:
    ref: Ref


def _build(template: Any, resolve: Callable[[Ref], torch.Tensor]) -> Any:
    if isinstance(template, _Leaf):
        return resolve(template.ref)
    if isinstance(template, list | tuple):
        items = [_build(item, resolve) for item in template]
        return type(template)(items) if not hasattr(template, "_fields") else type(template)(*items)
    if isinstance(template, dict):
        return _like(template, {key: _build(value, resolve) for key, value in template.items()})
    return template


def _like(original: dict[Any, Any], items: dict[Any, Any]) -> dict[Any, Any]:
    """`items` as a dict of `original`'s type (transformers' ModelOutput takes keywords)."""
    return items if type(original) is dict else type(original)(**items)


def clone(obj: Any) -> Any:
    """Tensors copied (a block may change its input in place: ReLU(inplace=True))."""
    return _build(_template(obj, lambda t: ("t", t)), lambda ref: ref[1].clone())


@dataclass
class _Call:
    order: int  # when the call started, in the recorded pass
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any = None
    end: int = 0
    count: int = 1


@dataclass
class BlockRun:
    """Blocks called one after another, with where each block's inputs come from."""

    names: list[str]
    blocks: list[nn.Module]
    inputs: list[Any]  # per block after the first: its (args, kwargs) as a template
    start: int  # call order of the first block, end: of the last block's return
    end: int
    layer_block: dict[str, int] = field(default_factory=dict)  # target layer -> block


def _candidates(model: nn.Module) -> list[list[tuple[str, nn.Module]]]:
    """For every module, its children in order with Sequential / ModuleList items flattened."""

    def flat(prefix: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
        out: list[tuple[str, nn.Module]] = []
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, nn.Sequential | nn.ModuleList):
                out.extend(flat(full, child))
            else:
                out.append((full, child))
        return out

    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Sequential | nn.ModuleList) and name:
            continue  # flattened into its parent's list
        children = flat(name, module)
        if len(children) >= 2:
            found.append(children)
    return found


def _record(model: nn.Module, modules: dict[nn.Module, str], batch: Any) -> dict[nn.Module, _Call]:
    """One forward pass with the calls of `modules` recorded (inputs, output, order)."""
    calls: dict[nn.Module, _Call] = {}
    clock = iter(range(1 << 62))

    def before(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if module in calls:
            calls[module].count += 1
        else:
            calls[module] = _Call(next(clock), args, kwargs)

    def after(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        call = calls[module]
        if call.count == 1:
            call.output, call.end = output, next(clock)

    handles = []
    for module in modules:
        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True))
    try:
        forward_batch(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _plain(obj: Any) -> bool:
    """Whether `obj` is tensors in tuples / lists / dicts of simple values (cacheable)."""
    try:
        _template(obj, lambda t: ("t",))
    except LookupError:
        return False
    return True


def _runs(chain: list[tuple[str, nn.Module]], calls: dict[nn.Module, _Call]) -> Iterator[BlockRun]:
    """The maximal runs of `chain`'s blocks whose inputs all come from the run."""
    called = sorted(
        (
            (n, m)
            for n, m in chain
            if m in calls and calls[m].count == 1 and calls[m].end and _plain(calls[m].output)
        ),
        key=lambda item: calls[item[1]].order,
    )
    run: BlockRun | None = None
    for name, module in called:
        call = calls[module]
        template = None
        if run is not None and call.order > run.end:
            first = calls[run.blocks[0]]
            sources = [("in", i, t) for i, t in enumerate(leaves((first.args, first.kwargs)))]
            for b, block in enumerate(run.blocks):
                sources += [("out", b, i, t) for i, t in enumerate(leaves(calls[block].output))]

            def lookup(tensor: torch.Tensor, sources: list[Any] = sources) -> Ref | None:
                for source in reversed(sources):  # latest first: in-place ops return their input
                    if source[-1] is tensor:
                        return source[:-1]
                return None

            with contextlib.suppress(LookupError):
                template = _template((call.args, call.kwargs), lookup)
        if template is not None:
            assert run is not None
            run.names.append(name)
            run.blocks.append(module)
            run.inputs.append(template)
            run.end = call.end
            continue
        if run is not None:
            yield run
        run = None
        if _plain((call.args, call.kwargs)):  # a run starts where its inputs can be cached
            run = BlockRun([name], [module], [None], call.order, call.end)
    if run is not None:
        yield run


def plan_block_run(
    model: nn.Module, layers: dict[str, nn.Module], batch: Any
) -> tuple[BlockRun | None, dict[str, str]]:
    """The block run that saves the most forward work for `layers` (processed in their
    order), or None; and, per layer, the earlier layer whose input tensor it shares (q/k/v
    projections): such layers see the same inputs whatever is done to the ones between."""
    chains = _candidates(model)
    watched = {m: n for chain in chains for n, m in chain} | {m: n for n, m in layers.items()}
    with torch.no_grad():
        calls = _record(model, watched, batch)
    shared: dict[str, str] = {}
    names = list(layers)
    for before, name in zip(names, names[1:], strict=False):
        a, b = calls.get(layers[before]), calls.get(layers[name])
        if a and b and a.count == b.count == 1 and a.args and b.args and a.args[0] is b.args[0]:
            shared[name] = shared.get(before, before)
    best, best_score = None, 0
    for chain in chains:
        for run in _runs(chain, calls):
            if len(run.blocks) < 2 or not _fits(run, layers, calls):
                continue
            per_block = [list(run.layer_block.values()).count(b) for b in range(len(run.blocks))]
            # a layer in the largest block saves about nothing: that block is most of the model
            score = len(run.layer_block) - max(per_block)
            if score > best_score:
                best, best_score = run, score
    del calls
    if best is not None and not _replays(model, best, batch):
        log.warning("Sequential calibration: replaying blocks %s ... %s did not give the "
                    "model's outputs; running the whole model for every layer instead",
                    best.names[0], best.names[-1])  # fmt: skip
        best = None
    return best, shared


def _fits(run: BlockRun, layers: dict[str, nn.Module], calls: dict[nn.Module, _Call]) -> bool:
    """Whether `layers`, in their order, are: those that run before the blocks, then the
    blocks' layers block by block, then those that run after (filling `run.layer_block`)."""
    inside = {}
    for b, block in enumerate(run.blocks):
        for module in block.modules():
            inside[module] = b
    phase, last = 0, 0  # 0 before the run, 1 in it, 2 after it
    for name, layer in layers.items():
        call = calls.get(layer)
        if layer in inside:
            if phase == 2 or inside[layer] < last:
                return False
            phase, last = 1, inside[layer]
            run.layer_block[name] = inside[layer]
        elif call is None or call.count != 1:
            return False
        elif call.order < run.start and phase == 0:
            continue
        elif call.order > run.end:
            phase = 2
        else:
            return False
    return bool(run.layer_block)


def _replays(model: nn.Module, run: BlockRun, batch: Any) -> bool:
    """Whether running the blocks on the first one's captured inputs gives the last one's
    output of a real forward pass (an in-place change between blocks would not)."""
    seen: dict[str, Any] = {}

    def first(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen["first"] = clone((args, kwargs))

    def last(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        seen["last"] = clone(output)

    handles = [
        run.blocks[0].register_forward_pre_hook(first, with_kwargs=True),
        run.blocks[-1].register_forward_hook(last, with_kwargs=True),
    ]
    with torch.no_grad():
        try:
            forward_batch(model, batch)
        finally:
            for handle in handles:
                handle.remove()
        inputs = BlockInputs(run, [leaves(seen["first"])], seen["first"])
        for b in range(len(run.blocks) - 1):
            inputs.compute(b)
        args, kwargs = inputs.block_inputs(len(run.blocks) - 1, 0)
        replayed = leaves(run.blocks[-1](*args, **kwargs))
    real = leaves(seen["last"])
    return len(real) == len(replayed) and all(
        a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max()))
        for a, b in zip(real, replayed, strict=True)
        if a.is_floating_point()
    )


class BlockInputs:
    """The run's blocks' inputs per calibration batch: the first block's captured, the
    others' built from earlier blocks' cached outputs."""

    def __init__(self, run: BlockRun, first: list[list[torch.Tensor]], template: Any) -> None:
        self.run, self.first = run, first
        self.template = _template(template, lambda t: ("first",))
        self.outputs: dict[int, list[Any]] = {}

    def compute(self, block: int) -> None:
        """Block `block`'s outputs on every batch, cached."""
        module = self.run.blocks[block]
        self.outputs[block] = [
            module(*args, **kwargs)
            for args, kwargs in (self.block_inputs(block, i) for i in range(len(self.first)))
        ]

    def drop_unused(self, after: int) -> None:
        """Forget outputs that no block after `after` reads."""
        used = {
            leaf.ref[1]
            for template in self.run.inputs[after + 1 :]
            for leaf in leaves(template, _Leaf)
            if leaf.ref[0] == "out"
        }
        for block in [b for b in self.outputs if b not in used]:
            del self.outputs[block]

    def block_inputs(self, block: int, index: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Block `block`'s (args, kwargs) on batch `index`, as copies."""
        if block == 0:
            captured = iter(self.first[index])
            args, kwargs = _build(self.template, lambda ref: next(captured))
        else:

            def resolve(ref: Ref) -> torch.Tensor:
                if ref[0] == "in":
                    return self.first[index][ref[1]]
                return leaves(self.outputs[ref[1]][index])[ref[2]]

            args, kwargs = _build(self.run.inputs[block], resolve)
        return clone(args), clone(kwargs)
