"""Sparse transfer's pruned tier, built on first use when it is missing and a dense model is
here: the user's `model.path` (a dense checkpoint) or a dense zoo model on this machine.

The dense model is pruned to the tier's sparsity (TIER_SPARSITY) by a training-aware run
(GMP + distillation from the dense model, the recipe's mask structure) on the user's train
split, in <zoo dir>/_build/NAME (resumable: a rerun skips its finished stages), and its
pruned checkpoint is registered in the local zoo with its provenance. Later runs find it
there: by name (it carries the dense model's sha256) or as the tier's local entry.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from sparsify.context import RunContext
from sparsify.errors import SparsifyError
from sparsify.eta import duration
from sparsify.outputs import ValidateOutput
from sparsify.use_cases import CUSTOM, normalize_use_case
from sparsify.zoo.build import TIER_SPARSITY, build_tier, compose, tier_overrides
from sparsify.zoo.checksum import sha256_path
from sparsify.zoo.local import LocalZoo
from sparsify.zoo.resolve import (
    MissingTier,
    Unavailable,
    ZooModel,
    catalog_for,
    locate,
    resolve_foundation,
    verified,
    zoo_dir,
)

if TYPE_CHECKING:
    from torch import nn

# below this measured sparsity a model.path is dense, not a pruned foundation (the fetch
# stage warns at the same threshold)
DENSE_BELOW = 0.3
PRUNED_VARIANTS = ("pruned", "pruned_int8")
# what the build takes from the transfer run's config as it is; the experiment is
# training_aware's, with the transfer's training caps (TRAIN_KEYS)
COPIED = ("use_case", "data", "model", "seed", "device", "cache_dir", "zoo", "baseline")
OPTIONAL = ("pruning", "export", "quantization")  # present in newer schemas
TRAIN_KEYS = ("batch_size", "max_steps", "weight_decay", "sync_batchnorm")


@dataclass
class DenseSource:
    path: Path
    sha256: str
    arch: str
    origin: str  # in words: "model.path" or "zoo model NAME"


def foundation_name(use_case: str, tier: str, dense: DenseSource) -> str:
    """One name per dense model (by content), use case and tier: a rerun finds it."""
    sparsity = TIER_SPARSITY[tier]
    key = hashlib.sha256(f"{use_case}|{dense.arch}|{dense.sha256}|{sparsity}".encode())
    arch = re.sub(r"[^A-Za-z0-9._-]+", "_", dense.arch) or "model"
    return f"{arch}-{tier}-pruned{round(sparsity * 100)}-{key.hexdigest()[:10]}"


def build_command(cfg: DictConfig, use_case: str, tier: str, dense: DenseSource | None) -> str:
    """The scripts/build_zoo.py command that builds this tier by hand."""
    data = cfg.data.get("path") or "DIR"
    weights = dense.path if dense else "DENSE_CHECKPOINT"
    arch = dense.arch if dense else cfg.model.arch
    return (
        f"python scripts/build_zoo.py --use-case {use_case} --data {data} --experiment "
        f"training_aware --tiers {tier}={TIER_SPARSITY[tier]} --weights {weights} --arch {arch}"
    )


def _how_to_get(cfg: DictConfig, use_case: str, tier: str, variant: str, dense: Any) -> str:
    return (
        f"build it: {build_command(cfg, use_case, tier, dense)}; or register a finished "
        f"pruned run: sparsify zoo add RUN_DIR --name NAME --tier {tier} --variant {variant} "
        "--use-case " + use_case + " (docs/zoo.md)"
    )


def dense_in_zoo(cfg: DictConfig, use_case: str) -> DenseSource | None:
    """The first dense (or int8: dense FP32 too) zoo model for the use case that is on this
    machine, local zoo first, `zoo.arch` respected."""
    catalog = catalog_for(cfg)
    arch = cfg.get("zoo", {}).get("arch")
    for entry in catalog.for_use_case(use_case):
        if entry["variant"] not in ("dense", "int8") or (arch and entry["arch"] != arch):
            continue
        try:
            path, origin = locate(entry, cfg, catalog)
        except Unavailable:
            continue
        model = verified(entry, path, origin)
        return DenseSource(
            model.path, model.sha256, str(entry["arch"]), f"zoo model {entry['name']}"
        )
    return None


def _train_count(ctx: RunContext) -> int | None:
    summary = ctx.output(ValidateOutput).summary
    count = (summary.get("splits") or {}).get("train")
    return int(count) if isinstance(count, int) else None


def _planned_steps(ctx: RunContext, build: DictConfig) -> tuple[int | None, str]:
    """(optimizer steps, in words) of the build's training on the train split."""
    train = build.experiment.train
    count = _train_count(ctx)
    if count is None:
        return None, "training steps unknown"
    per_epoch = max(1, math.ceil(count / int(train.batch_size)))
    steps = math.ceil(float(train.epochs) * per_epoch)
    if train.max_steps:
        steps = min(steps, int(train.max_steps))
    return steps, f"{steps:,} training steps ({float(train.epochs):g} epochs of {per_epoch:,})"


