"""One rule for recipe `targets` / `ignore` entries, for torch modules and ONNX nodes.

Every algorithm (one-shot and gradual pruning, structured pruning, GPTQ, QAT, post-training
quantization, ONNX-only pruning) selects its layers here, so one `ignore` list keeps the same
modules dense / FP32 on every path. An entry is one of:

- a module path, `classifier.1`: that module, and everything inside it (a path is a prefix at
  a dot boundary: `classifier` covers `classifier.1` and `classifier.1.weight`, never
  `classifier_head`); a parameter name (`classifier.1.weight`) names its module;
- `re:PATTERN`: every module whose own path `re.fullmatch`es PATTERN (`re:conv` matches the
  module `conv` only; write `re:.*conv.*` for a substring). A pattern does not extend to the
  modules inside a match: catch-all patterns such as the transformers family's
  `OUTSIDE_BLOCKS` rely on that;
- a class name, `Linear` / `Conv2d`: every module of that class (its own class, not a parent's);
- a token in `TOKENS`: `__ALL_PRUNABLE__` / `__ALL__` (every candidate) and `__DEPTHWISE__`
  (convolutions with one group per input channel). A new token is one entry there.

ONNX nodes answer to the module path torch's exporter scoped them under
(`onnx_node_module_path`: `/classifier/classifier.1/Gemm` -> `classifier.1`), or to their own
name when they were not exported from torch; a node's own name and the names of the
initializers it reads match too, exactly. Class names need the torch model's classes
(`module_classes`), which the graph does not record.

An `ignore` entry that matches nothing at all is a typo more often than not: it is logged as a
warning with the closest existing names, returned in the match's `unmatched`, and gathered for
the run's result by `collect_unmatched`.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import onnx
from torch import nn

from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")

ALL_PRUNABLE = "__ALL_PRUNABLE__"
ALL = "__ALL__"
DEPTHWISE = "__DEPTHWISE__"
REGEX = "re:"


def is_depthwise(module: nn.Module) -> bool:
    """A convolution with one filter group per input channel (MobileNet-style)."""
    groups = getattr(module, "groups", 1)
    return groups > 1 and groups == getattr(module, "in_channels", 0)


@dataclass(frozen=True)
class Named:
    """One module or ONNX node as an entry sees it."""

    path: str  # module path; an ONNX node not exported from torch: its own name
    cls: str | None = None  # class name, where known
    depthwise: bool = False
    aliases: tuple[str, ...] = ()  # names matched exactly: parameters, node and weight names


# the special entries, in one place: token -> which candidates it stands for
TOKENS: dict[str, Callable[[Named], bool]] = {
    ALL_PRUNABLE: lambda named: True,
    ALL: lambda named: True,
    DEPTHWISE: lambda named: named.depthwise,
}


def entry_matches(entry: str, named: Named) -> bool:
    """The rule (see the module docstring)."""
    token = TOKENS.get(entry)
    if token is not None:
        return token(named)
    if entry.startswith(REGEX):
        return re.fullmatch(entry[len(REGEX) :], named.path) is not None
    return (
        entry == named.path
        or named.path.startswith(entry + ".")
        or entry == named.cls
        or entry in named.aliases
    )


def _entries(value: str | Iterable[str] | None, key: str) -> list[str]:
    """`value` as a list of entries; a malformed entry or pattern is refused with the fix."""
    entries = [value] if isinstance(value, str) else list(value or [])
    problems = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            problems.append(f"{entry!r} is not a module name, class name or 're:' pattern")
        elif entry.startswith(REGEX):
            try:
                re.compile(entry[len(REGEX) :])
            except re.error as exc:
                problems.append(f"{entry!r} is not a valid regular expression ({exc})")
    if problems:
        raise SparsifyError(
            f"{key}: " + "; ".join(problems) + "; write a module path such as `classifier.1`, "
            "a class name such as `Linear`, or `re:` and a Python regular expression"
        )
    return entries


_COLLECTOR: ContextVar[list[str] | None] = ContextVar("sparsify_ignore_unmatched", default=None)


@contextlib.contextmanager
def collect_unmatched() -> Iterator[list[str]]:
    """Gather the `ignore` entries that matched nothing while the block runs (each once), for
    a stage to record: `with collect_unmatched() as unmatched: ...`."""
    found: list[str] = []
    token = _COLLECTOR.set(found)
    try:
        yield found
    finally:
        _COLLECTOR.reset(token)


def _unmatched(ignore: list[str], universe: list[Named], what: str) -> list[str]:
    """The `ignore` entries (tokens aside: categories, not names) that match nothing in
    `universe`; each is warned about with the closest names."""
    missing = [
        e
        for e in dict.fromkeys(ignore)
        if e not in TOKENS and not any(entry_matches(e, n) for n in universe)
    ]
    if not missing:
        return []
    names = sorted({n.path for n in universe} | {n.cls for n in universe if n.cls})
    collected = _COLLECTOR.get()
    for entry in missing:
        text = entry[len(REGEX) :] if entry.startswith(REGEX) else entry
        close = difflib.get_close_matches(text, names, n=3)
        log.warning(
            "ignore entry %r matches no %s%s; closest names: %s",
            entry,
            what,
            " (class names match ONNX nodes only with the torch model's classes)"
            if what == "ONNX node" and text.isidentifier() and text[:1].isupper()
            else "",
            ", ".join(close) if close else "none alike",
        )
        if collected is not None and entry not in collected:
            collected.append(entry)
    return missing


@dataclass
class ModuleMatch:
    """`selected`: candidates a target names and no `ignore` entry covers; `ignored`: those an
    `ignore` entry covers; `unmatched`: the `ignore` entries that matched no module at all."""

    selected: dict[str, nn.Module] = field(default_factory=dict)
    ignored: dict[str, nn.Module] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)


def describe_module(name: str, module: nn.Module) -> Named:
    params = tuple(f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False))
    return Named(name, type(module).__name__, is_depthwise(module), params)


def match_modules(
    model_or_named_modules: nn.Module | Iterable[tuple[str, nn.Module]],
    ignore: Iterable[str] | None,
    targets: str | Iterable[str] | None = None,
    *,
    types: type[nn.Module] | tuple[type[nn.Module], ...] | None = None,
) -> ModuleMatch:
    """Split the modules of `types` (all when None) that `targets` name (all when None) into
    selected and ignored. Unmatched `ignore` entries are judged over every module given, so an
    entry naming a module that is merely not a candidate (a Flatten) is no typo."""
    ignore_list = _entries(ignore, "ignore")
    target_list = _entries(targets if targets is not None else [ALL], "targets")
    pairs = (
        model_or_named_modules.named_modules()
        if isinstance(model_or_named_modules, nn.Module)
        else model_or_named_modules
    )
    result = ModuleMatch()
    universe: list[Named] = []
    for name, module in pairs:
        named = describe_module(name, module)
        universe.append(named)
        if types is not None and not isinstance(module, types):
            continue
        if not any(entry_matches(t, named) for t in target_list):
            continue
        covered = any(entry_matches(e, named) for e in ignore_list)
        (result.ignored if covered else result.selected)[name] = module
    result.unmatched = _unmatched(ignore_list, universe, "module")
    return result


def module_classes(model: nn.Module) -> dict[str, str]:
    """Module path -> class name: what lets class-name entries match ONNX nodes."""
    return {name: type(module).__name__ for name, module in model.named_modules()}


def onnx_node_module_path(node_name: str) -> str | None:
    """The module path of a node named by torch's (TorchScript) ONNX exporter, None for a
    node it did not name.

    The exporter writes one `/`-separated segment per module whose forward ran, then the op:
    `/layer1/layer1.0/conv1/Conv`. A segment is the module's path from its last non-numeric
    part on (`layer1.0.conv1` -> `conv1`; `features.2` -> `features.2`), so a segment that
    extends the previous one by numbers only (`features` -> `features.2`) replaces it, and any
    other is appended (`model.22` -> `cv2.0`: `model.22.cv2.0`). Root-level ops (`/Add`) get
    `""`, the root module's path.
    """
    if not node_name.startswith("/"):
        return None
    path, previous = "", ""
    for segment in node_name.split("/")[1:-1]:
        rest = segment[len(previous) + 1 :].split(".")
        if previous and segment.startswith(previous + ".") and all(p.isdigit() for p in rest):
            path += segment[len(previous) :]
        else:
            path = f"{path}.{segment}" if path else segment
        previous = segment
    return path


def _onnx_depthwise(node: onnx.NodeProto, inits: Mapping[str, onnx.TensorProto]) -> bool:
    """A Conv whose weight has one input channel per group, with more than one group."""
    if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
        return False
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    dims = inits[node.input[1]].dims
    return group > 1 and len(dims) > 1 and dims[1] == 1


def describe_onnx_node(
    node: onnx.NodeProto,
    inits: Mapping[str, onnx.TensorProto],
    classes: Mapping[str, str] | None = None,
) -> Named:
    path = onnx_node_module_path(node.name)
    cls = classes.get(path) if classes is not None and path is not None else None
    weights = tuple(i for i in node.input if i in inits)
    aliases = (node.name, *weights) if node.name else weights
    return Named(node.name if path is None else path, cls, _onnx_depthwise(node, inits), aliases)


@dataclass
class NodeMatch:
    """`ignored` / `kept`: the graph's nodes, in order, that an `ignore` entry covers / not;
    `unmatched`: the `ignore` entries that matched no node."""

    ignored: list[onnx.NodeProto] = field(default_factory=list)
    kept: list[onnx.NodeProto] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    @property
    def ignored_names(self) -> list[str]:
        """Names to give ONNX Runtime's `nodes_to_exclude` (unnamed nodes cannot be)."""
        return [n.name for n in self.ignored if n.name]


def match_onnx_nodes(
    graph: onnx.ModelProto | onnx.GraphProto,
    ignore: Iterable[str] | None,
    *,
    classes: Mapping[str, str] | None = None,
) -> NodeMatch:
    """Split the graph's nodes by `ignore` under the same rule as `match_modules`; `classes`
    (`module_classes(model)`) lets class-name entries match."""
    g: Any = graph.graph if isinstance(graph, onnx.ModelProto) else graph
    ignore_list = _entries(ignore, "ignore")
    inits = {i.name: i for i in g.initializer}
    result = NodeMatch()
    universe: list[Named] = []
    for node in g.node:
        named = describe_onnx_node(node, inits, classes)
        universe.append(named)
        covered = any(entry_matches(e, named) for e in ignore_list)
        (result.ignored if covered else result.kept).append(node)
    result.unmatched = _unmatched(ignore_list, universe, "ONNX node")
    return result