def _estimate(zoo: LocalZoo, arch: str, steps: int | None, words: str) -> str:
    """The build's expected time, at the pace of the last build of the same arch here."""
    rates = [
        e["provenance"]["seconds"] / e["provenance"]["steps"]
        for e in zoo.entries()
        if e["arch"] == arch and (e.get("provenance") or {}).get("steps")
    ]
    if rates and steps:
        return f"estimated time {duration(rates[-1] * steps)} ({words}, at an earlier build's pace)"
    return f"{words}; the time is estimated from its first steps and logged then"


def _build_config(ctx: RunContext, dense: DenseSource, tier: str, run_dir: Path) -> DictConfig:
    outer = ctx.cfg
    cfg = compose(
        [
            f"use_case={outer.use_case.name}",
            "experiment=training_aware",
            *tier_overrides(TIER_SPARSITY[tier]),
            # a foundation is a pruned FP32 checkpoint: sparse transfer quantizes it
            "experiment.quantize_from_level=1.0",
        ]
    )
    for key in COPIED + tuple(k for k in OPTIONAL if k in outer and k in cfg):
        value = outer[key]
        # merged, so the schema's node types stay and check the values
        cfg.merge_with(
            {key: OmegaConf.to_container(value, resolve=True)}
            if OmegaConf.is_config(value)
            else {key: value}
        )
    for key in TRAIN_KEYS:
        if key in outer.experiment.train:
            cfg.experiment.train[key] = outer.experiment.train[key]
    cfg.experiment.calibration_samples = outer.experiment.calibration_samples
    cfg.data.path = ctx.output(ValidateOutput).data_path  # a demo set: resolved in the cache
    cfg.model.path, cfg.model.arch = str(dense.path), dense.arch
    cfg.stages = ["validate", "fetch", "sparsify"]  # the checkpoint is all the zoo keeps
    cfg.working_dir = str(run_dir.parent)
    cfg.run_dir = str(run_dir)
    return cfg


def build_foundation(ctx: RunContext, dense: DenseSource, why: str) -> ZooModel:
    """The tier the optim level asks for, built from `dense` (or found, built earlier)."""
    use_case = normalize_use_case(str(ctx.cfg.use_case.name))
    tier, variant = str(ctx.derived.tier), str(ctx.derived.variant)
    root = zoo_dir(ctx.cfg)
    zoo = LocalZoo(root)
    name = foundation_name(use_case, tier, dense)
    if zoo.has(name):
        entry = next((e for e in zoo.entries() if e["name"] == name), None)
        if entry is not None:
            ctx.log.info(
                "Zoo: %s, built here earlier from %s, is the %s tier", name, dense.path, tier
            )
            return verified(entry, zoo.path_of(entry), "local")
    if not bool(ctx.cfg.zoo.get("build_missing", True)):
        raise SparsifyError(
            f"{why}; zoo.build_missing is false, so it is not built from {dense.origin} "
            f"({dense.path}): set zoo.build_missing=true, or "
            + _how_to_get(ctx.cfg, use_case, tier, variant, dense)
        )
    run_dir = root / "_build" / name
    cfg = _build_config(ctx, dense, tier, run_dir)
    sparsity = TIER_SPARSITY[tier]
    steps, words = _planned_steps(ctx, cfg)
    ctx.log.info(
        "Building a foundation model, because %s: %s (%s) pruned to %.0f %% by training-aware "
        "GMP with distillation on the train split, then stored in the local zoo as %s and "
        "reused by later runs; %s. Its log: %s",
        why,
        dense.origin,
        dense.path,
        100 * sparsity,
        name,
        _estimate(zoo, dense.arch, steps, words),
        run_dir / "run.log",
    )
    data_path = ctx.output(ValidateOutput).data_path
    provenance: dict[str, Any] = {
        "built": "on first use by sparse transfer (zoo.build_missing)",
        "reason": why,
        "source": {"origin": dense.origin, "path": str(dense.path), "sha256": dense.sha256},
        "data": {"path": data_path, "fingerprint": _data_fingerprint(data_path)},
        "recipe": {
            "name": str(cfg.experiment.recipe),
            "target_sparsity": sparsity,
            "epochs": float(cfg.experiment.train.epochs),
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "steps": steps,
    }
    entry, _ = build_tier(cfg, name, tier, root, run_dir=run_dir, provenance=provenance)
    ctx.log.info(
        "Built the %s foundation %s in %s: %.1f %% sparse (measured)",
        tier,
        name,
        duration(entry["provenance"]["seconds"]),
        100 * entry["sparsity"],
    )
    return verified(entry, zoo.path_of(entry), "local")


def _data_fingerprint(path: str | None) -> str:
    from sparsify.stages.pipeline import path_fingerprint

    return path_fingerprint(path)


def from_model(ctx: RunContext, family: Any, source: Path) -> ZooModel | None:
    """The foundation for `model.path`: None to use it as it is (pruned already, zeros or
    channels removed, or the level asks for a dense tier), else the tier built from it (or
    found, built earlier)."""
    from sparsify.algorithms.pruning import overall_sparsity, select_layers

    variant = str(ctx.derived.variant)
    use_case = normalize_use_case(str(ctx.cfg.use_case.name))
    if variant not in PRUNED_VARIANTS or use_case == CUSTOM:
        return None
    model = family.load_for_transfer(source, ctx)
    sparsity = overall_sparsity(select_layers(model))
    if sparsity >= DENSE_BELOW:
        return None
    narrowed = narrowed_layers(model, str(ctx.cfg.model.arch))
    if narrowed:  # a channel-pruned model is a pruned foundation, with or without zeros
        ctx.log.info(
            "model.path %s is channel-pruned (%d layers narrower than a dense %s, e.g. %s): "
            "it is the foundation as it is, not pruned again",
            source,
            len(narrowed),
            ctx.cfg.model.arch,
            narrowed[0],
        )
        return None
    dense = DenseSource(source, sha256_path(source), str(ctx.cfg.model.arch), "model.path")
    why = (
        f"model.path {source} is only {100 * sparsity:.1f} % sparse (measured), and optim "
        f"level {ctx.level:.2f} asks for a {ctx.derived.tier} {variant} foundation"
    )
    return build_foundation(ctx, dense, why)


def narrowed_layers(model: nn.Module, arch: str) -> list[str]:
    """The layers of `model` that take fewer channels than its dense architecture's (a
    channel-pruned model: `sparsify.algorithms.channels`); empty when none, or when no dense
    reference can be built. Input sides only (conv / linear inputs, BatchNorm features), so
    a classifier head for another class count is not a difference."""
    reference = _dense_reference(model, arch)
    if reference is None:
        return []
    ref = dict(reference.named_modules())
    narrowed = []
    for name, module in model.named_modules():
        other = ref.get(name)
        if other is not None and type(other) is type(module):
            mine, dense = _in_width(module), _in_width(other)
            if mine is not None and dense is not None and mine < dense:
                narrowed.append(name)
    return narrowed


def _in_width(module: nn.Module) -> int | None:
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.conv import _ConvNd

    if isinstance(module, _ConvNd):
        return int(module.in_channels)
    if isinstance(module, nn.Linear):
        return int(module.in_features)
    if isinstance(module, _BatchNorm):
        return int(module.num_features)
    return None


def _dense_reference(model: nn.Module, arch: str) -> nn.Module | None:
    """A freshly built dense model of `model`'s architecture: Ultralytics models carry
    theirs (`model.yaml`), classifiers are built by arch name."""
    spec = getattr(model, "yaml", None)
    try:
        if isinstance(spec, dict):  # Ultralytics: rebuilt from the model's own config
            return type(model)(copy.deepcopy(spec), verbose=False)
        from sparsify.models.classifier.model import available_archs, build_model

        if arch in available_archs():
            return build_model(arch, 2)
    except Exception:  # noqa: BLE001 - no reference: the model is taken as it is measured
        return None
    return None


def resolve_or_build(ctx: RunContext) -> ZooModel:
    """The zoo's foundation for the level; a missing pruned tier is built from a dense zoo
    model on this machine, or the error says how to get one."""
    cfg, derived = ctx.cfg, ctx.derived
    use_case = str(cfg.use_case.name)
    tier, variant = str(derived.tier), str(derived.variant)
    try:
        return resolve_foundation(cfg, use_case, tier, variant)
    except MissingTier as missing:
        canonical = normalize_use_case(use_case)
        dense = dense_in_zoo(cfg, canonical) if variant in PRUNED_VARIANTS else None
        if dense is None:
            raise SparsifyError(
                f"{missing}\nNo dense {canonical} model is on this machine to build the {tier} "
                f"tier from. Give one: model=PATH (sparsify.run --model PATH), and the tier is "
                "built from it on first use; or " + _how_to_get(cfg, canonical, tier, variant, None)
            ) from None
        why = f"the zoo has no {tier} {variant} {canonical} model on this machine"
        return build_foundation(ctx, dense, why)
